"""The asip exception hierarchy: every error the runtime raises on purpose is an AsipError."""

from __future__ import annotations

__all__ = [
    "AsipError",
    "GangSchedulingError",
    "MessageError",
    "OperatorFailedError",
    "StageTimeoutError",
    "StopStage",
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


class StopStage(Exception):
    """Raise in a stage's ``on_trace`` to end the stage now, as a normal stop.

    Every operator is stopped and its result collected, and `Stage.run` returns the
    `StageResult` with ``stopped_by`` set to ``reason``: a stop decided on the driver
    (enough accuracy, a user's callback), not an error, so nothing is re-raised.
    """

    def __init__(self, reason: str = "on_trace") -> None:
        super().__init__(reason)
        self.reason = str(reason)
