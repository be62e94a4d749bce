"""Wide sparse problems: traffic per message, the 10^6-feature target, scikit-learn, scheduler memory.

Sections (``--sections``, all by default):

* ``traffic`` -- bytes per delivered message of asip-sgd and asip-cocoa on the same sparse
  problem (3,000 rows, 8 nonzeros a row in 300 columns) made 10^4 and 10^6 wide: with the
  sparse exchange the two widths move about the same bytes (a dense push is ``8 d``).
* ``wide`` -- sparse synthetic logistic, 100k rows x 10^6 features, 30 nonzeros a row,
  alpha = 1/n, no intercept, 2 workers: asip-svrg's certified ``fit(tol=1e-3)`` as a user
  times it (wall, and the part spent solving), and where ``--solvers`` (asip-svrg, asip-sgd,
  asip-cocoa) are after ``--budget`` s (target: <= 1e-3 within 10 s). The reference optimum
  (scipy, certified) is cached on disk by `asip.algorithms.reference_optimum`.
* ``sklearn`` -- 1M rows x 10^5 features: scikit-learn's lbfgs, liblinear and saga on one
  core, time to 1e-3 (the first of a doubling ``max_iter`` sequence that gets there, refined
  once by the midpoint; its own wall time), against the certified ``fit(tol=1e-3)`` of each
  ``--vs`` solver (lbfgs and asip-svrg by default; e.g. ``--vs asip-svrg gd prox-newton``) on
  2 workers (target: >= 2x sooner), from numpy/scipy input and again from a dask array
  already persisted on the workers; each row says where the fit's time went. With lbfgs,
  also like for like: asip's ``fit(max_iter=k, tol=0)`` with ``k`` chosen by the same oracle
  as scikit-learn's ``max_iter`` (clearly labelled: not certified).
* ``memory`` -- the scheduler's RSS growth (peak and end, sampled every 0.5 s) during an
  asip-sgd fit of ``--seconds`` s at d = 10^6, after a 2 s warm-up fit (target: <= 50 MB
  for 60 s).
* ``floor`` -- one data pass of asip-sgd's dense kernel over an 800k x 100 block against a
  BLAS gradient pass (``X @ w`` then ``X.T @ r``) on one core (target: within 3x).
* ``pass`` -- one lbfgs round's data pass (``_kernels.loss_grad``) over one worker's block of
  the ``sklearn`` section's problem (500k x 10^5, 30 nonzeros a row) against scipy's CSR
  ``X @ w`` then ``X.T @ r`` on one core (no cluster); also the sample-weighted pass
  (``_kernels.loss_grad_sw``, random weights), the same sweeps.

Run:  python benchmarks/wide.py                  (everything; ~5 min on an idle 2-core machine)
      python benchmarks/wide.py --sections wide     (the 10^6 target, ~1.5 min)
      python benchmarks/wide.py --sections sklearn  (1M x 10^5 vs scikit-learn, ~3 min)
      python benchmarks/wide.py --sections sklearn --threads  (the workers in this process)
      python benchmarks/wide.py --quick          (10x smaller shapes, 10 s memory run)
      python benchmarks/wide.py --sections pass     (one lbfgs data pass against scipy, ~10 s)
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import warnings

import numpy as np

from asip.algorithms import (AsipClassifier, Objective, get_loss, get_penalty,
                             make_sparse_logistic, reference_optimum, relative_suboptimality)


def _objective(alpha: float) -> Objective:
    return Objective(get_loss("log_loss"), get_penalty("l2", alpha))


def _fit(X, y, solver, alpha, max_time, tol=0.0, **kw):
    clf = AsipClassifier(solver=solver, alpha=alpha, max_time=max_time, tol=tol,
                         fit_intercept=False, random_state=0, **kw)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    return clf, time.perf_counter() - t0


def _rel(obj, ref, X, y, w) -> float:
    return float(relative_suboptimality(obj.value(np.ravel(w), X, y), ref.f_star))


def traffic(args) -> None:
    print("\n## traffic: bytes per delivered message (3,000 rows, 8 nnz/row in 300 columns)\n")
    print("| solver | d | messages | bytes/message | dense push would be | rel. subopt. |")
    print("|---|---|---|---|---|---|")
    alpha = 1e-2
    base = make_sparse_logistic(3000, 300, nnz_per_row=8, active=300, random_state=4)
    obj = _objective(alpha)
    ref = reference_optimum(obj, base.X, base.y)
    for solver in ("asip-sgd", "asip-cocoa"):
        for d in (10_000, 1_000_000):
            ds = make_sparse_logistic(3000, d, nnz_per_row=8, active=300, random_state=4)
            clf, _ = _fit(ds.X, ds.y, solver, alpha, 2.0,
                          tol=1e-6 if solver == "asip-cocoa" else 0.0)
            tot = clf.stage_result_.stats["total"]
            per = tot["delivered_bytes"] / max(tot["delivered"], 1)
            rel = _rel(obj, ref, base.X, base.y, clf.coef_.ravel()[:300])
            print(f"| {solver} | {d:.0e} | {tot['delivered']} | {per:,.0f} | {8 * d:,} | "
                  f"{rel:.1e} |", flush=True)


def _problem(n: int, d: int, seed: int):
    """The sparse logistic problem (30 nonzeros a row, alpha = 1/n), its objective and optimum."""
    ds = make_sparse_logistic(n, d, nnz_per_row=30, random_state=seed)
    alpha = 1.0 / n
    obj = _objective(alpha)
    t0 = time.perf_counter()
    ref = reference_optimum(obj, ds.X, ds.y)
    return ds, alpha, obj, ref, time.perf_counter() - t0


def _certified_row(ds, alpha, obj, ref, solver, cap, label, X=None, y=None):
    """A certified ``fit(tol=1e-3)`` timed as a user sees it (on ``X, y`` if given: a dask
    array already on the workers); returns its wall time."""
    clf, wall = _fit(ds.X if X is None else X, ds.y if y is None else y, solver, alpha, cap,
                     tol=1e-3)
    rel = _rel(obj, ref, ds.X, ds.y, clf.coef_)
    solve = clf.fit_timings_.get("solve", float("nan"))
    print(f"| {label} | {wall:.2f} | {solve:.2f} | {rel:.1e} | {clf.stopped_by_}, "
          f"n_iter_ {clf.n_iter_}; {_profile(clf)} |", flush=True)
    return wall if rel <= 1e-3 else np.inf


def _profile(clf) -> str:
    """Where a fit's wall time went: input preparation, data placement, launch (operator
    setup), the run, the model; and the operators' own accounts where they keep one."""
    ft, res = clf.fit_timings_, clf.stage_result_
    out = f"prepare {ft.get('prepare', 0):.2f}"
    if res is not None:
        tm = res.timings
        out += (f", data {tm.get('data', 0):.2f}, launch {tm.get('launch', 0):.2f}, "
                f"run {res.elapsed:.2f}")
        spent = [{k[8:]: v for k, v in r.items() if k.startswith("seconds_")}
                 for r in res.results if r]
        if spent and spent[0]:
            keys = sorted(spent[0])
            out += " (operator 0: " + ", ".join(f"{k} {spent[0][k]:.2f}" for k in keys) + ")"
    return out + f", finish {ft.get('finish', 0):.2f}"


def _persisted(ds, n_parts: int):
    """``X, y`` as dask arrays of ``n_parts`` row blocks held on the workers (persisted: the
    way users with this much data hold it), and the seconds that took."""
    import dask.array as da
    import scipy.sparse as sp
    from distributed import default_client, wait

    from asip.algorithms._inputs import row_block

    client = default_client()
    t0 = time.perf_counter()
    n, d = ds.X.shape
    bounds = np.linspace(0, n, n_parts + 1).astype(int)
    futs = client.scatter([row_block(ds.X, a, b) for a, b in zip(bounds[:-1], bounds[1:])])
    wait(futs)
    # each block's labels where its rows are (as data read a partition at a time lands)
    where = client.who_has(futs)
    yfuts = [client.scatter(ds.y[a:b], workers=list(where[f.key])) for f, a, b in
             zip(futs, bounds[:-1], bounds[1:])]
    meta = sp.csr_matrix((0, d)) if sp.issparse(ds.X) else np.empty((0, d))
    X = da.concatenate([da.from_delayed(f, shape=(b - a, d), dtype=np.float64, meta=meta)
                        for f, a, b in zip(futs, bounds[:-1], bounds[1:])])
    y = da.concatenate([da.from_delayed(f, shape=(b - a,), dtype=np.float64, meta=np.empty(0))
                        for f, a, b in zip(yfuts, bounds[:-1], bounds[1:])])
    # persisted as a user's ``X.persist()`` leaves it: one future a block (else every fit's
    # graph re-runs the from_delayed/concatenate aliases in front of its tasks)
    X, y = client.persist([X, y])
    wait([X, y])
    del futs, yfuts
    return X, y, time.perf_counter() - t0


def _dask_warm_up(ds, alpha) -> None:
    """One small fit on a dask array, not timed: the workers load (or, after an edit,
    compile) the dask path's block-check kernels once per cluster, as the first numpy fit
    loads the operators' kernels."""
    import dask.array as da

    from asip.algorithms._inputs import row_block

    Xs = row_block(ds.X, 0, 2000)
    _fit(da.from_array(Xs, chunks=(1000, Xs.shape[1])), da.from_array(ds.y[:2000], chunks=1000),
         "lbfgs", alpha, 30.0, tol=1e-3)


def wide(args) -> None:
    n, d = (10_000, 100_000) if args.quick else (100_000, 1_000_000)
    ds, alpha, obj, ref, tref = _problem(n, d, 0)
    print(f"\n## wide: {n:,} x {d:,}, 30 nnz/row, alpha = 1/n, 2 workers "
          f"(reference {tref:.1f} s incl. cache, {ref.method})\n")
    print("| run | wall s | of which solving | rel. subopt. | stopped by |")
    print("|---|---|---|---|---|")
    _certified_row(ds, alpha, obj, ref, "asip-svrg", 60.0, "asip-svrg fit(tol=1e-3), certified")
    for solver in args.solvers:
        clf, wall = _fit(ds.X, ds.y, solver, alpha, args.budget,
                         tol=0.0 if solver == "asip-sgd" else 1e-9)
        print(f"| {solver}, {args.budget:g} s budget | {wall:.2f} | "
              f"{clf.fit_timings_.get('solve', float('nan')):.2f} | "
              f"{_rel(obj, ref, ds.X, ds.y, clf.coef_):.1e} | {clf.stopped_by_} |", flush=True)


def _sklearn_fit(ds, alpha, obj, ref, solver, it):
    """One scikit-learn fit of ``max_iter=it`` on one core: its wall time and suboptimality."""
    from sklearn.linear_model import LogisticRegression

    from threadpoolctl import threadpool_limits

    est = LogisticRegression(C=1.0 / (alpha * len(ds.y)), fit_intercept=False,
                             solver=solver, max_iter=it, tol=1e-12)
    t0 = time.perf_counter()
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        est.fit(ds.X, ds.y)
    return time.perf_counter() - t0, _rel(obj, ref, ds.X, ds.y, est.coef_)


def _sklearn_time_to(ds, alpha, obj, ref, solver, target=1e-3, give_up=np.inf):
    """Wall time of scikit-learn's first fit within ``target``: ``max_iter`` doubles until one
    gets there, then the midpoint of the last doubling is tried (a fit from scratch each); no
    further doubling once a fit took ``give_up`` s (a solver already that far behind)."""
    return _oracle_time_to(lambda it: _sklearn_fit(ds, alpha, obj, ref, solver, it), target,
                           give_up)


def _oracle_time_to(run, target=1e-3, give_up=np.inf):
    """``(wall, rel, max_iter)`` of the first ``run(max_iter) -> (wall, rel)`` within
    ``target`` by the oracle of `_sklearn_time_to` (doubling, then the midpoint)."""
    lo, it = 0, 1
    while it <= 256:
        wall, rel = run(it)
        if rel <= target:
            mid = (lo + it) // 2
            if lo < mid < it:
                wall2, rel2 = run(mid)
                if rel2 <= target:
                    return wall2, rel2, mid
            return wall, rel, it
        if wall > give_up:
            break
        lo, it = it, it * 2
    return np.inf, rel, lo


def _asip_max_iter_row(ds, alpha, obj, ref, solver, label, X=None, y=None):
    """Like for like with scikit-learn's row: the same ``max_iter`` oracle on asip's fit
    *without* a certificate (``tol=0``, ``max_iter`` rounds), its wall time as a user sees it."""
    def run(it):
        clf, wall = _fit(ds.X if X is None else X, ds.y if y is None else y, solver, alpha,
                         120.0, max_iter=it)
        return wall, _rel(obj, ref, ds.X, ds.y, clf.coef_)

    wall, rel, it = _oracle_time_to(run)
    shown = f"{wall:.2f}" if np.isfinite(wall) else "not reached"
    print(f"| {label} | {shown} | - | {rel:.1e} | max_iter {it}, oracle-chosen as "
          "scikit-learn's, no certificate |", flush=True)
    return wall


def sklearn_vs(args) -> None:
    n, d = (100_000, 10_000) if args.quick else (1_000_000, 100_000)
    t0 = time.perf_counter()
    ds, alpha, obj, ref, tref = _problem(n, d, 1)
    print(f"\n## vs scikit-learn: {n:,} x {d:,}, 30 nnz/row, alpha = 1/n, time to 1e-3 "
          f"(data and reference {time.perf_counter() - t0:.1f} s, {ref.method})\n")
    print("| solver | wall s to 1e-3 | of which solving | rel. subopt. there | note |")
    print("|---|---|---|---|---|")
    best, best_run = np.inf, None
    for solver in ("lbfgs", "liblinear", "saga"):
        wall, rel, it = _sklearn_time_to(ds, alpha, obj, ref, solver, give_up=2.0 * best)
        if wall < best:
            best, best_run = wall, (solver, it)
        shown = f"{wall:.2f}" if np.isfinite(wall) else "not reached"
        print(f"| sklearn {solver}, one core | {shown} | {shown} | {rel:.1e} | "
              f"max_iter {it}{'' if np.isfinite(wall) else ' (more is > 2x the best)'} |",
              flush=True)
    mine = {solver: _certified_row(ds, alpha, obj, ref, solver, 120.0,
                                   f"{solver} fit(tol=1e-3), certified, 2 workers")
            for solver in args.vs}
    solver = min(mine, key=mine.get)
    print(f"\nbest asip ({solver}) vs the best one-core scikit-learn solver: "
          f"{best / mine[solver]:.2f}x sooner (target >= 2x)")
    # the first fit on fresh workers also imports asip.algorithms there (once per cluster,
    # as scikit-learn's own imports are not in its timings): the same fit again, warm
    again = _certified_row(ds, alpha, obj, ref, solver, 120.0,
                           f"{solver} fit(tol=1e-3) again from numpy (workers warm)")
    print(f"\nthe same, workers warm: {best / again:.2f}x sooner (target >= 2x)")
    if "lbfgs" in args.vs:  # like for like: the oracle max_iter scikit-learn's row had
        oracle = _asip_max_iter_row(ds, alpha, obj, ref, "lbfgs",
                                    "lbfgs fit(max_iter=k, tol=0) from numpy (workers warm)")
        print(f"\nlike for like (both with an oracle max_iter, neither certified): "
              f"{best / oracle:.2f}x sooner")
    X, y, placed = _persisted(ds, 2)
    _dask_warm_up(ds, alpha)
    print(f"\nthe same fits on a dask array already on the workers (placing it took "
          f"{placed:.2f} s, not counted; the dask input path's kernels loaded on the workers "
          "by a 2,000-row fit first, as the numpy fits above loaded theirs):\n")
    held = {solver: _certified_row(ds, alpha, obj, ref, solver, 120.0,
                                   f"{solver} fit(tol=1e-3) on the persisted dask array",
                                   X=X, y=y)
            for solver in args.vs}
    if "lbfgs" in args.vs:
        oracle = _asip_max_iter_row(ds, alpha, obj, ref, "lbfgs",
                                    "lbfgs fit(max_iter=k, tol=0) on the persisted dask array",
                                    X=X, y=y)
        print(f"\nlike for like on the cluster's data (oracle max_iter, not certified): "
              f"{best / oracle:.2f}x sooner\n")
    solver = min(held, key=held.get)
    print(f"\nbest asip on data already on the cluster ({solver}) vs the best one-core "
          f"scikit-learn solver: {best / held[solver]:.2f}x sooner (target >= 2x)")
    if best_run is not None:  # the load of a shared machine drifts: time it again, now
        again, _ = _sklearn_fit(ds, alpha, obj, ref, *best_run)
        print(f"\nsklearn {best_run[0]} (max_iter {best_run[1]}) again, after the asip fits: "
              f"{again:.2f} s; ratios against the faster of its two timings: numpy input "
              f"{min(best, again) / mine[min(mine, key=mine.get)]:.2f}x, persisted "
              f"{min(best, again) / held[solver]:.2f}x")


def memory(args) -> None:
    from distributed import default_client

    client = default_client()

    def rss(dask_scheduler=None):
        import psutil

        return psutil.Process().memory_info().rss

    n, d = (20_000, 1_000_000)
    ds = make_sparse_logistic(n, d, nnz_per_row=30, random_state=2)
    seconds = 10.0 if args.quick else args.seconds
    _fit(ds.X, ds.y, "asip-sgd", 1.0 / n, 2.0)  # warm-up: the scheduler's imports and plugins
    rss0 = client.run_on_scheduler(rss)
    peak = [rss0]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.5):
            try:
                peak[0] = max(peak[0], client.run_on_scheduler(rss))
            except Exception:  # the sampler must not end the run
                pass

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    clf, wall = _fit(ds.X, ds.y, "asip-sgd", 1.0 / n, seconds)
    stop.set()
    th.join()
    rss1 = client.run_on_scheduler(rss)
    tot = clf.stage_result_.stats["total"]
    print(f"\n## memory: asip-sgd, {n:,} x {d:,}, {seconds:g} s fit\n")
    print("| scheduler RSS growth, peak MB | at the end MB | messages | MB moved |")
    print("|---|---|---|---|")
    print(f"| {(peak[0] - rss0) / 1e6:.1f} | {(rss1 - rss0) / 1e6:.1f} | {tot['delivered']} | "
          f"{tot['delivered_bytes'] / 1e6:.1f} |")


def floor(args) -> None:
    from threadpoolctl import threadpool_limits

    from asip.algorithms import _kernels as K

    n, d = (80_000, 100) if args.quick else (800_000, 100)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    y = np.where(rng.uniform(size=n) < 0.5, 1.0, -1.0)
    w = rng.standard_normal(d) * 0.01
    with threadpool_limits(1):
        X @ w
        t = []
        for _ in range(5):
            t0 = time.perf_counter()
            r = X @ w
            X.T @ r
            t.append(time.perf_counter() - t0)
    blas = min(t)
    batch = 10
    p = d
    G = np.zeros(p)
    tt = np.zeros(1, dtype=np.int64)
    C, anchor, x, xsum, wsum = np.zeros(p), np.zeros(p), np.zeros(p), np.zeros(p), np.zeros(1)
    rngk = K.make_rng(0)
    args_k = (X, y, K.LOGISTIC, False)
    K.rda_steps(*args_k, 10, batch, rngk, G, tt, 1.0, C, 0.0, K.L2, 1e-4, 1.0, 0.0, 0.0, anchor,
                x, xsum, wsum)
    t = []
    for _ in range(3):
        t0 = time.perf_counter()
        K.rda_steps(*args_k, n // batch, batch, rngk, G, tt, 1.0, C, 0.0, K.L2, 1e-4, 1.0, 0.0,
                    0.0, anchor, x, xsum, wsum)
        t.append(time.perf_counter() - t0)
    sgd = min(t)
    print(f"\n## floor: one pass over {n:,} x {d} dense, one core\n")
    print("| BLAS X@w, X.T@r (ms) | asip-sgd dense kernel pass (ms) | ratio (target <= 3) |")
    print("|---|---|---|")
    print(f"| {blas * 1e3:.1f} | {sgd * 1e3:.1f} | {sgd / blas:.1f} |")


def sparse_pass(args) -> None:
    """One lbfgs round's data pass on one worker's block (`_kernels.loss_grad`: loss and
    gradient sums; `loss_grad_sw` with row weights) against scipy's CSR ``X @ w`` then
    ``X.T @ r`` on the same block."""
    import scipy.sparse as sp
    from threadpoolctl import threadpool_limits

    from asip.algorithms import _kernels as K

    n, d = (50_000, 10_000) if args.quick else (500_000, 100_000)
    ds = make_sparse_logistic(2 * n, d, nnz_per_row=30, random_state=1)
    X = sp.csr_matrix(ds.X[:n])
    y = ds.y[:n]
    Xk = K.as_kernel_matrix(X)
    w = np.random.default_rng(0).standard_normal(d) * 0.01
    g = np.zeros(d)
    sw = np.random.default_rng(1).random(n) * 2.0  # row weights of mean 1

    def best(f, reps=7):
        f()
        t = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f()
            t.append(time.perf_counter() - t0)
        return min(t) * 1e3

    with threadpool_limits(1):
        ours = best(lambda: K.loss_grad(Xk, y, w, K.LOGISTIC, False, g))
        loss = best(lambda: K.loss_sum(Xk, y, w, K.LOGISTIC, False))
        weighted = best(lambda: K.loss_grad_sw(Xk, y, sw, w, K.LOGISTIC, False, g))
        scipy = best(lambda: X.T @ (X @ w))
    print(f"\n## sparse pass: one worker's block, {n:,} x {d:,}, 30 nnz/row, one core\n")
    print("| loss_grad (ms) | weighted loss_grad_sw (ms) | loss_sum (ms) | scipy X@w, X.T@r (ms) "
          "| loss_grad / scipy |")
    print("|---|---|---|---|---|")
    print(f"| {ours:.1f} | {weighted:.1f} | {loss:.1f} | {scipy:.1f} | {ours / scipy:.2f} |")


SECTIONS = {"traffic": traffic, "wide": wide, "sklearn": sklearn_vs, "memory": memory,
            "floor": floor, "pass": sparse_pass}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sections", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    ap.add_argument("--budget", type=float, default=10.0, help="seconds per budgeted fit")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the memory run")
    ap.add_argument("--quick", action="store_true", help="10x smaller shapes")
    ap.add_argument("--solvers", nargs="*", default=["asip-svrg", "asip-sgd", "asip-cocoa"],
                    help="solvers run for --budget s in the wide section")
    ap.add_argument("--vs", nargs="+", default=["lbfgs", "asip-svrg"],
                    help="asip solvers timed against scikit-learn in the sklearn section")
    ap.add_argument("--threads", action="store_true",
                    help="the 2 workers as threads of this process (in-memory input stays in "
                         "place; no memory limit: the monitor would read this whole process)")
    args = ap.parse_args(argv)
    print(f"# benchmarks/wide.py {' '.join(args.sections)}; load average "
          f"{' '.join('%.1f' % v for v in os.getloadavg())}")
    needs_cluster = set(args.sections) - {"floor", "pass"}
    if needs_cluster:
        from distributed import Client, LocalCluster

        kind = {"processes": False, "memory_limit": 0} if args.threads else {}
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                          silence_logs=40, **kind) as cluster, Client(cluster):
            for name in args.sections:
                SECTIONS[name](args)
    else:
        for name in args.sections:
            SECTIONS[name](args)
    print(f"\nload average at the end: {' '.join('%.1f' % v for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
