"""A KillWorker at 30% of the run, this tree against another one, arms alternating in one run.

The other tree (``--against PATH``, e.g. ``git worktree add --detach /tmp/main <commit>``
with ``asip/algorithms`` linked to ``../algorithms`` as in this repository) runs on a
cluster of its own, whose worker processes (a nanny's respawns too) put ``PATH`` first on
``sys.path`` (a worker preload) before they import asip: only the workers' code differs
(the driver is this tree). Per pair, each arm: a fault-free fit, then one with
``KillWorker(1)`` at 0.3 x the median of the last 4 fault-free fits (the load drifts).
Printed: time to 1e-6 and the rounds (``n_iter_``) of every fit, kill / fault-free per
arm, the time from the restarted operator's ``ready`` to 1e-6 (the part a solver's rejoin
decides; the reload before it swings 0.2-1.8 s at load 5-9), and the paired ratio of the
kill times (this tree / the other). A kill that came after 1e-6 is left out of the
medians. Problems and solvers as `cocoa_newton.py`'s ``kill`` section (dense 500k x 100
or sparse 400k x 20k logistic, alpha 1e-6, 2 workers).

Run:  python benchmarks/kill_ab.py --against /tmp/main --problems dense --solvers auto --pairs 6
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import warnings

import numpy as np

# asip is imported in the functions only: a worker process imports this module as its
# __main__ (multiprocessing's spawn) before the preload, and asip would come from here
PRELOAD = "import sys\nsys.path.insert(0, {path!r})\n"


def _cluster(against: str | None):
    """A 2-worker process cluster; with ``against``, its workers import asip from there."""
    from distributed import Client, LocalCluster

    kw = {}
    if against is not None:
        fd, script = tempfile.mkstemp(suffix="_asip_path.py")
        with os.fdopen(fd, "w") as fh:
            fh.write(PRELOAD.format(path=os.path.abspath(against)))
        kw["preload"] = [script]
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=40, **kw)
    client = Client(cluster, set_as_default=False)
    where = client.run(lambda: __import__("asip.algorithms._barrier").algorithms._barrier.__file__)
    print(f"cluster {'against ' + against if against else 'this tree'}: workers import "
          f"{sorted(set(where.values()))}", flush=True)
    return client


def run(clients: dict, problem: str, solver: str, pairs: int, budget: float = 20.0) -> str:
    from cocoa_newton import KILL_PROBLEMS, KILL_SOLVERS, _keep_going, _time_to
    from kill_respawn import _phases

    from asip.algorithms import (AsipClassifier, Objective, get_loss, get_penalty,
                                 reference_optimum)
    from asip.faults import KillWorker

    make, alpha = KILL_PROBLEMS[problem]
    ds = make()
    obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
    ref = reference_optimum(obj, ds.X, ds.y)

    def fit(arm, faults=()):
        client = clients[arm]
        client.wait_for_workers(2, timeout=120)  # the killed one is back
        est = AsipClassifier(alpha=alpha, fit_intercept=False, tol=1e-7, max_time=budget,
                             random_state=0, faults=faults, callback=_keep_going,
                             **KILL_SOLVERS[solver])
        with client.as_current(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(ds.X, ds.y)
        return est, _time_to(est.trace_, ref, 1e-6)

    arms = list(clients)
    for arm in arms:
        fit(arm)  # warm-up
    recent = [fit(arm)[1] for arm in arms + arms]
    kills = {arm: [] for arm in arms}
    free = {arm: [] for arm in arms}
    rounds = {arm: [] for arm in arms}
    after = {arm: [] for arm in arms}  # ready (the restarted operator's setup done) -> 1e-6
    for i in range(pairs):
        at = 0.3 * float(np.median(recent[-4:]))
        for arm in (arms if i % 2 == 0 else arms[::-1]):
            est0, t0 = fit(arm)
            free[arm].append(t0)
            recent.append(t0)
            est, t6 = fit(arm, (KillWorker(1, at=at),))
            lost = next((e.time for e in est.stage_result_.timeline if e.kind == "lost"), None)
            fired = len(est.restarts_) >= 1 and lost is not None and lost <= t6
            kills[arm].append(t6 if fired else math.nan)
            ready = next((e.time for e in est.stage_result_.timeline if e.kind == "ready"),
                         math.nan)
            after[arm].append(t6 - ready if fired else math.nan)
            rounds[arm].append((est.n_iter_, est0.n_iter_))
            print(f"  {problem} {est.solver_} pair {i} {arm}: fault-free {t0:.2f} s "
                  f"({est0.n_iter_} rounds); kill at {at:.2f} s -> to 1e-6 {t6:.2f} s "
                  f"({est.n_iter_} rounds){'' if fired else ' (no kill before 1e-6: left out)'}"
                  f"; {_phases(est)}; load {os.getloadavg()[0]:.1f}", flush=True)
    lines = []
    for arm in arms:
        mk, mf = float(np.nanmedian(kills[arm])), float(np.median(free[arm]))
        more = sum(k > f for k, f in rounds[arm])
        lines.append(f"{arm}: kill median {mk:.2f} s, fault-free median {mf:.2f} s -> "
                     f"{mk / mf:.2f}x, ready -> 1e-6 median {np.nanmedian(after[arm]):.2f} s, "
                     f"{more}/{pairs} killed fits took more rounds")
    a, b = arms
    ratios = [x / y for x, y in zip(kills[a], kills[b])]  # nan: a kill left out
    each = ", ".join(f"{r:.2f}" for r in ratios)
    lines.append(f"paired kill {a}/{b} median {np.nanmedian(ratios):.2f} ({each})")
    return f"{problem} {solver}: {'; '.join(lines)}; n={pairs}; load {os.getloadavg()[0]:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="the other tree's root (on sys.path)")
    ap.add_argument("--problems", nargs="+", default=["dense"], choices=["dense", "sparse"])
    ap.add_argument("--solvers", nargs="+", default=["auto"],
                    choices=["auto", "asip-svrg", "asip-cocoa", "asip-cocoa-sdca"])
    ap.add_argument("--pairs", type=int, default=6)
    args = ap.parse_args()
    import dask

    # keep the killed worker's nanny (distributed closes it if its process is not back in 15 s)
    dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"})
    clients = {"this": _cluster(None), "other": _cluster(args.against)}
    print(f"load average {os.getloadavg()}", flush=True)
    rows = [run(clients, p, s, args.pairs) for p in args.problems for s in args.solvers]
    print("\n".join(rows))


if __name__ == "__main__":
    main()
