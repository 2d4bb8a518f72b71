"""The text of ``mtsearch data check``: what each file holds and what was skipped, and why."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from mtsearch.data.fetch import expected_hash, verify_file
from mtsearch.data.loaders import SPLITS, candidate_files, load_split, split_path
from mtsearch.tasks import TASKS

#: STS scores are mostly whole or half points: bins centred on 0..5 read naturally.
STS_EDGES = (0.0, 0.5, 1.5, 2.5, 3.5, 4.5, 5.0)
#: defects listed per file in full; the rest are counted
MAX_DEFECTS_SHOWN = 20


def _checksum_note(path: Path, md5: str) -> str:
    exp = expected_hash(path.name)
    if exp is None:
        return "no reference checksum"
    # The md5 is already known from loading; only the full QQP file needs another pass.
    ok = md5 == exp[1] if exp[0] == "md5" else verify_file(path)
    return f"{exp[0]} matches the course release" if ok else f"{exp[0]} differs from the course release"


def _label_lines(split) -> list[str]:
    if not split.has_labels or not split.examples:
        return []
    labels = np.array([e.label for e in split.examples], dtype=np.float64)
    spec = split.spec
    if spec.kind == "regression":
        hist, _ = np.histogram(labels, bins=np.array(STS_EDGES))
        bins = "  ".join(
            f"[{lo:g},{hi:g}{']' if hi == STS_EDGES[-1] else ')'}: {n:,}"
            for lo, hi, n in zip(STS_EDGES[:-1], STS_EDGES[1:], hist, strict=True)
        )
        return [
            f"    labels: min {labels.min():.2f}  mean {labels.mean():.2f}  max {labels.max():.2f}",
            f"    histogram: {bins}",
        ]
    counts = Counter(int(v) for v in labels)
    total = len(labels)
    parts = "  ".join(f"{c}: {counts[c]:,} ({100 * counts[c] / total:.1f}%)" for c in sorted(counts))
    return [f"    labels: {parts}"]


def check_report(data_dir: Path, strict: bool = False) -> str:
    """Per file: usable rows, label distribution and every defect with file:line and reason.

    ``strict`` raises a DataError at the first malformed row, as a strict run would.
    """
    data_dir = Path(data_dir)
    out = [f"data folder: {data_dir}"]
    total_defects = 0
    missing = []
    for task, spec in TASKS.items():
        for split in SPLITS:
            path = split_path(task, split, data_dir)
            if path is None:
                missing.append(" or ".join(candidate_files(task, split)))
                continue
            s = load_split(task, split, data_dir, strict=strict, warn=False)
            total_defects += len(s.defects)
            noun = "pairs" if spec.inputs == "pair" else "sentences"
            head = f"{task} {split}: {s.file}  {s.usable:,} usable {noun}, {len(s.defects)} defect(s)"
            if task == "para" and split == "train" and s.file != spec.files["train"]:
                head += "  (subset of the full QQP training file)"
            out.append(head)
            out.append(f"    md5 {s.md5} ({_checksum_note(path, s.md5)})")
            out.extend(_label_lines(s))
            for d in s.defects[:MAX_DEFECTS_SHOWN]:
                out.append(f"    defect {d}")
            if len(s.defects) > MAX_DEFECTS_SHOWN:
                out.append(f"    ... and {len(s.defects) - MAX_DEFECTS_SHOWN} more defect(s)")
    if missing:
        out.append(f"missing: {', '.join(missing)}")
    out.append(f"total: {total_defects} defect(s) skipped; {len(missing)} file(s) missing")
    return "\n".join(out) + "\n"
