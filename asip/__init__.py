"""asip: Asynchronous Sideways Information Passing on dask.distributed.

A `Stage` gang-schedules one long-running `Operator` per data partition, each on
the worker that holds its partition; operators exchange small model updates
sideways with a non-blocking ``ctx.push`` / ``ctx.poll`` channel, and lost
operators are restarted on their reloaded partition.
"""

from __future__ import annotations

from asip import _config  # noqa: F401  (registers the asip.* dask.config defaults)
from asip import faults
from asip._channel import ChannelStats
from asip._checkpoint import Checkpoint, load_checkpoint
from asip._client import connect
from asip._exceptions import (
    AsipError,
    GangSchedulingError,
    MessageError,
    OperatorFailedError,
    StageTimeoutError,
    StopStage,
)
from asip._operator import STOP, Context, Operator
from asip._stage import Restart, Stage, StageResult, TimelineEvent, TraceEntry
from asip._wire import Message

__version__ = "0.1.0"

__all__ = [
    "STOP",
    "AsipError",
    "ChannelStats",
    "Checkpoint",
    "Context",
    "GangSchedulingError",
    "Message",
    "MessageError",
    "Operator",
    "OperatorFailedError",
    "Restart",
    "Stage",
    "StageResult",
    "StageTimeoutError",
    "StopStage",
    "TimelineEvent",
    "TraceEntry",
    "connect",
    "faults",
    "load_checkpoint",
]
