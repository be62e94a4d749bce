"""Send what a distributed `BatchedSend` holds now, not at its next interval: a gang's launch.

distributed batches its streams (client → scheduler every 10 ms, scheduler → worker every
5 ms): a message put on a stream less than an interval after the last batch waits for the
rest of it. Back-to-back stages (a fit's stages, a benchmark's repeats) always find the
previous stage's releases on both streams, so the gang's ``update-graph`` and then its
``compute-task`` messages waited up to 10 + 5 ms: most of a small stage's launch
(``benchmarks/launch_timeline.py``). Flushing sends the whole buffer, in order, at once.
"""

from __future__ import annotations

from typing import Any

__all__ = ["flush", "flush_client", "flush_workers"]

# BatchedSend's private state this relies on (distributed 2026.8): the messages waiting,
# when the next batch may go (None: the sender goes as soon as it is woken), its wake-up
_ATTRIBUTES = ("buffer", "next_deadline", "waker")


def flush(stream: Any) -> bool:
    """On the stream's event loop: send its waiting messages now; True if it was told to.

    False, and nothing touched, when nothing waits for the interval, or when the stream
    is not a BatchedSend as distributed 2026.8 has it (then the messages go at the end
    of the interval, as without asip: slower, never lost or reordered)."""
    if stream is None or not all(hasattr(stream, a) for a in _ATTRIBUTES):
        return False
    if not stream.buffer or stream.next_deadline is None or getattr(stream, "please_stop", False):
        return False  # nothing waiting, or the sender already goes as soon as it can
    wake = getattr(stream.waker, "set", None)
    if not callable(wake):
        return False
    stream.next_deadline = None  # the sender, woken, finds no deadline: it sends the buffer
    wake()
    return True


def flush_client(client: Any) -> bool:
    """On the client's loop: send the client's stream to the scheduler now."""
    return flush(getattr(client, "scheduler_comm", None))


def flush_workers(scheduler: Any, keys: list) -> int:
    """On the scheduler's loop: send its streams to the workers processing ``keys`` now
    (their ``compute-task``); the number of streams flushed."""
    tasks = getattr(scheduler, "tasks", {})
    comms = getattr(scheduler, "stream_comms", None)
    if comms is None:
        return 0
    workers = set()
    for key in keys:
        ts = tasks.get(key)
        ws = getattr(ts, "processing_on", None)
        if ws is not None:
            workers.add(ws.address)
    return sum(flush(comms.get(addr)) for addr in workers)
