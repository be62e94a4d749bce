"""BLAS's thread pools held at one thread while a stage's operators run in this process.

An operator is one thread's work: distributed's nanny starts each worker process with
``OMP_NUM_THREADS=1``, ``OPENBLAS_NUM_THREADS=1`` and ``MKL_NUM_THREADS=1``
(``distributed.nanny.pre-spawn-environ``), so a worker's BLAS calls run in the calling
thread. Workers that are threads of the driver's process (``asip.connect(processes=False)``)
get no such environment: each operator's BLAS call started a pool of one thread per core,
two operators on 2 cores kept 4 BLAS threads spinning, and asip-cocoa's Gram products on
dense 100k x 100 took 1.57x the wall time (median of 6 alternating pairs). While at least
one stage runs here, every BLAS pool (`threadpoolctl`) is held at one thread; the
last stage's end puts the pools' own sizes back. Nothing is done where every pool already
has one thread (the nanny's workers). The pools' sizes are read, not the environment: a
driver that started worker processes has ``OMP_NUM_THREADS=1`` and the like in its own
``os.environ`` too (distributed's nanny sets them there for its children), though its pools
were sized when BLAS loaded.

threadpoolctl 3.8 lets only the thread in control of OpenBLAS's pool size (the first to set
it, until it gives the control up or ends) set it; other threads' settings are silently
dropped (``OpenBLASController.clear_controlling_thread``). The stage sets the pools from the
workers' event loop: a driver whose main thread had limited BLAS (``threadpool_limits``
called, or its ``with`` block open) made the hold a no-op, the operators running the user's
pool size against each other (asip-cocoa, dense 100k x 100: 2.9x the wall time,
``benchmarks/blas_hold.py``); and the hold left the loop thread in control, so the limits the
main thread took after a fit (the user's, scikit-learn's KMeans's) were dropped while the
cluster lived. So each change here frees the control first and gives it up after: no thread
owns the pools afterwards, and any (the user's main thread too) can set them. A pool that
someone resized during the hold keeps their size: the stage's end puts back only the pools
still at one thread.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["hold", "release"]

_lock = threading.Lock()
_holds = 0
_held: list = []  # (pool's controller, its size before the hold) of each pool the hold resized
_pools: Any = None  # (modules imported then, threadpoolctl's controller of the BLAS pools)


def _blas_pools() -> Any:
    """The BLAS libraries loaded in this process; their ``num_threads`` are read live.

    Looking them up costs ~5 ms with numpy and scipy, so it is done again only after new
    imports (BLAS libraries load with the modules that use them: numpy, scipy.linalg)."""
    global _pools
    if _pools is None or _pools[0] != len(sys.modules):
        from threadpoolctl import ThreadpoolController

        # OpenBLAS's and MKL's sizes are the process's, OpenMP's (not BLAS) each calling
        # thread's own: left alone
        _pools = (len(sys.modules), ThreadpoolController().select(user_api="blas"))
    return _pools[1]


def _clear_control() -> Any:
    """threadpoolctl's ``OpenBLASController.clear_controlling_thread`` (3.8 on), else None:
    before 3.8 any thread's setting took effect."""
    import threadpoolctl

    return getattr(getattr(threadpoolctl, "OpenBLASController", None),
                   "clear_controlling_thread", None)


def _resize(sizes: list) -> None:
    """Set each ``(pool, size)`` whatever thread set the pools last, and leave no thread in
    control of them afterwards (see the module's docstring)."""
    clear = _clear_control()
    if clear is not None:
        clear(force=True)
    try:
        for lib, size in sizes:
            lib.set_num_threads(size)
    finally:
        if clear is not None:
            clear()  # only if still ours: a thread that took control meanwhile keeps it
    missed = [(lib.internal_api, lib.num_threads, size) for lib, size in sizes
              if lib.num_threads != size]
    if missed:  # another thread took control between the clear and the setting
        logger.debug("asip: BLAS pools (library, size, wanted) not resized: %s", missed)


def hold(enabled: bool = True) -> bool:
    """Hold the process's BLAS pools at one thread for one stage (until every `hold` has its
    `release`); ``enabled`` False changes nothing. Returns whether this call holds them."""
    global _holds, _held
    if not enabled:
        return False
    with _lock:
        if _holds == 0:
            try:
                _held = [(lib, lib.num_threads) for lib in _blas_pools().lib_controllers
                         if lib.num_threads > 1]
                if _held:  # (every pool at one thread, the nanny's workers: nothing to do)
                    _resize([(lib, 1) for lib, _ in _held])
            except Exception as exc:  # no threadpoolctl, or a pool it cannot drive
                logger.debug("asip: could not hold BLAS at one thread: %r", exc)
                _held = []
        _holds += 1
    return True


def release() -> None:
    """Undo one `hold`; the last one puts back the sizes of the pools still at one thread."""
    global _holds, _held
    with _lock:
        if _holds <= 0:
            return
        _holds -= 1
        if _holds == 0 and _held:
            held, _held = _held, []
            try:
                _resize([(lib, size) for lib, size in held if lib.num_threads == 1])
            except Exception as exc:
                logger.debug("asip: could not put BLAS's thread pools back: %r", exc)
