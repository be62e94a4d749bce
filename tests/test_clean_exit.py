"""A script that fits and exits says nothing on stderr: no ERROR, no traceback, no warning
that closing the cluster lost an operator's task; a fit leaves no operator task behind."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(240)

#: a user's script: ``N`` default fits, then the end of the script (``CONNECT``: inside
#: ``with asip.connect(processes=False)``, the user's own client, closed by the block)
FITS_THEN_EXIT = r"""
from asip.algorithms import AsipClassifier
from sklearn.datasets import make_classification

if __name__ == "__main__":
    X, y = make_classification(n_samples=1000, n_features=20, random_state=0)
    if CONNECT:
        import asip

        with asip.connect(processes=False, dashboard=False):
            for _ in range(N):
                AsipClassifier().fit(X, y)
    else:
        for _ in range(N):
            AsipClassifier().fit(X, y)
    print("FITTED")
"""

#: what distributed logs when closing a worker drops a task a client still wants
LOST = "lose already computed task"


def _stderr_of_fits(n: int, connect: bool = False, **env: str) -> str:
    """Run `FITS_THEN_EXIT` in a fresh interpreter (``env`` added); its stderr."""
    script = f"N = {n}\nCONNECT = {connect}\n{FITS_THEN_EXIT}"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=200, env={**os.environ, **env},
                         cwd=os.path.dirname(__file__))
    assert out.returncode == 0 and "FITTED" in out.stdout, out.stderr[-3000:]
    return out.stderr


@pytest.mark.parametrize("setting", ["threads", "processes", "connect"])
def test_a_script_that_fits_and_exits_writes_nothing_to_stderr(setting):
    """Two default fits, then exit: on the estimators' embedded cluster (workers as threads,
    the default, or as processes) and on the user's ``asip.connect()`` closed by ``with``.
    The exit used to warn that removing each worker lost a computed operator task (every
    run: the cluster closed while the client still wanted the last fit's tasks), and about
    1 run in 3 logged tornado ERROR tracebacks (the tasks' done callbacks, fired by the
    close, found the interpreter's executors shut down)."""
    env = {"DASK_ASIP__DRIVER__EMBEDDED_WORKERS": "processes"} if setting == "processes" else {}
    err = _stderr_of_fits(2, connect=setting == "connect", **env)
    assert LOST not in err, err[-3000:]
    assert "ERROR" not in err and "Traceback" not in err, err[-3000:]
    assert err.strip() == "", err[-3000:]


def _operator_tasks(dask_scheduler) -> list[str]:
    return sorted(k for k in dask_scheduler.tasks if isinstance(k, str) and "-op" in k)


def test_a_fit_returns_with_its_operator_tasks_released(client):
    """Once ``fit()`` returns, this client wants none of the stage's operator tasks and the
    scheduler holds none of them: released as the stage ends, not when the client hears
    of their end (after the fit took the operators' results from the directory's events)
    or at a later garbage collection."""
    from asip.algorithms import AsipClassifier

    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 20))
    y = (X[:, 0] + 0.5 * rng.standard_normal(1000) > 0).astype(int)
    for _ in range(4):
        AsipClassifier().fit(X, y)
        assert [k for k in client.refcount if "-op" in str(k)] == []
        assert client.run_on_scheduler(_operator_tasks) == []
