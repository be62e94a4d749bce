"""The driver's garbage collector while asip's embedded cluster lives in it (``asip.driver.gc-freeze``).

`asip.connect()` with no address runs the scheduler in the user's process, next to
~240k objects tracked by the cycle collector from the imports alone (scikit-learn,
scipy, numba, bokeh): a full collection there took 150-420 ms, and one falling into
a small fit froze its worker -> scheduler -> client hops (a 70 ms fit took 210-530 ms).
Those objects live as long as the process, so once the cluster is up, collect once
(no garbage is kept) and `gc.freeze()` what is alive: later full collections walk only
what came after. The freeze is process-global, so asip takes it only if nothing is
frozen yet (an application that froze objects itself runs its own policy), counts the
embedded clients holding it, and the last one's close puts the objects back
(`gc.unfreeze()`): a closed cluster's own cycles are collected as before.
"""

from __future__ import annotations

import gc
import logging
import threading

logger = logging.getLogger(__name__)

__all__ = ["freeze", "holders", "release"]

_lock = threading.RLock()
_holders = 0  # embedded clients whose connect() froze the collector and have not closed


def holders() -> int:
    """How many embedded clients hold asip's freeze of the driver's collector now."""
    return _holders


def freeze() -> bool:
    """Collect, then freeze every object alive now; False (and nothing done) when the
    application froze objects itself. The caller calls `release` once when it is done."""
    global _holders
    if _holders == 0 and gc.get_freeze_count() > 0:
        logger.debug("asip: %d objects already frozen by the application: its gc policy "
                     "is left alone", gc.get_freeze_count())
        return False
    # outside the lock: a finalizer it runs may close a dropped embedded client, whose
    # close (on that client's loop thread, while this one waits) calls `release`
    gc.collect()
    with _lock:
        if _holders == 0 and gc.get_freeze_count() > 0:  # the application froze meanwhile
            return False
        gc.freeze()
        _holders += 1
        logger.debug("asip: froze %d objects in the driver's collector", gc.get_freeze_count())
        return True


def release() -> None:
    """One holder is done; the last one unfreezes (the objects go back to the oldest generation)."""
    global _holders
    with _lock:
        if _holders <= 0:
            return
        _holders -= 1
        if _holders == 0:
            gc.unfreeze()
