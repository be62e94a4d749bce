"""Where asip-hogwild settles: suboptimality over a fit, rate balance on and off, beside asip-sgd/svrg.

Each fit records ``(seconds, relative suboptimality)`` of the driver's model at every
report (the ``callback``) on a 2-worker LocalCluster, arms alternating within each
seed. Per arm it prints the medians over seeds of: the suboptimality at a few stage
times, the time to 1e-3 and 1e-4 (the first report within), the value it settles to
(median and max over the second half of the fit), and the ratio of the fastest to the
slowest partition's step count (how unequal the rates were). Arms: ``hogwild`` (rate
balance, the default), ``hogwild-unbalanced`` (``rate_window=0``: each partition
weighted by its step count, as before), ``asip-sgd``, ``asip-svrg``.

Run: ``python benchmarks/hogwild_settle.py [--tasks log_loss-l2@1e-2,hinge-l2@1e-2]
[--splits equal:2,equal:4,unequal] [--seeds 6] [--budget 6] [--arms hogwild,hogwild-unbalanced]
[--data abalone] [--threads 1]`` (``ASIP_DATA_DIR``: the LIBSVM files)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster
from sklearn.exceptions import ConvergenceWarning

from asip.algorithms import (AsipClassifier, AsipRegressor, Objective, get_loss, get_penalty,
                             load_libsvm, make_logistic, make_regression,
                             reference_optimum, relative_suboptimality)

ARMS = {"hogwild": ("asip-hogwild", {}), "hogwild-unbalanced": ("asip-hogwild", {"rate_window": 0.0}),
        "asip-sgd": ("asip-sgd", {}), "asip-svrg": ("asip-svrg", {})}
AT = (0.5, 1.0, 2.0, 4.0, 6.0)  # stage seconds the suboptimality is printed at


def problem(task: str, n: int, data: str):
    """``(X, y, objective, f_star, estimator class, ...)`` for ``loss-penalty@alpha`` on
    ``data``: "synthetic" (``n`` x 20) or a LIBSVM set (its first ``n`` rows, dense)."""
    name, alpha = task.split("@")
    loss, pen = name.rsplit("-", 1)
    loss = {"squared": "squared_error"}.get(loss, loss)
    if data == "synthetic":
        ds = (make_regression if loss == "squared_error" else make_logistic)(n, 20, random_state=2)
    else:
        ds = load_libsvm(data, n_samples=n)
        ds = ds._replace(X=ds.X.toarray() if hasattr(ds.X, "toarray") else ds.X)
    obj = Objective(get_loss(loss), get_penalty(pen, float(alpha)))
    est = AsipRegressor if loss == "squared_error" else AsipClassifier
    return ds.X, ds.y, obj, reference_optimum(obj, ds.X, ds.y).f_star, est, loss, pen, float(alpha)


def chunks(split: str, n: int) -> tuple:
    """Row blocks: ``equal:k`` or ``unequal`` (3 of 10/32.56 of the rows and one of 2.56, as
    10,000 x 3 + 2,561)."""
    if split == "unequal":
        big = int(n * 10_000 / 32_561)
        return (big, big, big, n - 3 * big)
    k = int(split.split(":")[1])
    b = np.linspace(0, n, k + 1).astype(int)
    return tuple(int(c) for c in np.diff(b))


def fit_trace(arm, X, y, obj, f_star, est, loss, pen, alpha, split, seed, budget):
    """One fit; its trace ``[(seconds, rel)]`` and the steps per partition."""
    solver, params = ARMS[arm]
    trace = []

    def record(seconds, w):
        trace.append((seconds, float(relative_suboptimality(obj.value(np.ravel(w), X, y), f_star))))
        return False

    clf = est(loss=loss, penalty=pen, alpha=alpha, solver=solver, max_time=budget, tol=0.0,
              fit_intercept=False, random_state=seed, solver_params=params, callback=record)
    n = X.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(da.from_array(X, chunks=(chunks(split, n), X.shape[1])),
                da.from_array(y, chunks=chunks(split, n)))
    steps = [int(np.ravel(r.get("t", 0))[0]) if isinstance(r, dict) else 0
             for r in clf.stage_result_.results]
    return trace, steps


def summary(trace, steps, budget):
    t = np.array([s for s, _ in trace])
    r = np.array([v for _, v in trace])
    at = [float(r[t <= a][-1]) if np.any(t <= a) else np.nan for a in AT]
    ttt = [float(t[np.argmax(r <= tgt)]) if np.any(r <= tgt) else np.inf for tgt in (1e-3, 1e-4)]
    late = r[t >= budget / 2]
    settle = (float(np.median(late)), float(late.max())) if late.size else (np.nan, np.nan)
    spread = max(steps) / max(min(steps), 1) if steps and max(steps) > 0 else np.nan
    return {"at": at, "ttt": ttt, "settle": settle, "spread": spread}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--tasks", default="log_loss-l2@1e-2")
    ap.add_argument("--splits", default="equal:2,unequal")
    ap.add_argument("--arms", default="hogwild-unbalanced,hogwild")
    ap.add_argument("--budget", type=float, default=6.0)
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--data", default="synthetic", help="synthetic or a LIBSVM set (abalone...)")
    ap.add_argument("--threads", type=int, default=2, help="threads per worker (2 workers)")
    args = ap.parse_args(argv)
    arms = args.arms.split(",")
    with LocalCluster(n_workers=2, threads_per_worker=args.threads, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster):
        for task in args.tasks.split(","):
            X, y, obj, f_star, est, loss, pen, alpha = problem(task, args.n, args.data)
            for split in args.splits.split(","):
                got = {a: [] for a in arms}
                print(f"# {task} {split} {chunks(split, args.n)}: {time.strftime('%H:%M:%S', time.gmtime())}"
                      f" UTC, load {os.getloadavg()[0]:.1f}", flush=True)
                for seed in range(args.seeds):
                    for arm in (arms if seed % 2 == 0 else arms[::-1]):
                        tr, steps = fit_trace(arm, X, y, obj, f_star, est, loss, pen, alpha, split,
                                              seed, args.budget)
                        s = summary(tr, steps, args.budget)
                        got[arm].append(s)
                        print(f"  seed {seed} {arm:<19s} " + " ".join(f"{v:.1e}" for v in s["at"])
                              + f" | settle {s['settle'][0]:.1e} max {s['settle'][1]:.1e}"
                              f" | steps max/min {s['spread']:.2f} | load {os.getloadavg()[0]:.1f}",
                              flush=True)
                print(f"  medians of {args.seeds} (at {AT} s | ttt 1e-3, 1e-4 | settle median, max):")
                for arm in arms:
                    g = got[arm]
                    med = lambda f: statistics.median(f(s) for s in g)  # noqa: E731
                    at = " ".join(f"{med(lambda s: s['at'][k]):.1e}" for k in range(len(AT)))
                    print(f"  {arm:<19s} {at} | {med(lambda s: s['ttt'][0]):.2f} s "
                          f"{med(lambda s: s['ttt'][1]):.2f} s | {med(lambda s: s['settle'][0]):.1e} "
                          f"{med(lambda s: s['settle'][1]):.1e} | spread {med(lambda s: s['spread']):.2f}",
                          flush=True)
                if len(arms) > 1:
                    a, b = arms[0], arms[1]
                    ratio = [x["settle"][1] / y_["settle"][1] for x, y_ in zip(got[a], got[b])]
                    print(f"  paired settle-max ratio {a}/{b}: median {statistics.median(ratio):.2f} "
                          f"(n={len(ratio)})", flush=True)


if __name__ == "__main__":
    main()
