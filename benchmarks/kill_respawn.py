"""A KillWorker at 30% of the run with the nanny's respawn held while the stage runs
(``asip.stage.respawn-hold``, `asip._respawn`) against respawned at once (0), arms
alternating in one cluster: time to 1e-6, kill / fault-free ratio per arm, the paired
ratio of the kill times (held / at once) and each kill's recovery phases.

Problems and solvers as `cocoa_newton.py`'s ``kill`` section (dense 500k x 100 or sparse
400k x 20k logistic, alpha 1e-6, 2 workers). Each pair kills at 0.3 x the median of the
last 4 fault-free fits (the load drifts over a run); a kill that came after 1e-6 is left
out of the medians.

Run:  python benchmarks/kill_respawn.py --problems dense --solvers auto asip-cocoa --pairs 6
"""

from __future__ import annotations

import argparse
import math
import os
import warnings

import numpy as np

from asip.algorithms import AsipClassifier, Objective, get_loss, get_penalty, reference_optimum
from cocoa_newton import KILL_PROBLEMS, KILL_SOLVERS, _keep_going, _time_to

ARMS = ("0", "10s")  # asip.stage.respawn-hold: respawn at once (as before), held


def _phases(est) -> str:
    """The kill's recovery on the stage's clock: lost, reload (and its seconds), ready."""
    out = []
    for e in est.stage_result_.timeline:
        if e.kind in ("lost", "reload", "ready", "joined"):
            took = f" ({e.seconds:.2f} s)" if e.seconds is not None else ""
            out.append(f"{e.kind} {e.time:.2f}{took}")
    return ", ".join(out)


def setup(problem: str):
    """The default client, its workers, ``problem``'s dataset, alpha and reference optimum."""
    from distributed import default_client

    client = default_client()
    make, alpha = KILL_PROBLEMS[problem]
    ds = make()
    obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
    return client, len(client.nthreads()), ds, alpha, reference_optimum(obj, ds.X, ds.y)


def run(problem: str, solver: str, pairs: int, budget: float = 20.0) -> str:
    import dask
    from asip.faults import KillWorker

    client, n_workers, ds, alpha, ref = setup(problem)

    def fit(arm, faults=()):
        client.wait_for_workers(n_workers, timeout=120)  # the killed one is back
        with dask.config.set({"asip.stage.respawn-hold": arm}), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = AsipClassifier(alpha=alpha, fit_intercept=False, tol=1e-7, max_time=budget,
                                 random_state=0, faults=faults, callback=_keep_going,
                                 **KILL_SOLVERS[solver])
            est.fit(ds.X, ds.y)
        return est, _time_to(est.trace_, ref, 1e-6)

    fit(ARMS[0])  # warm-up
    recent = [fit(arm)[1] for arm in ARMS + ARMS]
    kills = {arm: [] for arm in ARMS}
    free = {arm: [] for arm in ARMS}
    for i in range(pairs):
        at = 0.3 * float(np.median(recent[-4:]))  # the load drifts: the last 4 fault-free fits
        for arm in ARMS:
            est, t6 = fit(arm, (KillWorker(1, at=at),))
            lost = next((e.time for e in est.stage_result_.timeline if e.kind == "lost"), None)
            fired = len(est.restarts_) >= 1 and lost is not None and lost <= t6
            kills[arm].append(t6 if fired else math.nan)
            print(f"  {problem} {est.solver_} pair {i} hold {arm:>3}: kill at {at:.2f} s -> to "
                  f"1e-6 {t6:.2f} s{'' if fired else ' (no kill before 1e-6: left out)'}; {_phases(est)}; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            free[arm].append(fit(arm)[1])
            recent.append(free[arm][-1])
    lines = []
    for arm in ARMS:
        mk, mf = float(np.nanmedian(kills[arm])), float(np.median(free[arm]))
        lines.append(f"hold {arm}: kill median {mk:.2f} s, fault-free median {mf:.2f} s "
                     f"-> {mk / mf:.2f}x")
    paired = [b / a for a, b in zip(kills[ARMS[0]], kills[ARMS[1]])]  # nan: a kill left out
    fpaired = [b / a for a, b in zip(free[ARMS[0]], free[ARMS[1]])]
    return (f"{problem} {solver}: " + "; ".join(lines)
            + f"; paired kill held/at once median {np.nanmedian(paired):.2f} "
            f"({', '.join(f'{r:.2f}' for r in paired)}), fault-free held/at once median "
            f"{np.median(fpaired):.2f}; n={pairs}; load {os.getloadavg()[0]:.1f}")


def cli(run, doc: str, solvers: list[str]) -> None:
    """``--problems``, ``--solvers``, ``--pairs``; a 2-worker cluster that keeps a killed
    worker's nanny; ``run(problem, solver, pairs)``'s rows printed at the end."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=["dense"], choices=list(KILL_PROBLEMS))
    ap.add_argument("--solvers", nargs="+", default=solvers, choices=list(KILL_SOLVERS))
    ap.add_argument("--pairs", type=int, default=6)
    args = ap.parse_args()
    import dask

    import asip

    # keep the killed worker's nanny (distributed closes it if its process is not back in 15 s)
    dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"})
    client = asip.connect(n_workers=2)
    print(f"cluster: {client}; load average {os.getloadavg()}", flush=True)
    rows = [run(p, s, args.pairs) for p in args.problems for s in args.solvers]
    print("\n".join(rows))


if __name__ == "__main__":
    cli(run, __doc__, ["auto", "asip-cocoa"])
