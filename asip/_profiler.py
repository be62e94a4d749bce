"""Pause Dask's task profiler on a worker while a stage's operators run there.

A Dask worker samples the stack of every executing task every 10 ms
(``Worker.trigger_profile`` on its event loop, via ``sys._current_frames()``). Operators
are tasks that run for the whole stage, dozens per worker, so the sampling costs the
worker's event loop (the channel's and the launch's) work in proportion to the operators,
100 times a second. And on Python 3.11, ``sys._current_frames()`` can deadlock the whole
process against a thread that is being created or is ending (a lock-order inversion of
the GIL and the runtime's ``HEAD_LOCK`` through a garbage collection: cpython#106883,
cpython#116969, reported for Dask as distributed#8616). Distributed's fix (distributed#8916)
turned off only the event loop's own profiler on 3.11, not this one. A launch starts one
thread per operator on each worker: 1 in 5 of the 512-operator launches lost a worker
this way (its event loop stuck, its share of the gang never started).
"""

from __future__ import annotations

from typing import Any

__all__ = ["pause", "resume"]

_PAUSES = "_asip_profile_pauses"  # on the worker: (stages pausing it, the callback)


def _skip() -> None:
    """Stands in for ``Worker.trigger_profile`` while paused."""


def pause(worker: Any) -> bool:
    """Stop sampling task stacks on ``worker`` (until every `pause` has its `resume`).

    The periodic callback's function is swapped rather than the callback stopped: a
    worker that (re)starts sets up its plugins before it starts its periodic callbacks.
    Returns whether the worker has a profiler to pause.
    """
    pc = getattr(worker, "periodic_callbacks", {}).get("profile")
    if pc is None:
        return False
    count, original = getattr(worker, _PAUSES, (0, pc.callback))
    setattr(worker, _PAUSES, (count + 1, original))
    pc.callback = _skip
    return True


def resume(worker: Any) -> None:
    """Undo one `pause`; the last one puts the profiler back."""
    count, original = getattr(worker, _PAUSES, (0, None))
    if count <= 0:
        return
    if count > 1:
        setattr(worker, _PAUSES, (count - 1, original))
        return
    delattr(worker, _PAUSES)
    pc = getattr(worker, "periodic_callbacks", {}).get("profile")
    if pc is not None:
        pc.callback = original
