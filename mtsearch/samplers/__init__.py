"""Task samplers: which tasks contribute a batch to each training step.

A sampler only decides the task schedule; drawing the examples of a batch is the job
of :class:`~mtsearch.samplers.base.BatchStream`, one per task, so every sampler gets
shuffling, epochs and length bucketing the same way.
"""

from mtsearch.samplers import round_robin  # noqa: F401  (registers)
from mtsearch.samplers.base import SAMPLERS, BatchStream, Sampler

__all__ = ["SAMPLERS", "BatchStream", "Sampler"]
