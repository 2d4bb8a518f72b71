"""``mtsearch reproduce``: a published system's preset, trained, its dev scores beside the report's.

The published scores live in one file, ``published_scores.csv`` beside this module: one
row per report and split, naming the report (number, title, authors), the preset that
reproduces its final system, the per-task scores, and the overall score the report
printed, if any, with its convention. The source of every row is the course reports as
summarised in ``../shared/papers/systems.md``.

Both overall conventions are shown, for ours and for the paper's (computed from the
per-task scores): the course formula ``(SST + QQP + (r + 1) / 2) / 3`` (the leaderboard's,
which 001 prints) and the plain mean ``(SST + QQP + r) / 3`` (which 002 and 004 print).
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtsearch.errors import ConfigError
from mtsearch.registry import suggest
from mtsearch.tasks import overall_score

#: The one data file of published scores.
PUBLISHED_FILE = Path(__file__).with_name("published_scores.csv")
#: The tasks every report scores, in the order the tables show them.
REPORT_TASKS = ("sst", "para", "sts")
#: What every comparison says about the CPU encoder (the presets' headers and the README say it too).
ENCODER_CAVEAT = (
    "all-MiniLM-L6-v2 (the cpu profiles' encoder) was trained on QQP duplicate pairs and NLI, so on it "
    "QQP and STS start far ahead of a plain BERT and effects of pair inputs can invert: its scores are "
    "not the paper's numbers (the gpu profiles run the reports' BERT-base)."
)
MEASURES = ("sst", "para", "sts", "overall_course", "plain_mean")


@dataclass(frozen=True)
class Published:
    """One report's published scores on one split."""

    report: str
    preset: str
    title: str
    authors: str
    split: str
    scores: dict[str, float]
    printed_overall: float | None
    printed_convention: str | None  # course | plain_mean | None (the report printed no overall)
    note: str

    @property
    def source(self) -> str:
        return f'{self.report} "{self.title}" ({self.authors})'

    def measures(self) -> dict[str, float]:
        return measures(self.scores)


def course_overall(scores: dict[str, float]) -> float:
    """(SST acc + QQP acc + (STS r + 1) / 2) / 3: the course leaderboard's overall score."""
    return overall_score({t: scores[t] for t in REPORT_TASKS if t in scores})


def plain_mean(scores: dict[str, float]) -> float:
    """(SST acc + QQP acc + STS r) / 3: the overall score 002 and 004 print."""
    values = [scores[t] for t in REPORT_TASKS if t in scores]
    return sum(values) / len(values) if values else float("nan")


def measures(scores: dict[str, float]) -> dict[str, float]:
    """Per task and overall in both conventions, as the tables show them."""
    out = {t: float(scores[t]) for t in REPORT_TASKS if t in scores}
    out["overall_course"] = course_overall(scores)
    out["plain_mean"] = plain_mean(scores)
    return out


def published_scores(path: Path = PUBLISHED_FILE) -> list[Published]:
    """Every row of the published scores file."""

    def number(value: str) -> float | None:
        return float(value) if value.strip() else None

    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append(
                Published(
                    report=r["report"],
                    preset=r["preset"],
                    title=r["title"],
                    authors=r["authors"],
                    split=r["split"],
                    scores={t: float(r[t]) for t in REPORT_TASKS},
                    printed_overall=number(r["printed_overall"]),
                    printed_convention=r["printed_convention"] or None,
                    note=r["note"],
                )
            )
    return rows


def reproducible_presets() -> list[str]:
    """The presets that reproduce a report (they have published dev scores), in report order."""
    seen: list[str] = []
    for row in published_scores():
        if row.split == "dev" and row.preset not in seen:
            seen.append(row.preset)
    return seen


def published_for(preset: str, split: str = "dev") -> Published:
    """The published scores the preset is compared with; a ConfigError naming the choices if none."""
    for row in published_scores():
        if row.preset == preset and row.split == split:
            return row
    names = reproducible_presets()
    raise ConfigError(
        f"preset '{preset}' reproduces no published system{suggest(preset, names)}; "
        f"presets with published scores: {', '.join(names)}"
    )


# ------------------------------------------------------------------------ training
@dataclass
class Reproduction:
    """One preset trained: its dev scores and the report's."""

    preset: str
    profile: str
    model: str
    published: Published
    scores: dict[str, float]
    scored_on: str  # which dev rows chose the checkpoint and which scored it (:func:`scored_on`)
    status: str
    run_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    rows_scored: dict[str, int] = field(default_factory=dict)  # per task, dev rows behind ``scores``
    qqp_train: str = ""  # the QQP training file read (the full file or the course's subset)

    def measures(self) -> dict[str, float]:
        return measures(self.scores)

    def row(self) -> dict[str, Any]:
        """One line of the --all table."""
        ours, paper = self.measures(), self.published.measures()
        out: dict[str, Any] = {
            "report": self.published.report,
            "preset": self.preset,
            "profile": self.profile,
            "model": self.model,
            "status": self.status,
            "scored_on": self.scored_on,
            "rows_scored": " ".join(f"{t}={n}" for t, n in self.rows_scored.items()),
            "qqp_train": self.qqp_train,
        }
        for m in MEASURES:
            out[m] = round(ours.get(m, float("nan")), 4)
            out[f"{m}_paper"] = round(paper[m], 4)
        out["overrides"] = " ".join(f"{k}={v}" for k, v in self.overrides.items())
        out["run_dir"] = str(self.run_dir)
        return out


@dataclass(frozen=True)
class Planned:
    """A preset's run, checked and ready to train: what :func:`reproduce` trains."""

    preset: str
    profile: str
    config: Any  # mtsearch.config.RunConfig
    published: Published
    overrides: dict[str, Any]


def plan(preset: str, profile: str = "cpu", overrides: dict[str, Any] | None = None) -> Planned:
    """Check a reproduction before anything trains: the published scores, the preset, its profile, the config."""
    from mtsearch.config import load_config
    from mtsearch.sweep.space import list_presets, presets_dir

    published = published_for(preset)
    if preset not in list_presets():
        raise ConfigError(f"published scores name preset '{preset}', which is not in {presets_dir()}")
    overrides = dict(overrides or {})
    # The reports chose the best epoch on the full dev sets and printed its scores on the same
    # rows; held_out_score would choose on one half and score on the other (a different,
    # unbiased figure that no report printed), so a reproduction turns it off.
    values = {"name": f"reproduce-{preset}-{profile}", "held_out_score": False, **overrides}
    config = load_config(presets_dir() / f"{preset}.yaml", values, profile=profile)
    return Planned(preset, profile, config, published, overrides)


def reproduce(
    preset: str | Planned,
    profile: str = "cpu",
    overrides: dict[str, Any] | None = None,
    runs_root: Path | None = None,
) -> Reproduction:
    """Train ``preset`` with ``profile`` (and ``overrides``, e.g. a test's tiny model).

    The run goes to ``runs/reproduce/<profile>/<preset>/`` (replaced if it exists: the
    table shows the last reproduction). Everything is checked before training starts.
    """
    from mtsearch.paths import runs_dir
    from mtsearch.train import train

    p = preset if isinstance(preset, Planned) else plan(preset, profile, overrides)
    run_dir = (runs_root or runs_dir()) / "reproduce" / p.profile / p.preset
    if run_dir.exists():
        shutil.rmtree(run_dir)
    result = train(p.config, run_dir=run_dir)
    label, rows = scored_on(result.run_dir, p.config)
    return Reproduction(
        preset=p.preset,
        profile=p.profile,
        model=p.config.model,
        published=p.published,
        scores=dict(result.scores),
        scored_on=label,
        status=result.status,
        run_dir=result.run_dir,
        overrides=p.overrides,
        rows_scored=rows,
        qqp_train=qqp_train_file(p.config),
    )


#: ``scored_on`` labels: which dev rows chose the checkpoint, which scored it.
FULL_DEV = "full dev (chosen and scored on the full dev sets, as the reports)"
FULL_DEV_CHOSEN_ON_SUBSET = "full dev (checkpoint chosen on a dev subset)"
HALF_B = "held-out dev half (chosen on the other half)"
DEV_SUBSET = "dev subset (chosen and scored on it)"
NOT_SCORED = "not scored"


def scored_on(run_dir: Path, config: Any) -> tuple[str, dict[str, int]]:
    """What the run's score was measured on, read from the rows it actually scored.

    ``eval_examples.npz`` names the scored evaluation (``full_dev``: the final evaluation of
    the best checkpoint; ``half_b``: held_out_score's half; ``eval_rows``: the periodic
    evaluation's rows) and holds its dev rows; comparing them with the dev sets' sizes
    tells a full dev evaluation from a subset's.
    """
    import numpy as np

    from mtsearch.data.loaders import load_split, resolve_data_dir
    from mtsearch.records import EVAL_EXAMPLES

    path = run_dir / EVAL_EXAMPLES
    if not path.is_file():
        return NOT_SCORED, {}
    with np.load(path) as z:
        which = str(z["which"])
        rows = {t: int(len(z[f"{t}.index"])) for t in config.tasks if f"{t}.index" in z}
    if which == "full_dev":
        return FULL_DEV_CHOSEN_ON_SUBSET, rows
    if which == "half_b":
        return HALF_B, rows
    data_dir = resolve_data_dir(config.data_dir)
    sizes = {t: len(load_split(t, "dev", data_dir, warn=False).examples) for t in rows}
    return (FULL_DEV if all(rows[t] == sizes[t] for t in rows) else DEV_SUBSET), rows


def qqp_train_file(config: Any) -> str:
    """The QQP training file the run read: the full ``quora-train.csv`` where the data folder
    has it (``mtsearch data fetch --from``), else the course's 22,646-pair subset."""
    from mtsearch.data.loaders import resolve_data_dir, split_path

    if "para" not in config.tasks:
        return "-"
    path = split_path("para", "train", resolve_data_dir(config.data_dir))
    return path.name if path is not None else "-"


def failed(p: Planned, error: Exception, runs_root: Path | None = None) -> Reproduction:
    """The table's row of a reproduction whose training failed (the others still run)."""
    from mtsearch.paths import runs_dir

    return Reproduction(
        preset=p.preset,
        profile=p.profile,
        model=p.config.model,
        published=p.published,
        scores={},
        scored_on=NOT_SCORED,
        status=f"failed: {error}",
        run_dir=(runs_root or runs_dir()) / "reproduce" / p.profile / p.preset,
        overrides=p.overrides,
    )


# ------------------------------------------------------------------------ tables
_LABELS = {
    "sst": "sst acc",
    "para": "para acc",
    "sts": "sts pearson",
    "overall_course": "overall (course)",
    "plain_mean": "plain mean",
}


def format_comparison(rep: Reproduction) -> str:
    """Our dev scores beside the report's, per task and overall in both conventions."""
    pub = rep.published
    ours, paper = rep.measures(), pub.measures()
    lines = [
        f"report {pub.source}",
        f"preset {rep.preset}, profile {rep.profile}, model {rep.model}; status {rep.status}; run {rep.run_dir}",
    ]
    if rep.overrides:
        lines.append("overrides: " + " ".join(f"{k}={v}" for k, v in rep.overrides.items()))
    lines.append(f"{'':18s}{'ours':>10s}{'paper (dev)':>14s}{'ours - paper':>15s}")
    for m in MEASURES:
        mine, theirs = ours.get(m, float("nan")), paper[m]
        lines.append(f"{_LABELS[m]:18s}{mine:10.4f}{theirs:14.4f}{mine - theirs:+15.4f}")
    if pub.printed_overall is not None:
        lines.append(f"the report printed an overall of {pub.printed_overall} ({_convention(pub)})")
    rows = ", ".join(f"{t} {n}" for t, n in rep.rows_scored.items())
    lines.append(f"ours: scored on {rep.scored_on} ({rows} rows); paper: {pub.note}.")
    lines.append(f"QQP training file: {rep.qqp_train}" + _qqp_note(rep.qqp_train))
    lines.append(f"note: {ENCODER_CAVEAT}")
    return "\n".join(lines)


def _qqp_note(name: str) -> str:
    from mtsearch.tasks import QQP_TRAIN_FALLBACK

    if name == QQP_TRAIN_FALLBACK:
        return " (the course's 22,646-pair subset; the reports trained on the full QQP training set)"
    return ""


def _convention(row: Published) -> str:
    return {"course": "course formula", "plain_mean": "plain mean"}.get(row.printed_convention or "", "-")


def format_published() -> str:
    """The published table alone: every report and split, both overall conventions."""
    head = f"{'report':7s}{'split':6s}{'sst':>7s}{'para':>7s}{'sts':>7s}{'course':>8s}{'plain':>7s}  printed  title"
    lines = [head]
    for row in published_scores():
        m = row.measures()
        printed = f"{row.printed_overall} ({_convention(row)})" if row.printed_overall is not None else "-"
        lines.append(
            f"{row.report:7s}{row.split:6s}{m['sst']:7.3f}{m['para']:7.3f}{m['sts']:7.3f}"
            f"{m['overall_course']:8.4f}{m['plain_mean']:7.4f}  {printed}  {row.title} ({row.authors}); "
            f"preset {row.preset}"
        )
    lines.append(
        "course = (SST + QQP + (r + 1) / 2) / 3; plain = (SST + QQP + r) / 3, both from the task scores."
    )
    return "\n".join(lines)


def write_tables(reps: list[Reproduction], out_dir: Path, profile: str) -> tuple[Path, Path]:
    """The --all table as ``reproduce-<profile>.csv`` and ``.md`` in ``out_dir``."""
    from mtsearch.records import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r.row() for r in reps]
    columns = list(rows[0]) if rows else ["report", "preset"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = out_dir / f"reproduce-{profile}.csv"
    atomic_write_text(csv_path, buf.getvalue())

    shown = [
        "report",
        "preset",
        "model",
        "status",
        "scored_on",
        *[c for m in MEASURES for c in (m, f"{m}_paper")],
    ]
    md = [f"# mtsearch reproduce --all --profile {profile}", ""]
    md.append("| " + " | ".join(shown) + " |")
    md.append("|" + "---|" * len(shown))
    for row in rows:
        md.append("| " + " | ".join(_md_cell(row[c]) for c in shown) + " |")
    md += [
        "",
        "Ours: dev scores of the best checkpoint; the CSV's scored_on, rows_scored and qqp_train say "
        "which dev rows chose and scored it and which QQP training file it read; "
        "`_paper`: the report's published dev scores. overall_course = (SST + QQP + (r + 1) / 2) / 3, "
        "plain_mean = (SST + QQP + r) / 3.",
        "",
        f"Note: {ENCODER_CAVEAT}",
    ]
    md_path = out_dir / f"reproduce-{profile}.md"
    atomic_write_text(md_path, "\n".join(md) + "\n")
    return csv_path, md_path


def _md_cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value).replace("|", "\\|")


__all__ = [
    "ENCODER_CAVEAT",
    "PUBLISHED_FILE",
    "Published",
    "Reproduction",
    "format_comparison",
    "failed",
    "qqp_train_file",
    "scored_on",
    "format_published",
    "plan",
    "published_for",
    "published_scores",
    "reproduce",
    "reproducible_presets",
    "write_tables",
]
