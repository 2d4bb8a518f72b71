"""Reading the CS224N tab-separated files into examples, with every bad row accounted for.

The files carry one record per physical line (the first column is a row index), so each
line is parsed on its own with the csv module. Feeding the whole file to one csv reader
would let a quote that never closes swallow the following lines into a single field and
silently merge or drop good rows; parsing line by line confines such a defect to its own
line, which is then reported with its 1-based line number and skipped (or raised in
strict mode).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtsearch.errors import ConfigError, DataError
from mtsearch.paths import default_data_dir
from mtsearch.tasks import QQP_TRAIN_FALLBACK, TASKS, TaskSpec

log = logging.getLogger("mtsearch.data")

SPLITS = ("train", "dev", "test")
#: how many file:line reasons the per-file warning spells out before summarising
WARN_EXAMPLES = 3
ENV_DATA = "MTSEARCH_DATA"


@dataclass(frozen=True)
class Example:
    id: str
    text_a: str
    text_b: str | None
    label: float | None
    line: int


@dataclass(frozen=True)
class Defect:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class Split:
    task: str
    split: str
    path: Path
    examples: list[Example]
    defects: list[Defect]
    md5: str
    #: usable rows in the whole file; differs from ``len(examples)`` when ``limit`` was used
    usable: int | None = field(default=None)
    #: a user's file of extra training rows (config ``extra_data``), not the task's own file
    extra: bool = False

    def __post_init__(self) -> None:
        if self.usable is None:
            self.usable = len(self.examples)

    @property
    def spec(self) -> TaskSpec:
        return TASKS[self.task]

    @property
    def file(self) -> str:
        return self.path.name

    @property
    def has_labels(self) -> bool:
        return self.split != "test"

    def __len__(self) -> int:
        return len(self.examples)


# --------------------------------------------------------------------------- locations


def _check_names(task: str, split: str) -> TaskSpec:
    if task not in TASKS:
        raise ConfigError(f"unknown task '{task}'; known tasks: {', '.join(TASKS)}")
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'; known splits: {', '.join(SPLITS)}")
    return TASKS[task]


def candidate_files(task: str, split: str) -> list[str]:
    """File names that can hold ``task``/``split``, preferred first."""
    spec = _check_names(task, split)
    names = [spec.files[split]]
    if task == "para" and split == "train":
        # Mirrors may only carry the 22,646-pair subset of the 141,505-pair file.
        names.append(QQP_TRAIN_FALLBACK)
    return names


def split_path(task: str, split: str, data_dir: Path) -> Path | None:
    """The file that will be read for ``task``/``split``, or None when none is present."""
    for name in candidate_files(task, split):
        p = Path(data_dir) / name
        if p.is_file():
            return p
    return None


def _known_file_names() -> set[str]:
    names = {QQP_TRAIN_FALLBACK}
    for spec in TASKS.values():
        names.update(spec.files.values())
    return names


def _how_to_get_data() -> str:
    return (
        "run `mtsearch data fetch` (or `mtsearch data fetch --from DIR` to copy a local mirror) "
        f"or point {ENV_DATA} / --data-dir at a folder holding the CS224N csv files"
    )


def resolve_data_dir(cli_value: str | Path | None, *, must_exist: bool = True) -> Path:
    """``--data-dir`` value, else ``$MTSEARCH_DATA``, else the project's ``data/cs224n``.

    With ``must_exist`` (the default) the folder must exist and hold at least one of the
    course files; ``mtsearch data fetch`` passes False because it is about to fill it.
    """
    if cli_value not in (None, ""):
        path, origin = Path(cli_value), "from --data-dir"
    elif os.environ.get(ENV_DATA):
        path, origin = Path(os.environ[ENV_DATA]), f"from {ENV_DATA}"
    else:
        path, origin = default_data_dir(), "the default location"
    path = path.expanduser()
    if must_exist:
        known = _known_file_names()
        if not path.is_dir() or not any((path / n).is_file() for n in known):
            raise DataError(f"no data in {path} ({origin}): {_how_to_get_data()}.")
    return path


def require_files(data_dir: Path, tasks, splits) -> dict[tuple[str, str], Path]:
    """Check before any training that every (task, split) file is there; returns their paths."""
    data_dir = Path(data_dir)
    found: dict[tuple[str, str], Path] = {}
    missing: list[str] = []
    for task in tasks:
        for split in splits:
            p = split_path(task, split, data_dir)
            if p is None:
                missing.append(" or ".join(candidate_files(task, split)))
            else:
                found[(task, split)] = p
    if missing:
        raise DataError(f"missing in {data_dir}: {', '.join(missing)}; {_how_to_get_data()}.")
    return found


# --------------------------------------------------------------------------- parsing


def _parse_line(text: str) -> list[str]:
    # A line without quotes parses identically by splitting, and most lines have none.
    if '"' not in text and "\r" not in text:
        return text.split("\t")
    # strict=True makes a quote that is still open at the end of the line an error
    # instead of a field that silently runs to the end of the line.
    return next(csv.reader([text], delimiter="\t", strict=True))


def _csv_reason(err: csv.Error) -> str:
    msg = str(err)
    if "unexpected end of data" in msg:
        return "unterminated quote"
    return f"malformed quoting ({msg})"


def _column_index(header: list[str], name: str, path: Path) -> int:
    try:
        return header.index(name)
    except ValueError:
        raise DataError(
            f"{path} has no column '{name}' (header: {' | '.join(header)}); is it a CS224N file?"
        ) from None


def _parse_label(raw: str, spec: TaskSpec) -> tuple[float | None, str | None]:
    raw = raw.strip()
    col = spec.label_column
    if raw == "":
        return None, f"empty label ({col})"
    try:
        value = float(raw)
    except ValueError:
        return None, f"non-numeric label {raw!r} ({col})"
    if not math.isfinite(value):
        return None, f"non-numeric label {raw!r} ({col})"
    lo, hi = spec.label_range
    if not lo <= value <= hi:
        return None, f"label {raw} out of range [{lo}, {hi}] ({col})"
    if spec.kind in ("class", "binary") and not value.is_integer():
        return None, f"class label {raw} is not a whole number ({col})"
    return value, None


def _open_quote_hint(row: list[str], txt_idx: list[int], text_cols: tuple[str, ...]) -> str:
    # The published QQP defects are quoted fields whose text opens a quote that never
    # closes (and whose label is then empty); naming that helps whoever reads the report.
    for i, col in zip(txt_idx, text_cols, strict=True):
        if row[i].lstrip().startswith('"') and row[i].count('"') % 2 == 1:
            return f"; {col} opens a quote that never closes"
    return ""


def parse_file(path: Path, task: str, split: str) -> tuple[list[Example], list[Defect], str]:
    """All usable examples of one file, its defects and the md5 of its bytes."""
    spec = _check_names(task, split)
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"missing {path}; {_how_to_get_data()}.") from None
    md5 = hashlib.md5(data).hexdigest()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    name = path.name
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()

    examples: list[Example] = []
    defects: list[Defect] = []
    header: list[str] | None = None
    labelled = split != "test"
    text_cols = spec.text_columns

    for lineno, raw in enumerate(raw_lines, start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            defects.append(Defect(name, lineno, "not valid UTF-8"))
            continue
        if not text.strip():
            # Blank lines are not records (csv readers skip them too).
            continue
        try:
            row = _parse_line(text)
        except csv.Error as err:
            if header is None:
                raise DataError(f"{path}:{lineno}: unreadable header ({_csv_reason(err)})") from None
            defects.append(Defect(name, lineno, _csv_reason(err)))
            continue

        if header is None:
            header = [h.strip() for h in row]
            # The SST/CFIMDB test files have a 4-column header `0 <empty> id sentence`:
            # columns are found by name, so the two leading index columns are just ignored.
            id_col = _column_index(header, "id", path)
            txt_idx = [_column_index(header, c, path) for c in text_cols]
            lab_col = _column_index(header, spec.label_column, path) if labelled else None
            ncols = len(header)
            continue

        if len(row) != ncols:
            what = "missing field" if len(row) < ncols else "extra field"
            defects.append(Defect(name, lineno, f"{what}: expected {ncols} fields, found {len(row)}"))
            continue
        ex_id = row[id_col].strip()
        if not ex_id:
            defects.append(Defect(name, lineno, "empty id"))
            continue
        label = None
        if lab_col is not None:
            label, why = _parse_label(row[lab_col], spec)
            if why is not None:
                defects.append(Defect(name, lineno, why + _open_quote_hint(row, txt_idx, text_cols)))
                continue
        texts = [row[i].strip() for i in txt_idx]
        empty = [c for c, t in zip(text_cols, texts, strict=True) if not t]
        if empty:
            defects.append(Defect(name, lineno, f"empty sentence ({', '.join(empty)})"))
            continue
        examples.append(
            Example(
                id=ex_id,
                text_a=texts[0],
                text_b=texts[1] if len(texts) > 1 else None,
                label=label,
                line=lineno,
            )
        )
    if header is None:
        raise DataError(f"{path} is empty; {_how_to_get_data()}.")
    return examples, defects, md5


#: Files whose defects were already reported by this process: a sweep loads the same
#: file for every run, and one warning per file is what a reader needs.
_WARNED: set[tuple[str, int]] = set()


def _warn_defects(path: Path, defects: list[Defect]) -> None:
    if not defects:
        return
    key = (str(Path(path).resolve()), len(defects))
    if key in _WARNED:
        return
    _WARNED.add(key)
    shown = " | ".join(str(d) for d in defects[:WARN_EXAMPLES])
    more = f" | and {len(defects) - WARN_EXAMPLES} more" if len(defects) > WARN_EXAMPLES else ""
    log.warning("skipped %d malformed row(s) in %s: %s%s", len(defects), path, shown, more)


def load_split(
    task: str,
    split: str,
    data_dir: Path,
    strict: bool = False,
    limit: int | None = None,
    seed: int = 0,
    *,
    fraction: float | None = None,
    warn: bool = True,
) -> Split:
    """Usable examples of one task split; malformed rows are skipped with one warning per file.

    ``strict`` raises a DataError on the first malformed row instead. ``limit`` keeps a
    seeded random subset of that many usable examples in file order (``fraction``: of that
    share of them, at least one); ``md5`` and
    ``usable`` still describe the whole file so a run's fingerprint names what was read.
    """
    _check_names(task, split)
    data_dir = Path(data_dir)
    path = split_path(task, split, data_dir)
    if path is None:
        require_files(data_dir, [task], [split])
        raise AssertionError("unreachable")  # pragma: no cover
    examples, defects, md5 = parse_file(path, task, split)
    if strict and defects:
        d = defects[0]
        raise DataError(f"{path}:{d.line}: {d.reason} (strict mode stops at the first malformed row)")
    if warn:
        _warn_defects(path, defects)
    usable = len(examples)
    if fraction is not None:
        # A fraction keeps the tasks' sizes in proportion; a limit caps it further.
        by_fraction = max(1, math.ceil(fraction * usable))
        limit = by_fraction if limit is None else min(limit, by_fraction)
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if limit < usable:
            rng = np.random.default_rng(seed)
            keep = np.sort(rng.choice(usable, size=limit, replace=False))
            examples = [examples[i] for i in keep]
    return Split(task, split, path, examples, defects, md5, usable=usable)


def fingerprint(splits) -> list[dict]:
    """What a run read: one record per split, to be stored with the run's results.

    An extra-data split (config ``extra_data``) also records ``extra: true`` and its full
    path: a user's file can live anywhere, and its name alone may not find it again.
    """
    out = []
    for s in splits:
        row = {
            "task": s.task,
            "split": s.split,
            "file": s.path.name,
            "rows": s.usable,
            "used": len(s.examples),
            "md5": s.md5,
            "defects": len(s.defects),
        }
        if s.extra:
            row.update(extra=True, path=str(s.path))
        out.append(row)
    return out


# --------------------------------------------------------------------------- extra data


def require_extra_files(extra_data: dict[str, str]) -> dict[str, Path]:
    """The files of config ``extra_data`` (task -> path), checked before any training.

    Raises a ConfigError naming the field, the task and the path when a file is missing.
    """
    found: dict[str, Path] = {}
    for task, raw in extra_data.items():
        _check_names(task, "train")
        path = Path(raw).expanduser()
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise ConfigError(f"extra_data.{task}: {path} {what} (a file in the {task} train format)")
        found[task] = path
    return found


def load_extra(task: str, path: Path, strict: bool = False, *, warn: bool = True) -> Split:
    """Every usable row of a user's file of extra ``task`` training rows, as a train Split.

    The file is read exactly like the task's own train file (same columns, same label
    checks): malformed rows are skipped with one warning and counted in ``defects``, or
    raise in ``strict`` mode. No ``limit``: the user chose these rows, all of them are used.
    """
    path = Path(path)
    try:
        examples, defects, md5 = parse_file(path, task, "train")
    except DataError as err:
        raise DataError(f"extra_data.{task}: {err}") from None
    if strict and defects:
        d = defects[0]
        raise DataError(
            f"extra_data.{task}: {path}:{d.line}: {d.reason} (strict mode stops at the first malformed row)"
        )
    if warn:
        _warn_defects(path, defects)
    if not examples:
        raise DataError(
            f"extra_data.{task}: {path} has no usable rows ({len(defects)} malformed); "
            f"it needs the columns of the {task} train file: id, {', '.join(TASKS[task].text_columns)}, "
            f"{TASKS[task].label_column}"
        )
    return Split(task, "train", path, examples, defects, md5, extra=True)
