"""numba's set-up and the default dense fit's kernels, loaded in the background at import.

The first numba kernel a process calls pays numba's one-time set-up (its typing and
lowering registries, the runtime's LLVM module, extension entry points: 0.3-0.5 s, most of
it holding the GIL) before its own cache load (~5 ms). Importing `asip.algorithms` builds no
kernel, so a script's import stays short. In an interactive session (a notebook, IPython,
the python prompt), where the first fit comes a while after the import, this module does
that set-up, and loads the kernels a default dense fit calls (`lbfgs`: the loss and
gradient sums, the intercept's certificate pass, the Hessian certificate's curvature rows,
the trace's objective), in a thread of its own (in IPython once the importing cell has
finished, not beside the rest of it): the first fit then finds them loaded, and
one that comes sooner waits on numba's compile lock for what is left. A fresh cache compiles
them there (what the fit would have done). Not in a script or a worker: there the thread
only contended for the GIL with the imports that follow (a fresh script's first fit
returned later: 4.50 -> 5.09 s, paired 1.16x, n=8, load 5.5; `benchmarks/first_fit.py`).
``asip.driver.numba-warmup``: ``auto`` (interactive sessions), ``true`` or ``false``.

The thread is not a daemon: an interpreter that exits meanwhile waits for it (a daemon
inside LLVM while the interpreter tears numba down could crash the exit), and a fork
waits for it too (the child would inherit numba's compile lock held).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading

import numpy as np

from . import _kernels as K
from . import _losses as L
from . import _primal_cert as C

__all__ = ["THREAD_NAME", "interactive", "start", "wait", "wanted"]

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
    if gc.isenabled():
        # numba's set-up leaves cyclic garbage; left for the embedded cluster's gc.collect()
        # (asip._driver_gc), freeing it made the first fit's cluster start ~0.1 s longer
        gc.collect()


def interactive() -> bool:
    """Whether this process is an interactive session: the python prompt (or ``python -i``),
    IPython or a Jupyter kernel."""
    return hasattr(sys, "ps1") or bool(sys.flags.interactive) or _ipython_shell() is not None


def wanted() -> bool:
    """Whether ``asip.driver.numba-warmup`` asks for the warm-up in this process."""
    import dask

    from asip._config import flag

    if str(dask.config.get("asip.driver.numba-warmup")).strip().lower() == "auto":
        return interactive()
    return flag("driver.numba-warmup")


def _ipython_shell():
    """The running IPython shell (a Jupyter kernel's included), or None."""
    ipython = sys.modules.get("IPython")  # imported by IPython and Jupyter, never by us
    return getattr(ipython, "get_ipython", lambda: None)()


def _start_thread() -> threading.Thread:
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_run, name=THREAD_NAME)
            _thread.start()
        return _thread


def _start_after_the_cell(*_args) -> None:
    """IPython's ``post_run_cell`` hook, once: the cell that imported asip has finished."""
    shell = _ipython_shell()
    if shell is not None:
        shell.events.unregister("post_run_cell", _start_after_the_cell)
    _start_thread()


def start() -> threading.Thread | None:
    """Start the warm-up once per process where it is `wanted`: at once, or in IPython (a
    notebook) when the importing cell has finished; the thread (None while deferred or not
    wanted). In IPython the rest of the importing cell would otherwise share the GIL with it:
    the cell's later imports (scikit-learn's, say) took 1.4-1.6x longer."""
    if _thread is not None or not wanted():
        return _thread
    shell = _ipython_shell()
    if shell is not None and hasattr(shell, "events"):
        if _start_after_the_cell not in shell.events.callbacks.get("post_run_cell", ()):
            shell.events.register("post_run_cell", _start_after_the_cell)
        return None
    return _start_thread()


def wait() -> None:
    """Return when the warm-up thread (if any) is done."""
    thread = _thread
    if thread is not None and thread is not threading.current_thread():
        thread.join()


os.register_at_fork(before=wait)
