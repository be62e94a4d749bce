"""Where a numpy-input fit's launch goes at 1M x 10^5 (2 workers x 1 thread).

Fits ``AsipClassifier(solver="lbfgs", tol=1e-3)`` from numpy/scipy input (workers warm),
alternating the operators' kernel matrix as it is now (the block's CSR arrays, its int32
indices viewed as uint32, row norms only if a solver asks) and as it was until
2026-11-30 (``--before widened``: int32 indices widened to int64, a 120 MB copy, and the
row norms computed in every setup) or before that (``--before csr_matrix``: also through
``sp.csr_matrix(X)``, which copied the data and indices of a block deserialized on a
worker), and the same on a dask array persisted on the workers. Prints each fit's launch phases
(``StageResult.timings``), the operator's setup pieces timed on each worker, and the bytes
of in-memory blocks any worker fetched from a peer (0: every operator ran where its block
was scattered).

    python benchmarks/launch.py [--rows 1000000] [--cols 100000] [--repeat 2]
                                [--before widened|csr_matrix]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def _fetched(dask_worker=None) -> int:
    """Bytes of in-memory blocks this worker fetched from peers so far."""
    return sum(n for e in dask_worker.transfer_incoming_log for k, n in e["keys"].items()
               if str(k).startswith("asip-part-"))


def _instrument(widen, dask_worker=None) -> None:
    """Time the operator's setup pieces on this worker; ``widen``: the kernel matrix as
    it was (``"widened"``: int64 indices and row norms computed; ``"csr_matrix"``: also
    through ``sp.csr_matrix(X)``, which copies a deserialized block)."""
    import scipy.sparse as sp

    import asip.algorithms._base as B
    import asip.algorithms._kernels as K
    import asip.algorithms._operator as O

    dask_worker._asip_launch_log = []
    if not hasattr(K, "_plain_as_kernel_matrix"):
        K._plain_as_kernel_matrix = K.as_kernel_matrix
        O._plain_setup, B._plain_row_sqnorms = O.SolverOperator.setup, K.row_sqnorms
    plain = K._plain_as_kernel_matrix

    def timed(fn, label):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                dask_worker._asip_launch_log.append((label, time.perf_counter() - t))
        return wrapper

    def as_kernel_matrix(X):
        if not (widen and sp.issparse(X)):
            return plain(X)
        if widen == "csr_matrix":
            X = sp.csr_matrix(X, dtype=np.float64)  # as it was: copies a deserialized block
        nnz = int(X.indptr[-1])
        out = (np.ascontiguousarray(X.data[:nnz], dtype=np.float64),
               np.ascontiguousarray(X.indices[:nnz], dtype=np.int64),
               np.ascontiguousarray(X.indptr, dtype=np.int64))
        K.row_sqnorms(out)  # as local_data did in every setup (timed as row_sqnorms)
        return out

    K.as_kernel_matrix = timed(as_kernel_matrix, "as_kernel_matrix")
    K.row_sqnorms = timed(B._plain_row_sqnorms, "row_sqnorms")
    O.SolverOperator.setup = timed(O._plain_setup, "setup")


def _launch_log(dask_worker=None) -> list:
    return list(getattr(dask_worker, "_asip_launch_log", []))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--before", choices=["widened", "csr_matrix"], default="widened",
                    help="the setup the current one is compared with (see above)")
    args = ap.parse_args(argv)
    from distributed import Client, LocalCluster

    from asip.algorithms import AsipClassifier, make_sparse_logistic

    print(f"# benchmarks/launch.py; load average "
          f"{' '.join('%.1f' % v for v in os.getloadavg())}")
    t0 = time.perf_counter()
    ds = make_sparse_logistic(args.rows, args.cols, nnz_per_row=30, random_state=1)
    print(f"data {time.perf_counter() - t0:.1f} s ({ds.X.nnz:,} nonzeros, indices "
          f"{ds.X.indices.dtype})")
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:

        def fit(X, y, label, widen=False):
            client.run(_instrument, widen)
            before = client.run(_fetched)
            clf = AsipClassifier(solver="lbfgs", alpha=1.0 / args.rows, max_time=60, tol=1e-3,
                                 fit_intercept=False, random_state=0)
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.fit(X, y)
            wall = time.perf_counter() - t
            after = client.run(_fetched)
            tm = clf.stage_result_.timings
            print(f"{label}: wall {wall:.2f}, prepare {clf.fit_timings_['prepare']:.2f}, "
                  f"run {clf.stage_result_.elapsed:.2f} ({clf.n_iter_} rounds), "
                  f"data {tm.get('data', 0):.2f}, launch "
                  f"{tm.get('launch', 0):.2f} (all registered "
                  f"{tm.get('launch_all_registered', 0):.3f}, go {tm.get('launch_go', 0):.3f}); "
                  f"block bytes fetched from peers {sum(after.values()) - sum(before.values())}")
            for w, log in client.run(_launch_log).items():
                print(f"    worker {w[-5:]}: " + ", ".join(f"{k} {v:.3f}" for k, v in log))

        fit(ds.X, ds.y, "numpy, cold workers (imports, numba cache loads)")
        for _ in range(args.repeat):
            fit(ds.X, ds.y, f"numpy, before ({args.before})", widen=args.before)
            fit(ds.X, ds.y, "numpy, after (the block's arrays, uint32 indices, lazy norms)")
        import sys
        sys.path.insert(0, os.path.dirname(__file__))
        from wide import _persisted

        X, y, _ = _persisted(ds, 2)
        for _ in range(args.repeat):
            fit(X, y, "persisted dask array, after")
            fit(X, y, f"persisted dask array, before ({args.before})", widen=args.before)


if __name__ == "__main__":
    main()
