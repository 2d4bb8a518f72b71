"""Search backends: who proposes configurations and decides when to stop one.

Both call the same :func:`mtsearch.sweep.runner.run_configuration`; neither knows a
strategy by name. Imported lazily: Optuna and Ray load only when a sweep runs.
"""

from mtsearch.backends import optuna_study, ray_tune  # noqa: F401  (registers)
from mtsearch.backends.base import BACKENDS, Backend, SweepOutcome

__all__ = ["BACKENDS", "Backend", "SweepOutcome"]
