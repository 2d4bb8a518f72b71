"""Task samplers: which tasks contribute a batch to each training step.

A sampler decides the task schedule and, when it needs to, which examples each task
trains on (:meth:`~mtsearch.samplers.base.Sampler.index_pool`); drawing the examples of
a batch is the job of :class:`~mtsearch.samplers.base.BatchStream`, one per task, so
every sampler gets shuffling, epochs and length bucketing the same way.
:class:`~mtsearch.samplers.base.TaskBatches` joins the two for the trainer.
"""

from mtsearch.registry import discover
from mtsearch.samplers.base import SAMPLERS, BatchStream, Sampler, TaskBatches, build_streams

# Importing every module of this folder registers what it defines: there is no list to keep.
discover(__name__, __path__)

__all__ = ["SAMPLERS", "BatchStream", "Sampler", "TaskBatches", "build_streams"]
