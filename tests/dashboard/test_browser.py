"""The app served on 127.0.0.1 and the report file, rendered by headless Chromium and looked at.

The screenshots must hold the plots: pixels of the ablation colours (best level green, level
not distinguishable from it blue), many distinct colours, and a real share of non-white
pixels. Skipped when /usr/bin/chromium is missing (.ci/run installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mtsearch.cli import main
from tests.dashboard.helpers import APP, ROOT
from tests.helpers import wait_until

CHROMIUM = "/usr/bin/chromium"
GREEN, BLUE = (0x1A, 0x98, 0x50), (0x45, 0x75, 0xB4)  # figures.VERDICT_COLOURS
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screenshot(url: str, out: Path, budget_ms: int) -> Path:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={out.parent / ('profile-' + out.stem)}", f"--screenshot={out}",
           "--window-size=1400,1000", "--hide-scrollbars", f"--virtual-time-budget={budget_ms}", url]  # fmt: skip
    out.unlink(missing_ok=True)
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert out.exists(), f"chromium wrote no screenshot of {url}"
    return out


def looks(png: Path) -> dict[str, float]:
    from PIL import Image

    im = Image.open(png).convert("RGB").resize((700, 500))  # 4x fewer pixels to count
    px = list(im.getdata()) if not hasattr(im, "get_flattened_data") else list(im.get_flattened_data())

    def near(c, ref):
        return sum(abs(a - b) for a, b in zip(c, ref, strict=True)) < 40

    return {
        "non_white": sum(1 for c in px if sum(c) < 720) / len(px),
        "colours": len(set(px)),
        "green": sum(1 for c in px if near(c, GREEN)),
        "blue": sum(1 for c in px if near(c, BLUE)),
    }


def rendered_plots(stats: dict[str, float]) -> bool:
    return (
        stats["green"] >= 20 and stats["blue"] >= 20 and stats["colours"] >= 200 and stats["non_white"] > 0.03
    )


@pytest.fixture
def server(smoke):
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    return r.read().strip() == b"ok"
            except OSError:
                return False

        wait_until(healthy, proc, "streamlit answering its health check", every=0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_app_and_report_render_their_plots_in_chromium(server, smoke, tmp_path):
    # The app: the page's script runs on the server in real time while Chromium's virtual
    # clock races ahead, so a screenshot that caught the page mid-run is retried.
    png = tmp_path / "app-ablation.png"
    for budget in (3_600_000, 7_200_000, 14_400_000):
        stats = looks(screenshot(f"{server}/?view=Ablation&sweep=smoke", png, budget))
        if rendered_plots(stats):
            break
    keep = os.environ.get("MTSEARCH_SCREENSHOTS")
    if keep:  # for a person to look at
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / png.name)
    assert rendered_plots(stats), f"the app's screenshot {png} shows no plot: {stats}"

    report = tmp_path / "report.html"
    assert main(["report", "smoke", "--out", str(report)]) == 0
    rpng = screenshot(report.resolve().as_uri(), tmp_path / "report.png", 20_000)
    if keep:
        shutil.copy(rpng, Path(keep) / rpng.name)
    rstats = looks(rpng)
    assert rendered_plots(rstats), f"the report's screenshot {rpng} shows no plot: {rstats}"
