"""A sweep's Optuna study, opened through the backend's own :func:`open_study`.

The dashboard reads the ``study.db`` inside the sweep folder (a sweep run with ``--storage
URL`` elsewhere is read from its run directories instead). The study is the one named after
the sweep, as the Optuna backend names it, or else the first one the file holds.
"""

from __future__ import annotations

from pathlib import Path


def study_location(sweep_dir: Path) -> tuple[str, str]:
    """(storage URL, study name) of the study in ``sweep_dir/study.db``; LookupError when it holds none."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{(Path(sweep_dir) / 'study.db').resolve()}"
    names = optuna.get_all_study_names(url)
    if not names:
        raise LookupError("no study in study.db")
    name = Path(sweep_dir).name
    return url, name if name in names else names[0]


def sweep_study(sweep_dir: Path):
    """The sweep's study, loaded (never created)."""
    from mtsearch.backends.optuna_study import open_study

    return open_study(*study_location(sweep_dir), create=False)
