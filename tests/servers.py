"""Start a real server (mlflow, optuna-dashboard) on loopback for a test, and always stop it.

Loopback only (/work/shared/notes/local-services.md): the server is told 127.0.0.1 and a
port the kernel just handed out. It runs in its own session so that stopping it stops the
workers it forked, and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import wait_until

BIN = Path(sys.executable).parent
#: Loopback never goes through a proxy the environment may name.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(base: str, route: str, **query) -> bytes:
    url = f"{base}{route}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with _OPENER.open(url, timeout=30) as resp:
        return resp.read()


def get_json(base: str, route: str, **query):
    return json.loads(get(base, route, **query))


def post_json(base: str, path: str, body: dict):
    req = urllib.request.Request(
        f"{base}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with _OPENER.open(req, timeout=30) as resp:
        return json.loads(resp.read())


@contextlib.contextmanager
def serve(argv: list[str], ready_path: str, port: int, log: Path) -> Iterator[str]:
    """Run ``argv`` (a server on 127.0.0.1:``port``) until the block ends; yields its base URL."""
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:

        def answers() -> bool:
            try:
                get(base, ready_path)
                return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        wait_until(answers, proc, f"{argv[0]} answering on {base}{ready_path}",
                   detail=lambda: log.read_text()[-2000:], every=0.5)  # fmt: skip
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its workers only
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
