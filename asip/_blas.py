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
_limit: Any = None  # threadpoolctl's limit while held (None: nothing was changed)
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


def hold(enabled: bool = True) -> bool:
    """Hold the process's BLAS pools at one thread for one stage (until every `hold` has its
    `release`); ``enabled`` False changes nothing. Returns whether this call holds them."""
    global _holds, _limit
    if not enabled:
        return False
    with _lock:
        if _holds == 0:
            try:
                blas = _blas_pools()
                if any(lib.num_threads > 1 for lib in blas.lib_controllers):
                    _limit = blas.limit(limits=1)
            except Exception as exc:  # no threadpoolctl, or a pool it cannot drive
                logger.debug("asip: could not hold BLAS at one thread: %r", exc)
                _limit = None
        _holds += 1
    return True


def release() -> None:
    """Undo one `hold`; the last one puts the pools' sizes back."""
    global _holds, _limit
    with _lock:
        if _holds <= 0:
            return
        _holds -= 1
        if _holds == 0 and _limit is not None:
            limit, _limit = _limit, None
            try:
                limit.restore_original_limits()
            except Exception as exc:
                logger.debug("asip: could not put BLAS's thread pools back: %r", exc)
