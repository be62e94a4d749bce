"""glibc malloc's thresholds, raised on a worker while a stage's operators run there.

Distributed's nanny starts each worker with ``MALLOC_TRIM_THRESHOLD_=65536``
(``distributed.nanny.pre-spawn-environ``) so that freed memory goes back to the OS.
Setting a malloc threshold in the environment also turns off glibc's *dynamic* mmap
threshold: every allocation of 128 KiB or more is then a fresh ``mmap`` whose pages
are faulted in and zeroed on first touch and unmapped again on ``free``, and a
thread's heap is cut back (``MADV_DONTNEED``) whenever 64 KiB sit free at its top.
An operator allocates such temporaries (a vector per partition row) every step: an
asip-cocoa Newton round on ijcnn1 took 2.1-2.5x the CPU under that setting, in one
process as on a worker (``benchmarks/step_breakdown.py``).

While at least one stage runs on a worker, its mmap threshold is
``asip.stage.malloc-mmap-threshold`` and its trim threshold twice that (what glibc's
dynamic policy would reach for such allocations); once the last stage there has ended,
the worker's own values (its environment's, or glibc's defaults) are put back and
``malloc_trim(0)`` hands the free memory back, in distributed's offload thread a moment
after the teardown (3-7 ms for 40 MB: not on the event loop, nor in the fit's finish).
Nothing is changed where malloc is not glibc's, or where no threshold was set in the
environment (glibc's dynamic policy then adapts by itself).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading

logger = logging.getLogger(__name__)

__all__ = ["hold", "release", "settle", "thresholds_fixed"]

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
DEFAULT_THRESHOLD = 128 * 1024  # glibc's initial mmap and trim thresholds
MAX_MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for the mmap threshold on 64-bit
_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")

_lock = threading.Lock()
_holds = 0
_libc = None


def _glibc():
    """The C library when it is glibc (it has ``mallopt`` and ``malloc_trim``), else None."""
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            lib.gnu_get_libc_version  # glibc only
            lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            lib.malloc_trim.argtypes = [ctypes.c_size_t]
            _libc = lib
        except (OSError, AttributeError):
            _libc = False
    return _libc or None


def thresholds_fixed() -> bool:
    """True if this process's environment set a malloc threshold (dynamic policy off)."""
    return any(os.environ.get(name) for name in _ENV)


def _env_threshold(name: str) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return DEFAULT_THRESHOLD


def hold(mmap_threshold: int) -> bool:
    """Raise the thresholds for one stage (until every `hold` has its `release`);
    ``mmap_threshold`` 0 changes nothing. Returns whether this call holds them."""
    global _holds
    if mmap_threshold <= 0 or not thresholds_fixed() or (libc := _glibc()) is None:
        return False
    mmap_threshold = min(int(mmap_threshold), MAX_MMAP_THRESHOLD)
    with _lock:
        if _holds == 0:
            ok = (libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
                  and libc.mallopt(M_TRIM_THRESHOLD, 2 * mmap_threshold))
            if not ok:
                logger.debug("asip: mallopt refused an mmap threshold of %d", mmap_threshold)
                _restore(libc)
                return False
        _holds += 1
    return True


def release() -> bool:
    """Undo one `hold`; True for the last one: then call `settle` (off the event loop)."""
    global _holds
    with _lock:
        if _holds <= 0:
            return False
        _holds -= 1
        return _holds == 0


def settle() -> None:
    """After the last `release`: put the worker's thresholds back and return the heaps'
    free memory to the OS (``malloc_trim(0)``: ms per 10 MB). Run off the event loop and after the stage's teardown: with the old
    thresholds back, the teardown's own frees would each trim the heap synchronously.
    Nothing happens if a new stage holds them again meanwhile (back-to-back fits)."""
    if (libc := _glibc()) is None:
        return
    with _lock:
        if _holds:  # a new stage runs here: its operators keep their heaps (trimmed after it)
            return
        _restore(libc)
    libc.malloc_trim(0)


def _restore(libc) -> None:
    libc.mallopt(M_MMAP_THRESHOLD, _env_threshold("MALLOC_MMAP_THRESHOLD_"))
    libc.mallopt(M_TRIM_THRESHOLD, _env_threshold("MALLOC_TRIM_THRESHOLD_"))
