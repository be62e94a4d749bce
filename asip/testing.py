"""A kit for fault-injection tests of your own operators and fits (a pytest plugin).

Installing asip registers this module with pytest (the ``pytest11`` entry point), so
in any project the fixtures are there without a ``conftest.py``:

``asip_cluster``
    A session-wide ``LocalCluster`` with worker processes and nannies (a killed worker
    comes back); for the session ``distributed.deploy.lost-worker-timeout`` is raised,
    so repeated kills never shrink it, and ``asip.gang.start-timeout`` too, for fresh
    workers on a busy CI machine (`TEST_CONFIG`). Size it with the ini options
    ``asip_workers`` (default 2) and ``asip_threads_per_worker`` (default 1).
``asip_client``
    A `distributed.Client` on it that first waits until every worker is back.

and the helpers `check_stage` and `check_fit` run a stage or a fit under
`asip.faults` and assert what must hold: it completed, every partition returned a
result, the kills caused restarts, and (for fits) the objective stayed within a
factor of a fault-free run's. They return what they ran, for further checks.

>>> def test_my_operator_survives_a_kill(asip_client):  # doctest: +SKIP
...     res = check_stage(MyOp(), X, client=asip_client, max_time=4,
...                       faults=[KillWorker(partition=1, at=1.0)])
...     assert res.results[1]["rows"] == 100

pytest loads this module in every run of a project that has asip installed (which
imports asip and distributed, as a test of dask code does anyway); the cluster
starts only when a test asks for ``asip_cluster`` or ``asip_client``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from asip import StageResult

__all__ = ["FitCheck", "asip_client", "asip_cluster", "check_fit", "check_stage"]

# For the session of `asip_cluster`: distributed's 15 s lost-worker-timeout closes a nanny
# whose worker restarts slowly, and a fresh worker's first stage (imports, numba kernels
# loaded or compiled) can outlast asip's 30 s gang start timeout on a busy CI machine.
TEST_CONFIG = {"distributed.deploy.lost-worker-timeout": "120s", "asip.gang.start-timeout": "120s"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("asip_workers", "worker processes in the asip_cluster fixture", default="2")
    parser.addini("asip_threads_per_worker", "threads per worker in asip_cluster", default="1")


def _ini_int(config: pytest.Config, name: str) -> int:
    value = config.getini(name)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"ini option {name} must be a positive integer, got {value!r}")
    if number < 1:
        raise pytest.UsageError(f"ini option {name} must be a positive integer, got {value!r}")
    return number


@pytest.fixture(scope="session")
def asip_cluster(pytestconfig: pytest.Config):
    """A LocalCluster of worker processes with nannies, dashboard off, logs quiet."""
    import dask
    from distributed import LocalCluster

    n_workers = _ini_int(pytestconfig, "asip_workers")
    threads = _ini_int(pytestconfig, "asip_threads_per_worker")
    with dask.config.set(TEST_CONFIG):
        with LocalCluster(n_workers=n_workers, threads_per_worker=threads, processes=True,
                          dashboard_address=None, silence_logs=40) as cluster:
            yield cluster


@pytest.fixture
def asip_client(asip_cluster):
    """A client on `asip_cluster`, once every worker is back (after earlier kills)."""
    from distributed import Client

    with Client(asip_cluster) as client:
        client.wait_for_workers(len(asip_cluster.workers), timeout=60)
        yield client


def _kills(faults: Any) -> list:
    from asip.faults import HangWorker, KillOperator, KillWorker

    faults = [faults] if not isinstance(faults, (list, tuple)) else list(faults)
    return [f for f in faults if isinstance(f, (KillOperator, KillWorker, HangWorker))]


def _check_restarts(restarts: list, faults: Any, min_restarts: int | None, what: str) -> None:
    kills = _kills(faults)
    wanted = len(kills) if min_restarts is None else min_restarts
    assert len(restarts) >= wanted, (
        f"{what}: {len(restarts)} restarts, expected at least {wanted} for the faults "
        f"{kills}; restarts: {restarts}")
    for fault in kills:
        assert any(r.partition == fault.partition and r.incarnation > fault.incarnation
                   for r in restarts), f"{what}: {fault!r} caused no restart of its partition"


def check_stage(operator: Any, data: Any, *, client: Any = None, faults: Any = (),
                min_restarts: int | None = None, **stage_kwargs: Any) -> StageResult:
    """Run ``asip.Stage(operator, data, faults=faults, ...)`` and assert that it survived.

    Asserts that it completed (no exception; not stopped by an error), that every
    partition returned a result, and that each kill fault (`KillOperator`,
    `KillWorker`, `HangWorker`) restarted its partition (``min_restarts`` overrides
    the count, e.g. 2 for a `KillWorker` whose worker hosted two operators).
    Returns the `asip.StageResult`.
    """
    import asip

    res = asip.Stage(operator, data, client=client, faults=faults, **stage_kwargs).run()
    assert not res.stopped_by.startswith("error"), f"the stage stopped by {res.stopped_by}"
    missing = [i for i, r in enumerate(res.results) if r is None]
    assert not missing, (f"partitions {missing} returned no result (stopped by "
                         f"{res.stopped_by}; restarts {res.restarts})")
    _check_restarts(res.restarts, faults, min_restarts, "stage")
    return res


class FitCheck:
    """What `check_fit` ran: both fitted estimators and their final objectives."""

    def __init__(self, clean: Any, faulty: Any):
        self.clean = clean
        self.faulty = faulty
        self.clean_objective = float(clean.trace_[-1, 1])
        self.faulty_objective = float(faulty.trace_[-1, 1])

    def __repr__(self) -> str:
        return (f"FitCheck(objective without faults {self.clean_objective:.6g}, with "
                f"{self.faulty_objective:.6g}, restarts {len(self.faulty.restarts_)})")


def check_fit(estimator: Any, X: Any, y: Any, *, faults: Any, factor: float = 2.0,
              f_star: float | None = None, min_restarts: int | None = None) -> FitCheck:
    """Fit a clone of ``estimator`` without faults and one with ``faults``; assert the
    faulty fit survived and converged about as well.

    Asserts that the faulty fit completed (no error, every partition returned a
    result), that each kill restarted its partition, and that its final objective
    is within ``factor`` of the fault-free one: ``f <= factor * f_clean``, or with
    the optimum ``f_star`` (e.g. `asip.algorithms.reference_optimum`) the relative
    suboptimality ``(f - f*) <= factor * (f_clean - f*) + 1e-9 |f*|``. The fits use
    the default client (see the estimator's docs); returns a `FitCheck`.
    """
    from sklearn.base import clone

    if not isinstance(factor, (int, float)) or factor < 1:
        raise ValueError(f"factor must be a number >= 1, got {factor!r}")
    if not _as_list(faults):
        raise ValueError("check_fit needs faults: pass asip.faults objects")
    clean = clone(estimator).set_params(faults=())
    clean.fit(X, y)
    faulty = clone(estimator).set_params(faults=tuple(_as_list(faults)))
    faulty.fit(X, y)
    result = FitCheck(clean, faulty)
    stage = faulty.stage_result_
    if stage is not None:
        assert not stage.stopped_by.startswith("error"), f"the fit stopped by {stage.stopped_by}"
        missing = [i for i, r in enumerate(stage.results) if r is None]
        assert not missing, f"partitions {missing} returned no result: {result}"
    _check_restarts(faulty.restarts_, faults, min_restarts, "fit")
    f, f0 = result.faulty_objective, result.clean_objective
    if f_star is None:
        assert f <= factor * f0, f"{result}: objective with faults is over {factor}x the clean one"
    else:
        tol = 1e-9 * abs(f_star)
        assert f - f_star <= factor * (f0 - f_star) + tol, (
            f"{result}: suboptimality with faults {(f - f_star) / abs(f_star):.3g} is over "
            f"{factor}x the clean one's {(f0 - f_star) / abs(f_star):.3g}")
    return result


def _as_list(faults: Any) -> list:
    return [faults] if not isinstance(faults, (list, tuple)) else list(faults)
