"""User-facing errors.

Everything a user can get wrong (a config key, a data file, a model path) raises a
subclass of :class:`MtsearchError` with one sentence that names the culprit. The CLI
prints these without a traceback; anything else is a bug and keeps its traceback.
"""


class MtsearchError(Exception):
    """An error caused by the user's input, with a message meant to be read as is."""


class ConfigError(MtsearchError):
    """A run config, override or search space is invalid."""


class DataError(MtsearchError):
    """A data folder or file is missing or malformed."""


class ModelError(MtsearchError):
    """An encoder could not be found or loaded."""


class NonFiniteLoss(MtsearchError):
    """A loss became NaN or infinite: the run diverged."""


class Pruned(Exception):
    """Raised by a ``report`` hook to stop a run early (a pruned trial).

    Not an :class:`MtsearchError`: nothing went wrong, a search backend decided to stop.
    """
