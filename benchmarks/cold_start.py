"""The first fits after a fresh install: wall time, and where numba compiled (before or in the run).

asip's kernels are numba functions cached on disk (``cache=True``); a fresh install compiles
them in every worker process on first use. This script points numba's cache at an empty
temporary directory (``NUMBA_CACHE_DIR``, inherited by the embedded cluster's workers: nothing
of yours is deleted), starts the default 2-worker cluster and fits a few default estimators in
turn, printing each fit's wall time, its stage's data / launch / run split, and per worker the
seconds numba spent compiling in total and inside the run (after the gang's clock started,
where it eats ``max_time``; the operators' warm-up is meant to leave nothing there). Compile
times are numba's ``numba:compile`` events, nested compiles counted in their callers' too.

Run:  python benchmarks/cold_start.py                    (dense and CSR log_loss, hinge, a second fit)
      python benchmarks/cold_start.py log_loss:gd sparse-log_loss:asip-cocoa   (loss[:solver] specs)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings

import numpy as np


def _install_listener() -> None:
    """On a worker: record every numba compile (start wall time, seconds, function)."""
    import builtins

    from numba.core import event

    class Recorder(event.Listener):
        def __init__(self):
            self.events, self.started = [], {}

        def on_start(self, ev):
            self.started[id(ev.data["dispatcher"]), str(ev.data["args"])] = time.time()

        def on_end(self, ev):
            key = (id(ev.data["dispatcher"]), str(ev.data["args"]))
            t1 = time.time()
            t0 = self.started.pop(key, t1)
            fn = ev.data["dispatcher"].py_func
            self.events.append((t0, t1 - t0, f"{fn.__module__}.{fn.__qualname__}"))

    builtins._asip_compiles = Recorder()
    event.register("numba:compile", builtins._asip_compiles)


def _take_events() -> list:
    import builtins

    rec = builtins._asip_compiles
    out, rec.events = rec.events, []
    return out


def main(specs: list[str]) -> None:
    import asip
    from asip.algorithms import AsipClassifier
    import scipy.sparse as sp

    t0 = time.perf_counter()
    client = asip.connect()
    print(f"numba cache: {os.environ['NUMBA_CACHE_DIR']} (empty); cluster up in "
          f"{time.perf_counter() - t0:.2f} s; load average {os.getloadavg()[0]:.1f}")
    client.run(_install_listener)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 20))
    y = np.where(X @ rng.normal(size=20) + 0.3 * rng.normal(size=1000) > 0, 1, 0)
    Xs = sp.random(4000, 300, density=0.05, format="csr", random_state=0)
    ys = np.where(rng.normal(size=4000) > 0, 1, 0)
    for spec in specs:
        loss, _, solver = spec.partition(":")
        sparse = loss.startswith("sparse-")
        loss = loss.removeprefix("sparse-")
        est = AsipClassifier(loss=loss, **({"solver": solver} if solver else {}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.time()
            est.fit(*((Xs, ys) if sparse else (X, y)))
            wall = time.time() - start
        res = est.stage_result_
        go = start + wall - res.elapsed - res.timings.get("teardown", 0.0) - 0.05
        print(f"{spec:28s} {est.solver_:10s} fit {wall:6.2f} s (data {res.timings.get('data', 0):.2f}, "
              f"launch {res.timings.get('launch', 0):.2f}, run {res.elapsed:.2f}), "
              f"stopped by {est.stopped_by_}", flush=True)
        for worker, events in client.run(_take_events).items():
            total = sum(d for _, d, _ in events)
            late = [(t - go, d, name) for t, d, name in events if t >= go and d > 0.02]
            print(f"    {worker}: compiling {total:.2f} s, in the run {sum(d for _, d, _ in late):.2f} s"
                  + "".join(f"\n        run + {t:.2f} s: {d:.2f} s {name}" for t, d, name in late))


if __name__ == "__main__":
    if "NUMBA_CACHE_DIR" not in os.environ:  # before numba is imported, here and in the workers
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="asip-cold-")
    main(sys.argv[1:] or ["log_loss", "log_loss", "sparse-log_loss", "hinge"])
