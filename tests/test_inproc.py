"""Workers in the driver's process (``asip.connect(processes=False)``): fits, memory, refused faults.

Real in-process LocalClusters (threads of this process, ``inproc://`` comms). A process
fault there would signal the driver itself, so the refusal is checked in a child process:
before the refusal existed, the child died of its own SIGKILL (or froze on SIGSTOP).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import dask
import numpy as np
import pytest
from distributed import default_client

import asip
from asip import _blas
from asip.algorithms import (AsipClassifier, Objective, get_loss, get_penalty, make_logistic,
                             reference_optimum, relative_suboptimality)
from asip.algorithms._fitting import get_client
from asip.faults import KillWorker, process_mark

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def inproc_client():
    """Two one-thread workers in this process."""
    with asip.connect(n_workers=2, processes=False, dashboard=False, silence_logs=40,
                      set_as_default=False) as c:
        yield c


def test_the_workers_run_in_the_driver_s_process_and_hold_views_of_the_caller_s_array(
        inproc_client):
    assert set(inproc_client.run(process_mark).values()) == {process_mark()}
    X = np.arange(4000.0).reshape(400, 10)
    blocks = [X[:200], X[200:]]
    res = asip.Stage(_Address(), blocks, client=inproc_client, max_steps=1).run()
    assert [r["address"] for r in res.results] == [b.ctypes.data for b in blocks]


class _Address(asip.Operator):
    """Reports where its partition's bytes lie: the caller's own, when nothing copied them."""

    def setup(self, ctx, partition):
        self.address = int(partition.ctypes.data)

    def step(self, ctx):
        return asip.STOP

    def result(self, ctx):
        return {"address": self.address}


def _blas_threads() -> list:
    from threadpoolctl import threadpool_info

    return sorted(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")


class _BlasThreads(asip.Operator):
    """Reports the BLAS pools' thread counts its process has while the stage runs (read in a
    step: steps start at the gang's go, once every worker's plugin is set up)."""

    def setup(self, ctx, partition):
        self.threads = None

    def step(self, ctx):  # no STOP: one operator's would end the stage before the other's step
        self.threads = _blas_threads()

    def result(self, ctx):
        return {"threads": self.threads}


@pytest.mark.parametrize("driver_env", ["clean", "after worker processes"])
def test_blas_runs_one_thread_an_operator_while_a_stage_runs_in_the_driver_s_process(
        inproc_client, monkeypatch, driver_env, own_blas_pools):
    """Two operators' BLAS pools of one thread per core each oversubscribed the cores
    (asip-cocoa's Gram products: 1.57x the wall time); the nanny's workers get one thread
    from their environment, in-process workers from the stage. A driver that started worker
    processes has the nanny's ``OMP_NUM_THREADS=1`` & co. in its own environment, while its
    pools keep the size they were loaded with: the pools are what counts."""
    if driver_env != "clean":
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            monkeypatch.setenv(name, "1")
    before = _blas_threads()
    if not before or max(before) == 1:
        pytest.skip("BLAS already runs one thread in this process")
    res = asip.Stage(_BlasThreads(), [np.zeros((4, 2)), np.zeros((4, 2))],
                     client=inproc_client, max_steps=1).run()
    assert [max(r["threads"]) for r in res.results] == [1, 1]
    _wait_blas_released()
    assert _blas_threads() == before  # the pools' own sizes back after the stage


def _wait_blas_released() -> None:
    """Until the stage's hold is released here: a stage returns once every operator
    returned, and its worker plugins (which release the hold) are removed after that."""
    deadline = time.monotonic() + 30
    while _blas._holds and time.monotonic() < deadline:
        time.sleep(0.01)
    with _blas._lock:  # the last release's resizing done
        assert _blas._holds == 0


def _user_size(before: list) -> int:
    """A BLAS pool size the user picks: more than one thread, not the pools' own size (BLAS
    takes more threads than cores)."""
    if not before or max(before) == 1:
        pytest.skip("BLAS already runs one thread in this process")
    return 2 if min(before) > 2 else 3


def _limit_blas(size: int, form: str):
    """The user's main thread limits BLAS (``threadpool_limits`` called, or entered)."""
    from threadpoolctl import threadpool_limits

    limit = threadpool_limits(limits=size, user_api="blas")
    if form == "entered":
        limit.__enter__()
    return limit


def _unlimit_blas(limit, form: str) -> None:
    if form == "entered":
        limit.__exit__(None, None, None)
    else:
        limit.restore_original_limits()


@pytest.mark.parametrize("form", ["entered", "called"])
def test_blas_runs_one_thread_an_operator_though_the_user_s_main_thread_limited_it_first(
        inproc_client, own_blas_pools, form):
    """threadpoolctl 3.8 lets only the thread that last set OpenBLAS's pool size set it
    again while it lives: the user's main thread had limited BLAS (scikit-learn does too),
    so the stage's hold from the workers' loop was dropped and the operators ran the user's
    pool size against each other. Afterwards the user's limit is as they set it."""
    before = _blas_threads()
    user = _user_size(before)
    limit = _limit_blas(user, form)
    try:
        assert set(_blas_threads()) == {user}
        res = asip.Stage(_BlasThreads(), [np.zeros((4, 2)), np.zeros((4, 2))],
                         client=inproc_client, max_steps=1).run()
        _wait_blas_released()
        assert [max(r["threads"]) for r in res.results] == [1, 1]
        assert set(_blas_threads()) == {user}
    finally:
        _unlimit_blas(limit, form)
    assert _blas_threads() == before


def test_the_user_s_main_thread_limits_blas_after_a_stage_ran_in_its_process(
        inproc_client, own_blas_pools):
    """The stage's hold had left the workers' loop thread in control of OpenBLAS's pool
    size: the user's limits after a fit were dropped while the cluster lived."""
    before = _blas_threads()
    user = _user_size(before)
    asip.Stage(_BlasThreads(), [np.zeros((4, 2)), np.zeros((4, 2))],
               client=inproc_client, max_steps=1).run()
    _wait_blas_released()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=user, user_api="blas"):
        assert set(_blas_threads()) == {user}
    assert _blas_threads() == before


def test_a_blas_limit_the_user_sets_while_a_stage_holds_the_pools_stands_after_the_stage(
        own_blas_pools):
    """A stage's release puts back only the pools still at its one thread: a user's limit
    taken meanwhile (a fit returns before its workers' plugins release the hold) stands."""
    before = _blas_threads()
    user = _user_size(before)
    held, release, released = threading.Event(), threading.Event(), threading.Event()

    def stage_thread():  # alive while the user sets their limit, as the workers' loop is
        _blas.hold()
        held.set()
        release.wait(30)
        _blas.release()
        released.set()

    thread = threading.Thread(target=stage_thread, daemon=True)
    thread.start()
    assert held.wait(30)
    assert max(_blas_threads()) == 1
    limit = _limit_blas(user, "called")
    try:
        release.set()
        assert released.wait(30)
        assert set(_blas_threads()) == {user}
    finally:
        _unlimit_blas(limit, "called")  # to the sizes it found: the hold's
        thread.join()


def test_in_process_workers_have_no_memory_limit_so_the_driver_s_arrays_never_pause_them(
        inproc_client):
    """distributed's monitor would read the whole process's RSS (the caller's arrays too)
    against each worker's share of the machine's memory, then pause or spill."""
    limits = inproc_client.run(lambda dask_worker: (
        dask_worker.memory_manager.memory_limit,
        "memory_monitor" in dask_worker.periodic_callbacks))
    assert set(limits.values()) == {(None, False)}


def test_a_limit_the_user_passes_is_kept():
    with asip.connect(n_workers=1, processes=False, dashboard=False, silence_logs=40,
                      memory_limit="4 GiB", set_as_default=False) as c:
        assert set(c.run(lambda dask_worker: dask_worker.memory_manager.memory_limit)
                   .values()) == {4 * 2**30}


@pytest.mark.parametrize("solver", ["lbfgs", "asip-svrg", "asip-cocoa"])
def test_a_fit_on_in_process_workers_reaches_the_optimum(inproc_client, solver):
    ds = make_logistic(4000, 20, random_state=0)
    alpha = 1e-3
    obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
    ref = reference_optimum(obj, ds.X, ds.y)
    with inproc_client.as_current():
        est = AsipClassifier(alpha=alpha, fit_intercept=False, solver=solver, tol=1e-8,
                             max_time=30, random_state=0).fit(ds.X, ds.y)
    rel = relative_suboptimality(obj.value(est.coef_.ravel(), ds.X, ds.y), ref.f_star)
    assert rel <= 1e-6, (solver, rel, est.stopped_by_)


_REFUSAL = textwrap.dedent("""
    import asip
    from asip.algorithms import AsipClassifier, make_logistic
    from asip.faults import {fault}

    if __name__ == "__main__":
        ds = make_logistic(2000, 10, random_state=0)
        with asip.connect(n_workers=2, processes=False, dashboard=False,
                          silence_logs=40) as client, client.as_current():
            try:
                AsipClassifier(solver="asip-svrg", max_time=3,
                               faults=[{fault}(0, at=0.0)]).fit(ds.X, ds.y)
            except ValueError as exc:
                print("refused:", exc, flush=True)
            est = AsipClassifier(solver="lbfgs").fit(ds.X, ds.y)  # the cluster still works
            print("then fitted:", est.stopped_by_, flush=True)
""")


@pytest.mark.parametrize("fault", ["KillWorker", "HangWorker"])
def test_a_process_fault_on_in_process_workers_is_refused_and_the_driver_lives(fault, tmp_path):
    script = tmp_path / "refusal.py"
    script.write_text(_REFUSAL.format(fault=fault))
    try:
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                             timeout=120)
    except subprocess.TimeoutExpired as exc:  # SIGSTOP: the driver froze
        pytest.fail(f"the driver hung: {exc}")
    assert out.returncode == 0, (out.returncode, out.stderr[-3000:])
    assert (f"refused: {fault} needs worker processes, but this cluster's workers"
            in out.stdout), out.stdout
    assert "run in the driver's process" in out.stdout and "asip.connect()" in out.stdout
    assert "then fitted: tol" in out.stdout, out.stdout


def test_the_estimators_embedded_cluster_runs_in_this_process_by_default():
    with pytest.raises(ValueError):  # the test needs the embedded cluster, not a default
        default_client()
    ds = make_logistic(2000, 10, random_state=0)
    est = AsipClassifier(solver="lbfgs").fit(ds.X, ds.y)
    client = get_client()
    try:
        assert est.stopped_by_ == "tol"
        assert set(client.run(process_mark).values()) == {process_mark()}
        assert est.stage_result_.timings["data"] < 1.0
    finally:
        client.close()


def test_a_fit_with_process_faults_gets_worker_processes_from_the_threads_default():
    """KillWorker on a worker of this process would signal the driver (refused): the
    estimators' embedded cluster for such a fit is one of worker processes."""
    with pytest.raises(ValueError):
        default_client()
    ds = make_logistic(4000, 10, random_state=0)
    est = AsipClassifier(solver="asip-svrg", max_time=20, tol=1e-6, random_state=0,
                         faults=[KillWorker(1, at=0.0)]).fit(ds.X, ds.y)
    client = get_client(process_faults=True)
    try:
        assert est.stopped_by_ == "tol", est.stopped_by_
        assert len(est.stage_result_.restarts) >= 1
        marks = set(client.run(process_mark).values())
        assert marks and process_mark() not in marks  # worker processes, none of them us
    finally:
        client.close()


def test_an_unknown_kind_of_embedded_workers_is_a_clear_error():
    with dask.config.set({"asip.driver.embedded-workers": "thread"}), \
            pytest.raises(ValueError, match="'processes' or 'threads', got 'thread'"):
        get_client()


def test_no_respawn_hold_goes_to_a_cluster_whose_workers_run_here(inproc_client):
    """No nanny respawns a worker of this process: a stage installs no respawn hold there
    (its install and removal were two round trips on every stage), whatever the setting."""
    seen = []

    def nanny_plugins(dask_scheduler=None):
        return sorted(dask_scheduler.nanny_plugins)

    def look(entries):
        if not seen:
            seen.append(inproc_client.run_on_scheduler(nanny_plugins))

    from runtime_operators import Gossip

    parts = [np.random.default_rng(i).random((200, 3)) for i in range(2)]
    with dask.config.set({"asip.stage.respawn-hold": "10s"}):
        asip.Stage(Gossip(), parts, client=inproc_client, max_time=0.5, on_trace=look).run()
    assert seen and not [name for name in seen[0] if "respawn-hold" in name], seen
