"""All strategy registries in one place, keyed by the config field that picks one.

Importing a family's package imports every module of its folder, which registers its
strategies. This module is the one list of families that the config, the CLI (``mtsearch
dims``), search spaces, the dashboard and the tests read.
"""

from __future__ import annotations

from functools import cache

from mtsearch.registry import Registry


@cache
def registries() -> dict[str, Registry]:
    from mtsearch.heads import HEADS
    from mtsearch.pooling import POOLING
    from mtsearch.samplers import SAMPLERS
    from mtsearch.updates import UPDATES

    return {reg.field: reg for reg in (SAMPLERS, UPDATES, POOLING, HEADS)}
