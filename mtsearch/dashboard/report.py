"""``mtsearch report SWEEP --out report.html``: one self-contained HTML file to share.

The leaderboard (with the command that reproduces the best configuration with all its
seeds), the verdicts of every dimension (as ``mtsearch results`` prints them), the parameter
importances and the task trade-offs, as in the dashboard. plotly.js
is inlined once (no CDN, no server): the file opens offline in any browser.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

from mtsearch.dashboard import figures as F
from mtsearch.dashboard.ablation import (
    ablation_for,
    log_dims,
    model_text,
    noise_text,
    parallel_frame,
    single_level_text,
    verdict_table,
)
from mtsearch.dashboard.importance import importance, importance_frame
from mtsearch.dashboard.leaderboard import best_configuration, leaderboard
from mtsearch.dashboard.sweeps import SweepData, load_sweep, metric_label, sweeps_table
from mtsearch.records import atomic_write_text
from mtsearch.sweep import stats
from mtsearch.sweep.results import NA, find_sweep

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1400px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
.card { border: 1px solid #1a9850; border-radius: 8px; padding: 8px 16px; background: #f6fbf7; }
pre { white-space: pre-wrap; word-break: break-all; background: #f4f4f4; padding: 8px; }
.note { background: #fff7e0; border: 1px solid #e6c36a; padding: 8px 12px; border-radius: 6px; }
"""


class _Figures:
    """Inline plotly.js with the first figure only."""

    def __init__(self):
        self.first = True

    def __call__(self, fig) -> str:
        out = fig.to_html(full_html=False, include_plotlyjs=self.first, config={"displaylogo": False})
        self.first = False
        return out


def _table(df, digits: int = 4) -> str:
    return (
        '<div style="overflow-x:auto">'
        + df.to_html(index=False, na_rep=NA, float_format=lambda x: f"{x:.{digits}f}", border=0)
        + "</div>"
    )


def build_report(sweep: str) -> tuple[str, SweepData]:
    """The report's HTML for a sweep name (under runs/sweeps/) or folder."""
    d = load_sweep(find_sweep(sweep))
    fig = _Figures()
    esc = html.escape
    sp = d.space
    parts = [
        f"<h1>Sweep {esc(d.name)}</h1>",
        f"<p>space <b>{esc(str(sp.get('name', '?')))}</b> ({esc(str(sp.get('algorithm', '?')))}, "
        f"{sp.get('seeds', '?')} seed(s)), backend <b>{esc(str(d.meta.get('backend', '?')))}</b>; "
        f"written {time.strftime('%Y-%m-%d %H:%M')}.</p>",
        _table(sweeps_table([d]).drop(columns=["sweep", "status"])),
    ]
    parts += [f'<p class="note">{esc(n)}</p>' for n in d.notices]
    if not d.has_results:
        parts.append(f'<p class="note">{esc(d.status_message())}</p>')
        return _page(d.name, parts), d

    res = d.results
    best = best_configuration(d)
    scores = ", ".join(f"{metric_label(m)} {mean:.4f} ± {sd:.4f}" for m, (mean, sd) in best["scores"].items())
    params = ", ".join(f"{esc(k)} = <b>{esc(str(v))}</b>" for k, v in best["params"].items())
    parts += [
        "<h2>Leaderboard</h2>",
        f'<div class="card"><h3>Best configuration</h3><p>{params}</p><p>{scores} (mean ± sd over '
        f"{best['seeds']} seed(s))</p><p>Reproduce it with all its seeds "
        f"({esc(', '.join(map(str, best['seed_values'])))}), not its luckiest one:</p>"
        f"<pre>{esc(best['command'])}</pre></div>",
    ]
    board = leaderboard(d)
    shown = board[["rank", *res.dims, "seeds"]].copy()
    for m in res.metrics:
        shown[f"{metric_label(m)} mean ± sd"] = [
            f"{mu:.4f} ± {sd:.4f}" if sd == sd else f"{mu:.4f}"
            for mu, sd in zip(board[f"{m}_mean"], board[f"{m}_sd"], strict=True)
        ]
    shown["trials"] = board["trials"]
    parts.append(_table(shown))

    parts.append("<h2>Ablation</h2><p>Each level against the best of the others: the model of the sweep "
                 f"(configuration + seed block) gives simultaneous {res.confidence} intervals on the difference "
                 "from the best (multiple comparison with the best); a level whose interval reaches above 0 is in "
                 "the best set (bold). Its members: green, the observed best; teal, equivalent (within delta of "
                 "the best); blue, undecided (more seeds needed to tell). Grey: worse; open orange: untested "
                 "(fewer than two finished runs, never compared).</p>")  # fmt: skip
    for dim in res.dims:
        if ablation_for(d, dim).empty:
            parts.append(f"<p>{esc(dim)}: no finished run where it applies.</p>")
            continue
        line = single_level_text(d, dim)
        if line:  # nothing to compare: one line, not a panel of plots
            parts.append(f"<p>{esc(line)}</p>")
            continue
        parts.append(fig(F.ablation_figure(d, dim)))
        parts.append(f"<p>{esc(model_text(d, dim))}</p>")
        noise = noise_text(d, dim)
        if noise:
            parts.append(f"<p>{esc(noise)}</p>")
        table = verdict_table(d, dim, "overall").drop(columns=["spread"], errors="ignore")
        table["seeds needed"] = table["seeds needed"].map(lambda v: "" if v is None or v != v else str(v))
        parts.append(_verdicts_html(table))

    parts.append("<h2>Importance</h2>")
    imp = importance(d)
    if imp.values is None:
        parts.append(f'<p class="note">{esc(imp.message or "")}</p>')
    else:
        parts.append(fig(F.importance_figure(importance_frame(imp), imp.evaluator)))

    parts.append("<h2>Task trade-offs</h2>")
    if len(d.tasks) < 2:
        parts.append('<p class="note">A single task: no trade-off to show.</p>')
    else:
        parts.append(fig(F.tradeoff_figure(d)))
        parts.append(f"<p>Pareto front: {len(res.pareto)} configuration(s).</p>")
    parts.append("<h2>Parallel coordinates</h2>")
    parts.append(fig(F.parallel_figure(parallel_frame(d), res.dims, "overall", log_dims(d))))
    return _page(d.name, parts), d


def _verdicts_html(table) -> str:
    """The overall verdict table, best-set members in bold."""
    html_table = _table(table)
    for level, verdict in zip(table["level"], table["verdict"], strict=True):
        if verdict == stats.IN_SET:
            cell = f"<td>{html.escape(str(level))}</td>"
            html_table = html_table.replace(cell, f"<td><b>{html.escape(str(level))}</b></td>", 1)
    return html_table


def _page(name: str, parts: list[str]) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>mtsearch sweep {html.escape(name)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")  # fmt: skip


def write_report(sweep: str, out: Path | None = None) -> tuple[Path, SweepData]:
    text, d = build_report(sweep)
    target = Path(out) if out else d.sweep_dir / "report.html"
    atomic_write_text(target, text)
    target.chmod(0o644)  # a file to share: readable like any other written file
    return target, d
