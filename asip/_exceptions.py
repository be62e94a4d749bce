"""The asip exception hierarchy: every error the runtime raises on purpose is an AsipError."""

from __future__ import annotations

__all__ = [
    "AsipError",
    "GangSchedulingError",
    "MessageError",
    "OperatorFailedError",
    "StageTimeoutError",
]


class AsipError(Exception):
    """Base class of the errors asip raises on purpose."""


class GangSchedulingError(AsipError):
    """The stage's operators cannot all run at once on this cluster, or some never started."""


class MessageError(AsipError, ValueError):
    """A payload that cannot travel on the channel (wrong type, too large, malformed)."""


class OperatorFailedError(AsipError):
    """An operator kept failing: it was restarted ``max_restarts`` times and failed again."""


class StageTimeoutError(AsipError):
    """Operators did not return within the stop grace period after the stage was stopped.

    `Stage.run` no longer raises it: such partitions are listed in
    ``StageResult.missing`` with that reason, next to the results that did return.
    """
