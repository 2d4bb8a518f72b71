"""Search backends: who proposes configurations and decides when to stop one.

Both call the same :func:`mtsearch.sweep.runner.run_configuration`; neither knows a
strategy by name. Imported lazily: Optuna and Ray load only when a sweep runs.
"""

from mtsearch.backends.base import BACKENDS, Backend, SweepOutcome
from mtsearch.registry import discover

# Importing every module of this folder registers what it defines: there is no list to keep.
discover(__name__, __path__)

__all__ = ["BACKENDS", "Backend", "SweepOutcome"]
