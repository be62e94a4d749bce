"""A KillWorker at 30% of the run at the shipped defaults (the respawn held to the stage's
end, ``asip.stage.respawn-hold: 10s``) against the respawn at once (``0``, the default
before) and against the hold with the stage's end waiting for the new process
(``asip.stage.respawn-wait``, opt-in), arms alternating in one cluster.

Per pair, each arm (ABC CBA order): a fault-free fit on a cluster that is up and warm
(every worker registered, asip imported, one fit done there), a fit with
``KillWorker(1)`` at 0.3 x the median of the last 4 fault-free fits (the load drifts),
then at once, without waiting for any worker, the next fault-free fit, as a user's script
would run it. Printed: time to 1e-6 (the trace) and ``fit()`` wall time (what the user
waits for, a wait for the respawn included) of each, the workers the next fit found, the
kill / fault-free ratio per arm (time to 1e-6), and the paired ratios of each arm to
``before``. A kill that came after 1e-6 is left out of the medians. Problems and solvers
as `cocoa_newton.py`'s ``kill`` section (dense 500k x 100 or sparse 400k x 20k logistic,
alpha 1e-6, 2 workers).

Run:  python benchmarks/kill_defaults.py --problems dense --solvers auto --pairs 6
"""

from __future__ import annotations

import math
import os
import time
import warnings

import numpy as np

from asip.algorithms import AsipClassifier
from cocoa_newton import KILL_SOLVERS, _keep_going, _time_to
from kill_respawn import _phases, cli, setup

ARMS = {"before": {"asip.stage.respawn-hold": 0, "asip.stage.respawn-wait": 0},
        "defaults": {},
        "hold+wait": {"asip.stage.respawn-wait": "20s"}}


def _ready(client, n_workers: int) -> None:
    """Every worker registered and asip.algorithms imported there."""
    client.wait_for_workers(n_workers, timeout=120)
    client.run(lambda: __import__("asip.algorithms"))


def run(problem: str, solver: str, pairs: int, budget: float = 20.0) -> str:
    import dask
    from asip.faults import KillWorker

    client, n_workers, ds, alpha, ref = setup(problem)

    def fit(arm, faults=()):
        with dask.config.set(ARMS[arm]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = AsipClassifier(alpha=alpha, fit_intercept=False, tol=1e-7, max_time=budget,
                                 random_state=0, faults=faults, callback=_keep_going,
                                 **KILL_SOLVERS[solver])
            t0 = time.perf_counter()
            est.fit(ds.X, ds.y)
        return est, _time_to(est.trace_, ref, 1e-6), time.perf_counter() - t0

    _ready(client, n_workers)
    fit("before")  # warm-up
    recent = [fit(arm)[1] for arm in ARMS for _ in range(2)]
    keys = ("free", "free_wall", "kill", "kill_wall", "next", "next_wall")
    got = {arm: {k: [] for k in keys} for arm in ARMS}
    for i in range(pairs):
        at = 0.3 * float(np.median(recent[-4:]))
        for arm in (list(ARMS) if i % 2 == 0 else list(ARMS)[::-1]):  # ABC CBA ...
            _ready(client, n_workers)
            fit(arm)  # a new process's first fit (its kernels, its fresh memory): not measured
            _, t0, wall0 = fit(arm)
            est, t6, wall = fit(arm, (KillWorker(1, at=at),))
            found = len(client.nthreads())  # what the next fit finds (no wait)
            _, tn, walln = fit(arm)
            lost = next((e.time for e in est.stage_result_.timeline if e.kind == "lost"), None)
            fired = len(est.restarts_) >= 1 and lost is not None and lost <= t6
            for k, v in zip(keys, (t0, wall0, t6 if fired else math.nan, wall, tn, walln)):
                got[arm][k].append(v)
            recent.append(t0)
            print(f"  {problem} {est.solver_} pair {i} {arm:>8}: fault-free {t0:.2f} s, fit() "
                  f"{wall0:.2f} s; kill at {at:.2f} s -> to 1e-6 {t6:.2f} s, fit() {wall:.2f} s "
                  f"(respawn wait {est.stage_result_.timings.get('respawn_wait', 0.0):.2f} s)"
                  f"{'' if fired else ' (no kill before 1e-6: left out)'}; next fit found "
                  f"{found} workers: to 1e-6 {tn:.2f} s, fit() {walln:.2f} s; {_phases(est)}; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    lines = []
    for arm, g in got.items():
        med = {k: float(np.nanmedian(v)) for k, v in g.items()}
        lines.append(f"{arm}: fault-free {med['free']:.2f} s, fit() {med['free_wall']:.2f} s, "
                     f"kill {med['kill']:.2f} s ({med['kill'] / med['free']:.2f}x), kill fit() "
                     f"{med['kill_wall']:.2f} s, "
                     f"next {med['next']:.2f} s, next fit() {med['next_wall']:.2f} s")
    for arm in list(ARMS)[1:]:
        for k in keys:
            ratios = [b / a for a, b in zip(got["before"][k], got[arm][k])]
            lines.append(f"paired {k} {arm}/before median {np.nanmedian(ratios):.2f} "
                         f"({', '.join(f'{r:.2f}' for r in ratios)})")
    load = os.getloadavg()[0]
    return f"{problem} {solver}: " + "; ".join(lines) + f"; n={pairs}; load {load:.1f}"


if __name__ == "__main__":
    cli(run, __doc__, ["auto"])
