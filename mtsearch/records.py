"""A run directory that describes itself.

``runs/<name>/`` holds ``config.yaml`` (the full resolved config), ``env.json``
(packages, device, git commit, data fingerprint), ``metrics.jsonl`` (one line per
evaluation, appended and flushed as it happens so a crash loses nothing already
measured), ``result.json`` (status and best/final scores, written last),
``eval_examples.npz`` (the scored evaluation's per-example predictions and golds) and the best
checkpoint. Every file is written atomically.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from mtsearch.paths import project_root


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=5
        )
        if out.returncode != 0:
            return None
        # --no-optional-locks: a plain status refreshes the index and writes it back through
        # .git/index.lock, and a user's own git command at that moment would fail on the lock.
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
            cwd=project_root(),
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    """Every installed distribution's version, by its normalised name (PEP 503), sorted.

    All of them, not a chosen few: a result that changes between two installs is explained
    by whichever package changed, and a transitive one (tokenizers, safetensors, scipy) is as
    likely a culprit as a direct one. Read from importlib.metadata, i.e. what this
    interpreter imports, whoever installed it.
    """
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:  # a broken install can leave a distribution without metadata
            out.setdefault(re.sub(r"[-_.]+", "-", name).lower(), dist.version)
    return dict(sorted(out.items()))


def environment(device: str, precision: str, data: list[dict], model: dict) -> dict[str, Any]:
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": device,
        "precision": precision,
        "cuda_device": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "git_commit": git_commit(),
        "model": model,
        "data": data,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
    }


class RunDir:
    """The files of one run; created before the first step."""

    def __init__(self, path: Path):
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        self.metrics_path = path / "metrics.jsonl"
        self.checkpoint_path = path / "best.safetensors"

    def write_config(self, yaml_text: str) -> None:
        atomic_write_text(self.path / "config.yaml", yaml_text)

    def write_env(self, env: dict[str, Any]) -> None:
        write_json(self.path / "env.json", env)

    def append_metrics(self, row: dict[str, Any]) -> None:
        # Append + fsync: each evaluation survives a crash that happens after it.
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(row, default=_jsonable) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def write_result(self, result: dict[str, Any]) -> None:
        write_json(self.path / "result.json", result)

    def write_eval_examples(self, which: str, examples: dict[str, tuple[Any, Any, Any]]) -> None:
        """The scored evaluation's examples: per task (dev row indices, predictions, golds); ``which`` says
        which evaluation it was (e.g. ``half_b``, ``full_dev``)."""
        import io

        import numpy as np

        arrays: dict[str, Any] = {"which": np.array(which)}
        for task, (index, pred, gold) in examples.items():
            arrays[f"{task}.index"] = np.asarray(index, dtype=np.int64)
            arrays[f"{task}.pred"] = np.asarray(pred, dtype=np.float64)
            arrays[f"{task}.gold"] = np.asarray(gold, dtype=np.float64)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(self.path / EVAL_EXAMPLES, buf.getvalue())

    def save_checkpoint(self, state: dict, metadata: dict[str, str]) -> None:
        from safetensors.torch import save

        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
        atomic_write_bytes(self.checkpoint_path, save(tensors, metadata=metadata))


#: the file of :meth:`RunDir.write_eval_examples`
EVAL_EXAMPLES = "eval_examples.npz"


def read_eval_examples(run_dir: Path) -> tuple[str, dict[str, tuple[Any, Any, Any]]] | None:
    """(which, {task: (index, pred, gold)}) of a run's scored evaluation; None when missing or unreadable."""
    import zipfile

    import numpy as np

    path = Path(run_dir) / EVAL_EXAMPLES
    try:
        with np.load(path) as z:
            tasks = sorted({k.rsplit(".", 1)[0] for k in z.files if k != "which"})
            return str(z["which"]), {t: (z[f"{t}.index"], z[f"{t}.pred"], z[f"{t}.gold"]) for t in tasks}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # missing or half-written
        return None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl; a half-written last line (crash mid-write) is ignored."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def run_scores(result: dict[str, Any]) -> dict[str, float]:
    """A finished run's scores: its best checkpoint on the full dev sets when measured, else its best evaluation."""
    return result.get("final") or (result.get("best") or {}).get("scores") or {}
