"""`mtsearch report`: one self-contained HTML file (plotly.js inline, no CDN) with the sweep's plots."""

from __future__ import annotations

import json
import re

import pytest

from mtsearch.cli import main
from mtsearch.sweep.results import compute

pytestmark = pytest.mark.filterwarnings("ignore")


def figures(html: str) -> list[dict]:
    """The plotly figures of the page: the JSON passed to each Plotly.newPlot call."""
    out = []
    for m in re.finditer(
        r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{"displaylogo"', html, re.S
    ):
        out.append({"data": json.loads(m.group(1)), "layout": json.loads(m.group(2))})
    return out


def test_report_of_the_smoke_sweep(smoke, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", "smoke", "--out", str(out)]) == 0
    assert f"report: {out}" in capsys.readouterr().out
    html = out.read_text()
    # self-contained: plotly.js inlined exactly once, no script fetched from anywhere
    assert len(re.findall(r"plotly\.js v\d", html)) == 1 and not re.search(r"<script[^>]+src=", html)
    res = compute("smoke")
    best = res.configurations.iloc[0]
    assert "Best configuration" in html and "mtsearch train --set model=tiny" in html
    assert f"for seed in {' '.join(map(str, best['seed_values']))}; do" in html  # all its seeds
    assert f"{best['overall_mean']:.4f} ± {best['overall_sd']:.4f}" in html
    # body rows: the sweep, each configuration, then sampler's verdict table (one row a level)
    levels = res.ablation[(res.ablation["dimension"] == "sampler") & (res.ablation["metric"] == "overall")]
    assert html.count("<tr>") == 1 + len(res.configurations) + len(levels)
    titles = [f["layout"]["title"]["text"] for f in figures(html)]
    assert titles[0].startswith("sampler: difference from the best, simultaneous 95% intervals")
    assert not any(t.startswith("sampler_args.temperature") for t in titles)  # one level: one line
    assert "sampler_args.temperature (where sampler = temperature): one level, 2.0" in html
    assert any(t.startswith("Task trade-offs") for t in titles)
    assert any(t.startswith("Configurations over the dimensions") for t in titles)
    assert "Only one dimension applies to every completed trial" in html  # importance: plain message


def test_report_default_location_and_importance_plot(synthetic_root, dash_env, capsys):
    dash_env(synthetic_root)
    assert main(["report", "synthetic"]) == 0
    out = synthetic_root / "sweeps" / "synthetic" / "report.html"
    html = out.read_text()
    (imp,) = [f for f in figures(html) if f["layout"]["title"]["text"].startswith("Which dimensions matter")]
    assert {tr["name"] for tr in imp["data"]} == {"overall", "sst", "para", "sts"}
    assert len([f for f in figures(html) if "difference from the best" in f["layout"]["title"]["text"]]) == 4
