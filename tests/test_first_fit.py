"""A fresh script's first default fit pays only for what it uses: the estimators' embedded
cluster starts no Bokeh dashboard unless configured (and has the /asip page when it is),
neither importing asip.algorithms nor a default fit builds the numpy-facing loss ufuncs
(uncached LLVM wrappers), and a scheduler
without a dashboard keeps its HTTP endpoints off distributed's default port 8787. A first
fit a while after the import in an interactive session (a notebook) finds numba set up and
its kernels loaded."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import warnings

import numpy as np
import pytest

import asip

pytestmark = pytest.mark.timeout(240)

#: `asip.algorithms._losses`' numpy-facing ufuncs
UFUNCS = ("loss_value", "loss_deriv", "loss_curvature", "loss_conjugate", "loss_dual_clip",
          "smooth_value", "smooth_deriv", "smooth_curvature")

#: a user's first script; prints what it left imported and what its cluster serves
FIRST_FIT = r"""
import json, sys, urllib.request
from asip.algorithms import AsipClassifier
from sklearn.datasets import make_classification

if __name__ == "__main__":
    X, y = make_classification(n_samples=1000, n_features=20, random_state=0)
    est = AsipClassifier().fit(X, y)
    from asip.algorithms._fitting import get_client
    client = get_client()
    port = client.scheduler_info()["services"].get("dashboard")
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/asip", timeout=30).status
    except Exception as exc:
        page = repr(exc)
    import asip.algorithms._losses as L
    print("RESULT " + json.dumps({"stopped_by": est.stopped_by_, "bokeh": "bokeh" in sys.modules,
                                  "page": page, "ufuncs": sorted(set(UFUNCS) & set(vars(L)))}))
"""


def _run_script(script: str, interactive: bool = False, **env: str) -> dict:
    """Run ``script`` in a fresh interpreter with ``env`` added (``interactive``: as
    ``python -i``, the prompt then reading an empty stdin); what it printed as RESULT."""
    cmd = [sys.executable, *(["-i"] if interactive else []), "-c", script]
    out = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                         timeout=200, env={**os.environ, **env}, cwd=os.path.dirname(__file__))
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    raise AssertionError(f"the script failed (rc {out.returncode}):\n{out.stderr[-3000:]}")


def _first_fit(**env: str) -> dict:
    """Run `FIRST_FIT` in a fresh interpreter with ``env`` added; what it printed."""
    return _run_script(f"UFUNCS = {UFUNCS!r}\n{FIRST_FIT}", **env)


def test_the_embedded_cluster_s_dashboard_follows_the_setting_and_the_fit_certifies():
    """By default the first fit imports no Bokeh and serves no /asip page (the scheduler's
    plain HTTP server answers 404), builds none of the loss ufuncs (cached kernels instead),
    and still certifies; ``asip.driver.embedded-dashboard: true`` gives the estimators'
    cluster the page."""
    res = _first_fit()
    assert res["stopped_by"] == "tol"
    assert res["bokeh"] is False
    assert "404" in str(res["page"])
    assert res["ufuncs"] == []
    res = _first_fit(DASK_ASIP__DRIVER__EMBEDDED_DASHBOARD="true")
    assert res["stopped_by"] == "tol"
    assert res["bokeh"] is True
    assert res["page"] == 200


#: after the import, wait for any numba warm-up thread; then count the kernels numba loads
#: from its cache or compiles during a first default fit on 1,000 x 20 dense rows
WARM_FIT = r"""
import json, threading, warnings
from numba.core import caching, event
import asip.algorithms
from asip.algorithms import AsipClassifier
from sklearn.datasets import make_classification

if __name__ == "__main__":
    X, y = make_classification(n_samples=1000, n_features=20, random_state=0)
    for t in threading.enumerate():
        if t.name == "asip-numba-warmup":
            t.join()
    counts = {"loads": 0, "compiles": 0}
    load = caching.Cache.load_overload

    def counted(self, *args, **kwargs):
        counts["loads"] += 1
        return load(self, *args, **kwargs)

    caching.Cache.load_overload = counted

    class Compiles(event.Listener):
        def on_start(self, ev):
            counts["compiles"] += 1

        def on_end(self, ev):
            pass

    event.register("numba:compile", Compiles())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = AsipClassifier().fit(X, y)
    print("RESULT " + json.dumps({**counts, "stopped_by": est.stopped_by_}))
"""


def test_an_interactive_first_fit_after_the_import_s_warm_up_loads_no_kernel():
    """In an interactive session importing asip.algorithms starts a thread that sets numba up
    and loads a default dense fit's kernels: once it is done, the first default fit loads
    (and compiles) none. A script starts no thread (``asip.driver.numba-warmup: auto``): its
    fit loads them itself."""
    res = _run_script(WARM_FIT, interactive=True)
    assert res == {"loads": 0, "compiles": 0, "stopped_by": "tol"}
    res = _run_script(WARM_FIT)
    assert res["loads"] >= 1 and res["stopped_by"] == "tol"


#: a notebook's cells in an IPython shell: the importing cell (with a later import in it),
#: then what the shell runs between cells
IPYTHON_CELLS = r"""
import json, threading
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
shell.run_cell("import asip.algorithms, threading\n"
               "in_cell = [t.name for t in threading.enumerate()]\n"
               "import sklearn.linear_model")
after = [t for t in threading.enumerate() if t.name == "asip-numba-warmup"]
for t in after:
    t.join()
from asip.algorithms import _kernels
print("RESULT " + json.dumps({"in_cell": "asip-numba-warmup" in shell.user_ns["in_cell"],
                              "after_cell": len(after),
                              "loaded": len(_kernels.loss_sum.signatures) > 0}))
"""


def test_in_ipython_the_warm_up_starts_once_the_importing_cell_has_finished():
    """In IPython (a Jupyter kernel's shell) the warm-up thread starts after the cell that
    imported asip.algorithms, not beside the rest of that cell (whose later imports then
    shared the GIL with it); it starts then, and loads the default fit's kernels."""
    pytest.importorskip("IPython")
    res = _run_script(IPYTHON_CELLS)
    assert res == {"in_cell": False, "after_cell": 1, "loaded": True}


def test_import_builds_no_loss_ufunc():
    """Importing asip.algorithms builds none of `_losses`' ufuncs (each an LLVM build); the
    first access builds one with its name and one float64 loop, the values the kernels'."""
    probe = (f"import asip.algorithms._losses as L; print([n for n in {UFUNCS!r} "
             "if n in vars(L)])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"

    from asip.algorithms import _losses as L

    m, y = np.array([-2.0, 0.3, 4.0]), np.array([1.0, -1.0, 1.0])
    assert L.loss_value.__name__ == "loss_value" and L.loss_value.types == ["ldd->d"]
    assert np.array_equal(L.loss_value(L.LOGISTIC, m, y),
                          [L.value(L.LOGISTIC, a, b) for a, b in zip(m, y)])
    assert L.smooth_deriv(L.HINGE, m, y, 0.5).dtype == np.float64
    with pytest.raises(AttributeError):
        L.no_such_ufunc  # noqa: B018


def test_connect_without_dashboard_keeps_off_port_8787():
    """``connect(dashboard=False)`` with 8787 taken: no Bokeh dashboard, and no warning that
    the port is in use (distributed's default port is not tried: a free one is used)."""
    blocker = socket.socket()
    try:
        blocker.bind(("", 8787))
        blocker.listen()
    except OSError:  # something already holds it: the test's condition holds too
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "Port 8787 is already in use" is a UserWarning
            with asip.connect(n_workers=1, processes=False, dashboard=False,
                              silence_logs=40) as client:
                port = client.scheduler_info()["services"].get("dashboard")
                assert port not in (None, 8787)
                with pytest.raises(urllib.error.HTTPError, match="404"):  # no Bokeh app
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=30)
                health = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30)
                assert health.read() == b"ok"
    finally:
        blocker.close()


@pytest.mark.parametrize("loss", [0, 1, 2])
def test_the_kernels_replacing_the_ufuncs_give_their_values(loss):
    """`rows` of each kind and `value_rows` are the ufuncs of their names bit for bit, on
    float64 input and on float32 or strided input, which the ufuncs cast."""
    from asip.algorithms import _losses as L

    rng = np.random.default_rng(loss)
    M, y, mu = 3 * rng.normal(size=(500, 3)), np.sign(rng.normal(size=500)), 0.3
    assert np.array_equal(L.value_rows(loss, M, y), L.loss_value(loss, M, y[:, None]))
    kinds = {L.ROW_VALUE: L.loss_value, L.ROW_DERIV: L.loss_deriv,
             L.ROW_CURVATURE: L.loss_curvature, L.ROW_DUAL_CLIP: L.loss_dual_clip}
    smooth = {L.ROW_SMOOTH_VALUE: L.smooth_value, L.ROW_SMOOTH_DERIV: L.smooth_deriv}
    for m in (M[:, 0], M[:, 1].astype(np.float32), M[::2, 2]):
        yy = y[: len(m)]
        for kind, ufunc in kinds.items():
            assert np.array_equal(L.rows(kind, loss, m, yy), ufunc(loss, m, yy)), kind
        for kind, ufunc in smooth.items():
            assert np.array_equal(L.rows(kind, loss, m, yy, mu), ufunc(loss, m, yy, mu)), kind
