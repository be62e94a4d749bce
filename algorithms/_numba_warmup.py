"""numba's set-up and the default dense fit's kernels, loaded in the background at import.

The first numba kernel a process calls pays numba's one-time set-up (its typing and
lowering registries, the runtime's LLVM module, extension entry points: 0.3-0.5 s, most of
it holding the GIL) before its own cache load (~5 ms). Importing `asip.algorithms` builds no
kernel, so a script's import stays short; this module then does that set-up, and loads the
kernels a default dense fit calls (`lbfgs`: the loss and gradient sums, the intercept's
certificate pass, the Hessian certificate's curvature rows, the trace's objective), in a
thread of its own. A notebook's first fit, run a moment after the import, then finds them
loaded; a fit that comes sooner waits on numba's compile lock for what is left, no longer
than it would have loaded them itself. A fresh cache compiles them there (what the fit would
have done). Off with ``asip.driver.numba-warmup: false``.

The thread is not a daemon: an interpreter that exits meanwhile waits for it (a daemon
inside LLVM while the interpreter tears numba down could crash the exit), and a fork
waits for it too (the child would inherit numba's compile lock held).
"""

from __future__ import annotations

import logging
import os
import threading

import numpy as np

from . import _kernels as K
from . import _losses as L
from . import _primal_cert as C

__all__ = ["THREAD_NAME", "start", "wait"]

logger = logging.getLogger(__name__)

THREAD_NAME = "asip-numba-warmup"

_lock = threading.Lock()
_thread: threading.Thread | None = None


def _load_default_kernels() -> None:
    """Call each kernel of a default dense fit once, on two rows of float64 C arrays with an
    intercept (the argument types such a fit passes), so numba sets itself up and loads them."""
    X, y, w = np.zeros((2, 2)), np.ones(2), np.zeros(3)  # w, side_g: 2 features + intercept
    K.loss_sum(X, y, w, L.LOGISTIC, True)  # the first: numba's own set-up
    K.loss_grad_sw(X, y, None, w, L.LOGISTIC, True, np.zeros(3))
    C._side_pass(X, y, np.zeros(0), w, L.LOGISTIC, np.zeros(3), np.zeros(3))
    L.rows(L.ROW_CURVATURE, L.LOGISTIC, y, y)
    K.row_sqnorms(X)
    L.value_rows(L.LOGISTIC, X, y)


def _run() -> None:
    try:
        _load_default_kernels()
    except Exception as exc:  # an optimisation only: the fit loads (or fails) as before
        logger.debug("numba warm-up failed: %r", exc)


def start() -> threading.Thread | None:
    """Start the warm-up thread once per process (None when ``asip.driver.numba-warmup`` is
    off); later calls return the same thread."""
    global _thread
    from asip._config import flag

    with _lock:
        if _thread is None and flag("driver.numba-warmup"):
            _thread = threading.Thread(target=_run, name=THREAD_NAME)
            _thread.start()
        return _thread


def wait() -> None:
    """Return when the warm-up thread (if any) is done."""
    thread = _thread
    if thread is not None and thread is not threading.current_thread():
        thread.join()


os.register_at_fork(before=wait)
