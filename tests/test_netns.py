"""Beyond one machine: ASIP-SGD across network namespaces, and one worker's link cut mid-run.

The scheduler and three workers are separate ``dask scheduler`` / ``dask worker``
processes (one thread and a nanny each), each in its own network namespace on a
bridge (see ``netns_topology.py``; addresses in 10.231.77.0/24, nothing else is
contacted). The worker links get ``tc netem`` delay and loss; on a kernel without
netem they get the loss only (an htb/cls_bpf fallback), with a warning. The test
driver (this process, the dask Client) sits in the root namespace.

ASIP-SGD (``AsipClassifier(solver="asip-sgd")``) runs one operator per
partition, one per worker; at ``CUT_AT`` s into the stage worker w2's link goes
down. Its worker is alive but unreachable: its heartbeat to the scheduler stops, the
stage's silence detector (``asip.stage.peer-silence-timeout``) must notice, and the stage must go on with
the two survivors and finish on time with a usable model. Two variants (see
`SCHEDULER_CONNECT`) cover both ways the runtime ends up handling the cut worker.

Skipped (with the reason) where namespaces cannot be made: not root, no
iproute2, ``ip netns add`` refused, no ``dask`` CLI, or the /24 already in use.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client

import asip
from netns_topology import SubnetInUse, Topology, probe_netns

# the cut is timed against heartbeats and silence timeouts of a few seconds
pytestmark = pytest.mark.exclusive

MAX_TIME = 8.0  # the stage's budget (s)
CUT_AT = 2.0  # stage time at which w2's link goes down (s)
SILENCE = 2.0  # asip.stage.peer-silence-timeout for this test (default 5 s)
DELAY_MS, LOSS_PCT = 2, 0.5  # netem on each direction of every worker link
N_ROWS, N_FEATURES, ALPHA = 30_000, 20, 1e-3
SCHEDULER_PORT = 8786
WORKER_PORT, NANNY_PORT = 8790, 8791  # each worker has its own IP, so fixed ports are fine
CHILD_ENV = {
    # workers fail fast on unreachable peers (distributed's default connect timeout is 30 s)
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s",
    "PYTHONUNBUFFERED": "1",
}
# The scheduler's connect timeout decides which of the runtime's two paths the cut takes.
# When w2's heartbeat is late, asip's directory asks w2's nanny whether the process is
# hung or busy; the scheduler's connect to the unreachable nanny fails after this timeout
# (or asip.stage.control-timeout, 30 s), and a nanny that cannot be reached gets its
# worker removed at once:
#   "dropped":     2 s -> removed ~2 s after the cut detection, inside the budget; Dask
#                  recomputes the lost partition on a survivor and asip restarts the
#                  operator there (incarnation 1).
#   "unreachable": distributed's default (30 s) -> no verdict and still registered at the
#                  stop; the silent operator is waited for peer-silence-timeout after the
#                  stop, then cancelled, and returns None (in res.missing, as lost).
SCHEDULER_CONNECT = {"dropped": "2s", "unreachable": "30s"}
# The scheduler's TCP timeout (distributed's default 30 s) is how long it keeps a silent
# worker's stream: in "unreachable" the fit's trace evaluation needs the victim's block, which
# Dask recomputes elsewhere only once that stream times out and the worker is removed, so all of
# it is test time ("finish" 26.7 s -> 11.7 s with 15 s). 15 s still ends it well after the stop
# (cut at 2 s + 15 s > the 8 s budget + silence wait + teardown), so the path tested is the same.
SCHEDULER_TCP_TIMEOUT = "15s"
DASK_CLI = [sys.executable, "-m", "dask"]  # the `dask` CLI of this very interpreter
OP_KEY = re.compile(r"^asip-([0-9a-f]+)-op(\d+)-a(\d+)$")


# ---------------------------------------------------------------------- the cluster
@functools.lru_cache(maxsize=None)
def _dask_cli_problem() -> str | None:
    try:
        for cmd in ("scheduler", "worker"):
            out = subprocess.run([*DASK_CLI, cmd, "--help"], capture_output=True, timeout=60)
            if out.returncode != 0:
                return f"`dask {cmd}` is not available: {out.stderr.decode()[-300:]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the dask CLI does not run: {exc!r}"
    return None


def _tail(path: Path, n: int = 25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def _wait_for_port(host: str, port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the scheduler exited ({proc.returncode}):\n{_tail(log)}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the scheduler did not listen within {timeout:g} s:\n{_tail(log)}")


class NetnsCluster:
    """The running topology, the driver's Client, and the processes' logs."""

    def __init__(self, topo: Topology, client: Client, logs: dict[str, Path], variant: str):
        self.variant = variant
        self.topo = topo
        self.client = client
        self.logs = logs

    def logs_tail(self) -> str:
        return "\n".join(f"--- {name} ---\n{_tail(path)}" for name, path in self.logs.items())


@pytest.fixture
def netns_cluster(request, tmp_path):
    """The scheduler and 3 nanny workers in their namespaces; ``request.param`` is a key of
    `SCHEDULER_CONNECT`."""
    variant = getattr(request, "param", "unreachable")
    reason = probe_netns()
    if reason:
        pytest.skip(f"network namespaces unavailable: {reason}")
    reason = _dask_cli_problem()
    if reason:
        pytest.skip(reason)
    topo = Topology(n_workers=3)
    try:
        try:
            topo.create()
        except SubnetInUse as exc:
            pytest.skip(f"cannot use the test's private subnet here: {exc}")
        missing = topo.shape(DELAY_MS, LOSS_PCT)
        if missing:
            warnings.warn(missing, stacklevel=1)
        env = {**os.environ, **CHILD_ENV}
        sched = topo.scheduler
        address = f"tcp://{sched.ip}:{SCHEDULER_PORT}"
        logs = {"scheduler": tmp_path / "scheduler.log"}
        proc = topo.spawn(sched, [*DASK_CLI, "scheduler", "--host", sched.ip,
                                  "--port", str(SCHEDULER_PORT), "--no-dashboard",
                                  "--idle-timeout", "600"],  # a leaked one ends by itself
                          logs["scheduler"], {**env, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT":
                                              SCHEDULER_CONNECT[variant],
                                              "DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP":
                                              SCHEDULER_TCP_TIMEOUT})
        _wait_for_port(sched.ip, SCHEDULER_PORT, proc, logs["scheduler"], timeout=40)
        for host in topo.workers:
            logs[host.role] = tmp_path / f"{host.role}.log"
            # A nanny per worker, as deployed in practice and as asip's hung-worker
            # handling expects (it asks the nanny to restart a silent worker; here that
            # nanny is unreachable too, which is part of what is tested).
            topo.spawn(host, [*DASK_CLI, "worker", address, "--name", host.role,
                              # listens on, and advertises, its namespace address only
                              "--host", host.ip, "--worker-port", str(WORKER_PORT),
                              "--nanny-port", str(NANNY_PORT),
                              "--nthreads", "1", "--nworkers", "1", "--nanny", "--no-dashboard",
                              "--memory-limit", "2GiB",
                              "--death-timeout", "60"],  # an orphan gives up by itself
                       logs[host.role], env)
        with dask.config.set({"distributed.comm.timeouts.connect": "3s"}), \
                Client(address, timeout=30) as client:
            cluster = NetnsCluster(topo, client, logs, variant)
            deadline = time.monotonic() + 60
            while len(client.scheduler_info(n_workers=-1)["workers"]) < 3:
                dead = [p.args for p in topo.procs if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    pytest.fail(f"the workers did not join ({len(dead)} processes exited):\n"
                                f"{cluster.logs_tail()}")
                time.sleep(0.2)
            yield cluster
    finally:
        topo.cleanup()


# ---------------------------------------------------------------------- data and the run
def make_data() -> tuple[da.Array, da.Array]:
    """A synthetic logistic problem; its 3 row chunks are computed where Dask puts them."""
    rs = da.random.RandomState(42)
    rows = N_ROWS // 3
    X = rs.normal(size=(N_ROWS, N_FEATURES), chunks=(rows, N_FEATURES))
    noise = rs.logistic(size=N_ROWS, chunks=(rows,))
    y = (X @ np.linspace(-1.0, 1.0, N_FEATURES) + noise > 0).astype(np.int64)
    return X, y


def objective(w: np.ndarray, X: np.ndarray, y01: np.ndarray) -> float:
    """The classifier's objective: mean logistic loss (labels as +-1) + alpha/2 ||w||^2."""
    margins = np.where(y01 == 1, 1.0, -1.0) * (X @ w)
    return float(np.logaddexp(0.0, -margins).mean() + ALPHA / 2 * w @ w)


def run_asip_sgd(X: da.Array, y: da.Array) -> tuple[np.ndarray, asip.StageResult]:
    """Fit ASIP-SGD on the default client; return its coefficients and the stage's result."""
    from sklearn.exceptions import ConvergenceWarning

    from asip.algorithms import AsipClassifier

    clf = AsipClassifier(solver="asip-sgd", alpha=ALPHA, max_time=MAX_TIME, random_state=0,
                         fit_intercept=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert list(clf.classes_) == [0, 1]
    print("fit timings", {k: round(v, 2) for k, v in clf.fit_timings_.items()})
    return clf.coef_.ravel(), clf.stage_result_


# ---------------------------------------------------------------------- the cut
class LinkCutter(threading.Thread):
    """Cuts ``victim``'s link ``at`` s after the stage's gang started; notes what it cut."""

    def __init__(self, cluster: NetnsCluster, victim, at: float):
        super().__init__(daemon=True, name="link-cutter")
        self.cluster, self.victim, self.at = cluster, victim, at
        self.cut_time: float | None = None  # stage time of the cut
        self.partitions: list[int] = []  # operators on the victim when cut
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _operators(self) -> dict[str, list[tuple[str, int]]]:
        """{worker address: [(run id, partition)]} of the asip operator tasks now running."""
        out: dict[str, list[tuple[str, int]]] = {}
        for worker, keys in self.cluster.client.processing().items():
            for key in keys:
                if (m := OP_KEY.match(str(key))):
                    out.setdefault(worker, []).append((m.group(1), int(m.group(2))))
        return out

    def _run(self) -> None:
        client = self.cluster.client
        deadline = time.monotonic() + 150  # the fit's input checks on cold workers come first
        while sum(map(len, (ops := self._operators()).values())) < 3:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stage's 3 operators never ran together: {ops}")
            time.sleep(0.05)
        run_id = next(iter(ops.values()))[0][0]
        seen_all = time.time()

        def go_time(dask_scheduler, name):
            plugin = dask_scheduler.plugins.get(name)
            return getattr(plugin, "go_time", None)

        go = None  # the gang's start on the scheduler's clock (the same host clock)
        while go is None:  # setup (numba's first compile) can take seconds under load
            if time.time() > seen_all + 60:
                raise TimeoutError("the gang did not start within 60 s of its operators running")
            go = client.run_on_scheduler(go_time, name=f"asip-directory-{run_id}")
            time.sleep(0.05)
        time.sleep(max(0.0, go + self.at - time.time()))
        ops = self._operators()
        self.partitions = [p for w, items in ops.items() if f"//{self.victim.ip}:" in w
                           for _, p in items]
        self.cluster.topo.cut(self.victim)
        self.cut_time = time.time() - go


# ---------------------------------------------------------------------- the test
@pytest.mark.timeout(300)  # ~60 s a variant on a quiet machine; cold workers under load take longer
@pytest.mark.parametrize("netns_cluster", list(SCHEDULER_CONNECT), indirect=True)
def test_asip_sgd_survives_a_cut_link_between_namespaces(netns_cluster, caplog):
    cluster = netns_cluster
    client = cluster.client
    victim = cluster.topo.workers[2]
    workers = client.scheduler_info()["workers"]
    assert sorted(w.split("//")[1].split(":")[0] for w in workers) == [
        h.ip for h in cluster.topo.workers], "workers must advertise their namespace addresses"

    X, y = make_data()
    Xn, yn = dask.compute(X, y, scheduler="sync")  # the same numbers, for evaluation here
    caplog.set_level(logging.WARNING, logger="asip")
    cutter = LinkCutter(cluster, victim, CUT_AT)
    cutter.start()
    t0 = time.monotonic()
    with dask.config.set({"asip.stage.peer-silence-timeout": f"{SILENCE}s"}):
        coef, res = run_asip_sgd(X, y)
    fit_s = time.monotonic() - t0
    cutter.join(timeout=10)
    assert cutter.error is None, f"the cut failed: {cutter.error!r}"
    assert cutter.cut_time is not None, "the link was never cut"
    cut, k = cutter.cut_time, cutter.partitions
    assert len(k) == 1, f"expected one operator on {victim.ip}, found partitions {k}"
    k = k[0]
    survivors = [i for i in range(3) if i != k]
    summary = (f"fit {fit_s:.1f} s, cut partition {k} at {cut:.2f} s, stopped_by="
               f"{res.stopped_by!r}, elapsed {res.elapsed:.2f} s, steps {res.steps}, "
               f"restarts {res.restarts}, results present "
               f"{[r is not None for r in res.results]}, links: {cluster.topo.shaped!r}, "
               f"{cluster.topo.dropped()} packets dropped by the shaping, timings "
               f"{ {name: round(v, 2) for name, v in res.timings.items()} }")
    print(summary)
    context = f"{summary}\n{cluster.logs_tail()}"

    # the stage continued and finished on its own budget
    assert res.stopped_by == "max_time", context
    assert abs(cut - CUT_AT) < 1.0, context
    assert res.elapsed < MAX_TIME + 5.0, context

    # the cut was real: the victim's operator was not heard from after it
    victim_reports = [e.time for e in res.trace if e.partition == k and e.incarnation == 0]
    assert victim_reports and max(victim_reports) < cut + 0.5, context
    # ... and the stage noticed the silence (not distributed's minutes-long worker-ttl)
    silent = [r.getMessage() for r in caplog.records
              if "silent" in r.getMessage() and victim.ip in r.getMessage()]
    assert silent, f"no peer-silence warning for {victim.ip}: " + context

    # the survivors kept stepping after the cut, up to the end of the budget
    for i in survivors:
        mine = [e for e in res.trace if e.partition == i]
        before = [e.metrics["t"] for e in mine if e.time <= cut]
        assert before and mine, context
        assert max(e.time for e in mine) > MAX_TIME - 1.0, (i, context)
        assert len([e for e in mine if e.time > cut + SILENCE]) >= 10, (i, context)
        result = res.results[i]
        assert result is not None and np.isfinite(result["w"]).all(), (i, context)
        assert result["t"] > max(before), (i, context)  # mini-batch steps after the cut

    restarted = [r for r in res.restarts if r.partition == k]
    if cluster.variant == "dropped":
        # the scheduler gave up on the unreachable worker inside the budget: Dask recomputed
        # the partition on a survivor and asip restarted its operator there, once
        assert [(r.incarnation, "silent" in r.cause) for r in restarted] == [(1, True)], context
        assert cut + SILENCE < restarted[0].time < MAX_TIME, context
        assert res.results[k] is not None and np.isfinite(res.results[k]["w"]).all(), context
        assert [r.partition for r in res.restarts] == [k], context
    else:
        # the worker was still registered, unreachable, at the stop: its silent operator
        # was cancelled instead of waited for, and returned nothing
        assert res.results[k] is None and not res.restarts, context

    # a usable model: finite, and clearly better than the zero vector
    assert np.isfinite(coef).all(), context
    f0, fw = objective(np.zeros(N_FEATURES), Xn, yn), objective(coef, Xn, yn)
    accuracy = float(((Xn @ coef > 0).astype(int) == yn).mean())
    print(f"objective {fw:.4f} (zero vector {f0:.4f}), training accuracy {accuracy:.3f}")
    assert fw < 0.8 * f0, context
    assert accuracy > 0.75, context
