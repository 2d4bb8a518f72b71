"""Ray Tune backend: a real two-node Ray cluster on loopback addresses, and what a local Ray listens on.

Ray rewrites 127.0.0.1 to the machine's network address, so the head listens on
127.0.0.2 and the worker node on 127.0.0.3 (see the project's notes on local services).
Each node is started with --block as a child of this test, so the test stops exactly
what it started instead of `ray stop`, which would kill every Ray process here.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import wait_until

HEAD, WORKER, PORT = "127.0.0.2", "127.0.0.3", 6392

# Under pytest-xdist every Ray test runs on one worker (--dist loadgroup): the fixed cluster port and
# loopback addresses are the machine's, so two Ray clusters must not start at once.
pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.e2e]  # Ray clusters: make test-e2e


def _wait_for(path: Path, text: str, proc: subprocess.Popen) -> None:
    """Until the node's log says ``text`` (a started Ray node)."""
    wait_until(lambda: path.exists() and text in path.read_text(errors="replace"), proc,
               f"a Ray node saying {text!r}", detail=lambda: path.read_text(errors="replace")[-2000:]
               if path.exists() else "", every=0.5)  # fmt: skip


@pytest.fixture
def ray_cluster(tmp_path):
    ray_bin = Path(sys.executable).parent / "ray"
    # Token auth is for clusters reachable from a network; this one lives on loopback only.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    # Ray puts unix sockets under its temp dir: pytest's long tmp paths exceed the socket path limit.
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    common = ["--num-cpus=1", "--disable-usage-stats", "--block", f"--temp-dir={temp}"]
    logs = [tmp_path / "head.log", tmp_path / "worker.log"]
    procs = []
    with open(logs[0], "w") as out:
        procs.append(subprocess.Popen([str(ray_bin), "start", "--head", f"--node-ip-address={HEAD}", f"--port={PORT}",
                                       "--include-dashboard=false", *common], env=env, stdout=out, stderr=out))  # fmt: skip
    try:
        _wait_for(logs[0], "Ray runtime started", procs[0])
        with open(logs[1], "w") as out:
            procs.append(subprocess.Popen([str(ray_bin), "start", f"--address={HEAD}:{PORT}",
                                           f"--node-ip-address={WORKER}", *common], env=env, stdout=out, stderr=out))  # fmt: skip
        _wait_for(logs[1], "Ray runtime started", procs[1])
        yield f"{HEAD}:{PORT}", env
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_sweep_on_a_two_node_cluster_then_restore(sweep_env, data_dir, ray_cluster):
    runs = sweep_env
    address, ray_env = ray_cluster
    # Each worker process's first run waits at its start until two runs have started: two in flight at
    # once, on nodes of one CPU each, are on both nodes, however fast the first one would have been.
    env = {**ray_env, "MTSEARCH_RUNS": str(runs), "MTSEARCH_DATA": str(data_dir), "RAY_ADDRESS": address,
           "MTSEARCH_HOLD": "run_start:1:2"}  # fmt: skip
    exe = Path(sys.executable).parent / "mtsearch"
    args = [str(exe), "sweep", "smoke", "--backend", "ray", "--quiet"]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ablation: sampler" in proc.stdout
    meta = json.loads((runs / "sweeps" / "smoke" / "sweep.json").read_text())
    assert meta["backend"] == "ray"
    assert set(meta["sessions"][-1]["nodes"]) == {HEAD, WORKER}, "runs trained on both nodes"
    assert meta["sessions"][-1]["runs"] == 4
    # MLflow: a parent and one child run per trained seed, tagged with the node.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mtsearch")
    children = client.search_runs([exp.experiment_id], filter_string="tags.`mtsearch.kind` = 'trial'")
    assert len(children) == 4 and {c.data.tags["ray_node"] for c in children} == {HEAD, WORKER}
    assert all(c.info.status == "FINISHED" for c in children)
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`mtsearch.kind` = 'sweep'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"

    assert len(list((runs / ".holds").glob("run_start-1-*"))) >= 2
    # Rerunning starts a fresh experiment that finds every run done: nothing is trained again.
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((runs / "sweeps" / "smoke" / "sweep.json").read_text())["sessions"][-1]["runs"] == 0
    from mtsearch.sweep.runner import load_runs

    table = load_runs(runs / "sweeps" / "smoke")
    assert len(table) == 4 and set(table["status"]) == {"finished"}


def test_ray_prunes_through_the_study_and_closes_runs(sweep_env, tmp_path):
    """Ray runs are pruned by the sweep's seed-aligned Optuna pruner (here successive halving)."""
    import optuna

    from mtsearch.backends import BACKENDS
    from mtsearch.sweep.runner import load_runs
    from mtsearch.sweep.space import load_space

    root = Path(__file__).resolve().parents[2]
    space = tmp_path / "asha.yaml"
    space.write_text(
        (root / "search_spaces" / "smoke.yaml").read_text()
        .replace("name: smoke", "name: asha")
        .replace("pruner: none", "pruner: asha")
        .replace("seeds: 2", "seeds: 1")
        .replace("  sampler:\n    choices: [round_robin, temperature]",
                 "  sampler:\n    choices: [round_robin, temperature, proportional, sequential]")
        .replace("max_steps: 4", "max_steps: 8").replace("eval_every: 2", "eval_every: 1")
    )  # fmt: skip
    out = BACKENDS.get("ray")().run(load_space(str(space)), progress=False, mlflow=False)
    assert out.stopped_because == "every grid configuration is done"
    table = load_runs(sweep_env / "sweeps" / "asha")
    assert len(table) == 4 and "finished" in set(table["status"])
    assert set(table["status"]) <= {"finished", "pruned"}
    study = optuna.load_study(
        study_name="asha", storage=f"sqlite:///{sweep_env / 'sweeps' / 'asha' / 'study.db'}"
    )
    states = {(t.user_attrs["config_hash"], t.state.name) for t in study.trials}
    expected = {
        (h, "PRUNED" if s == "pruned" else "COMPLETE")
        for h, s in zip(table.config_hash, table.status, strict=True)
    }
    assert states == expected


def _descendants(root: int) -> set[int]:
    """``root`` and every process below it (Ray starts the GCS and raylet, the raylet the workers and agents)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # a process that ended meanwhile
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo.extend(children.get(pid, []))
    return out


def _listening(pids: set[int]) -> list[tuple[str, str, int]]:
    """(local address, process name, pid) of every listening TCP socket of ``pids``, as `ss -ltnp` lists them."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        for name, pid in re.findall(r'\("([^"]*)",pid=(\d+)', line):
            if int(pid) in pids:
                found.append((fields[3], name, int(pid)))
    return found


def _loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]").split("%")[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:  # `*`: every interface
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_a_local_ray_listens_on_loopback_only(monkeypatch):
    """Item 8 of issue 20: the local instance's GCS, raylet, workers and agents listen on 127.x only.

    Ray's gRPC servers listen on every interface unless the node's address is 127.0.0.1, which
    Ray keeps only in its single-machine mode; init_ray turns that on while Ray starts and
    restores the setting afterwards.
    """
    import ray

    from mtsearch.backends.ray_tune import SINGLE_MACHINE_ENV, init_ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("MTSEARCH_RAY_NODE_IP", raising=False)
    monkeypatch.delenv(SINGLE_MACHINE_ENV, raising=False)
    assert not ray.is_initialized()
    init_ray(num_cpus=1)
    try:
        assert SINGLE_MACHINE_ENV not in os.environ, "the single-machine setting is restored"

        @ray.remote
        def node_ip() -> str:
            return ray.util.get_node_ip_address()

        assert ray.get(node_ip.remote()) == "127.0.0.1"  # a worker is up, with its own server
        sockets = _listening(_descendants(os.getpid()))
    finally:
        ray.shutdown()
    names = {name for _, name, _ in sockets}
    assert {"gcs_server", "raylet"} <= names, sockets
    assert os.getpid() in {pid for _, _, pid in sockets}, "the driver's own server is checked too"
    assert any(n.startswith("ray::") for n in names), "a worker's or agent's server is checked too"
    assert [s for s in sockets if not _loopback(s[0])] == []
