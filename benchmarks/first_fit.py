"""A fresh script's first default fit, phase by phase: what a new user waits for.

Each run is a fresh interpreter (a subprocess, cwd a scratch directory) doing what a first
script does: ``from asip.algorithms import AsipClassifier``, ``make_classification`` (1,000 x
20, seed 0), ``AsipClassifier().fit(X, y)``, exit. Per phase it prints the median over
``--runs`` (and min-max) of:

* ``interpreter``: from the parent's spawn to the script's first line;
* ``import asip.algorithms`` (asip, distributed, numba, the kernels), ``AsipClassifier`` (the
  estimator modules and scikit-learn's base), ``make_classification`` (sklearn.datasets);
* the fit's own ``fit_timings_``: ``client`` (the embedded cluster's start), ``prepare``,
  ``solve``, ``finish``, and ``fit`` (its wall time);
* ``numba loads`` / ``numba compiles``: seconds numba spent loading kernels from its disk cache
  and compiling them, in this process (in-process workers included; ``--processes`` workers'
  are not seen), with counts;
* ``to fit's return`` (spawn to the fit's end: the issue's "< 1 s") and ``process exit``
  (the cluster's close at exit included), and the CPU seconds of the whole process;
* ``second fit``: the same fit again, right after (a later fit: the cluster up, kernels loaded);
* the heavy packages left imported (bokeh, pandas, ...), from the first run.

``--warm SECONDS`` times a notebook instead, an interactive interpreter (``python -i``,
reading an empty stdin once the code ran): the imports and the data, then (with
``--client``, first the estimators' embedded cluster's start, ``client first``) a wait of
SECONDS, then the first fit; ``numba loads`` / ``compiles`` then count those during the fit
only (a background warm-up finishing inside the fit counts).

``--cold`` points numba's cache at an empty directory per run (a fresh install);
``--processes`` sets ``asip.driver.embedded-workers: processes``. ``--path A --path B`` runs
arms that put A (then B) first on ``PYTHONPATH`` -- e.g. a checkout of main and this tree --
alternating ABAB..., and prints each phase's paired ratios B/A; the load average is printed
beside each run.

Run:  python benchmarks/first_fit.py --runs 8
      python benchmarks/first_fit.py --runs 8 --cold --path /tmp/main-checkout --path .
      python benchmarks/first_fit.py --runs 8 --warm 2 --client --path /tmp/main-checkout --path .
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

#: the child script; ``START`` is the parent's wall clock at the spawn
CHILD = r"""
import time
T0 = time.time()
import json, resource, sys, warnings


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


from numba.core import caching, event  # numba's own import is counted with asip's below

numba = {"load": 0.0, "loads": 0, "compile": 0.0, "compiles": 0}
_load = caching.Cache.load_overload


def load_overload(self, *args, **kwargs):
    t = time.perf_counter()
    try:
        return _load(self, *args, **kwargs)
    finally:
        numba["load"] += time.perf_counter() - t
        numba["loads"] += 1


caching.Cache.load_overload = load_overload


class Compiles(event.Listener):
    # seconds of the outermost compiles (numba compiles one function at a time, under its
    # lock, the callees nested inside their caller's event), and how many functions

    def __init__(self):
        self.started = []

    def on_start(self, ev):
        self.started.append(time.perf_counter())

    def on_end(self, ev):
        t = self.started.pop()
        if not self.started:
            numba["compile"] += time.perf_counter() - t
        numba["compiles"] += 1


event.register("numba:compile", Compiles())

out = {"interpreter": T0 - START}
t = time.perf_counter()
import asip.algorithms
out["import asip.algorithms"] = time.perf_counter() - t
t = time.perf_counter()
from asip.algorithms import AsipClassifier
out["AsipClassifier"] = time.perf_counter() - t
t = time.perf_counter()
from sklearn.datasets import make_classification
X, y = make_classification(n_samples=1000, n_features=20, random_state=0)
out["make_classification"] = time.perf_counter() - t


def fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AsipClassifier().fit(X, y)


if __name__ == "__main__":
    if WARM is not None:  # a notebook: the fit comes a while after the imports
        if CLIENT:
            from asip.algorithms._fitting import get_client

            t = time.perf_counter()
            get_client()
            out["client first"] = time.perf_counter() - t
        time.sleep(WARM)
        numba.update({"load": 0.0, "loads": 0, "compile": 0.0, "compiles": 0})
    t = time.perf_counter()
    est = fit()
    out["fit"] = time.perf_counter() - t
    out["to fit's return"] = time.time() - START
    out.update(est.fit_timings_)
    out["numba loads"], out["numba compiles"] = numba["load"], numba["compile"]
    out["cpu"] = cpu()
    t = time.perf_counter()
    fit()
    out["second fit"] = time.perf_counter() - t
    out["counts"] = {"loads": numba["loads"], "compiles": numba["compiles"]}
    out["stopped_by"], out["solver"] = est.stopped_by_, est.solver_
    heavy = ("bokeh", "pandas", "pyarrow", "scipy.stats", "scipy.optimize", "matplotlib",
             "rich", "tornado.web", "jinja2", "numba", "sklearn", "distributed.dashboard")
    out["modules"] = sorted(h for h in heavy if h in sys.modules)
    out["asip"] = asip.__file__
    print("FIRST_FIT " + json.dumps(out), flush=True)
"""

RETURN = "to fit's return"
PHASES = ("interpreter", "import asip.algorithms", "AsipClassifier", "make_classification",
          "client", "prepare", "solve", "finish", "fit", "numba loads", "numba compiles",
          "to fit's return", "second fit", "process exit", "cpu")
WARM_PHASES = ("client first",)


def run_once(path: str | None, cold: bool, processes: bool, scratch: str,
             warm: float | None = None, client: bool = False) -> dict:
    """One fresh interpreter's first fit: its phases (seconds), or the error it printed."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(path)]
                                            + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if cold:
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="asip-cold-", dir=scratch)
    if processes:
        env["DASK_ASIP__DRIVER__EMBEDDED_WORKERS"] = "processes"
    start = time.time()
    code = f"START = {start!r}\nWARM = {warm!r}\nCLIENT = {client!r}\n{CHILD}"
    cmd = [sys.executable, *(["-i"] if warm is not None else []), "-c", code]
    proc = subprocess.run(cmd, cwd=scratch, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=600)
    end = time.time()
    for line in proc.stdout.splitlines():
        if line.startswith("FIRST_FIT "):
            out = json.loads(line.removeprefix("FIRST_FIT "))
            out["process exit"] = end - start
            return out
    raise RuntimeError(f"the child failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):6.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=8, help="fresh interpreters per arm")
    ap.add_argument("--cold", action="store_true", help="an empty numba cache per run")
    ap.add_argument("--processes", action="store_true",
                    help="asip.driver.embedded-workers: processes")
    ap.add_argument("--warm", type=float, default=None, metavar="SECONDS",
                    help="a notebook: wait this long after the imports, then fit")
    ap.add_argument("--client", action="store_true",
                    help="with --warm: start the embedded cluster before the wait")
    ap.add_argument("--path", action="append", default=None,
                    help="an arm: this directory first on PYTHONPATH (repeat for A/B)")
    args = ap.parse_args()
    arms = args.path or [None]
    results: dict = {a: [] for a in arms}
    print(f"first default fit, 1000 x 20; {args.runs} runs per arm, cold={args.cold}, "
          f"processes={args.processes}, warm={args.warm}, client={args.client}; arms {arms}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="asip-first-fit-") as scratch:
        for i in range(args.runs):
            for arm in arms:
                load = os.getloadavg()[0]
                out = run_once(arm, args.cold, args.processes, scratch, args.warm,
                               args.client)
                out["load"] = load
                results[arm].append(out)
                print(f"run {i} {os.path.basename(os.path.abspath(arm)) if arm else 'default'}: "
                      f"fit {out['fit']:.3f} s, to fit's return {out[RETURN]:.3f} s, "
                      f"exit {out['process exit']:.3f} s, cpu {out['cpu']:.2f} s, "
                      f"{out['solver']} stopped by {out['stopped_by']}, numba {out['counts']}, "
                      f"load {load:.1f}",
                      flush=True)
    phases = PHASES + (WARM_PHASES if args.warm is not None and args.client else ())
    for arm in arms:
        runs = results[arm]
        print(f"\n== arm {arm or 'default'}: asip from {runs[0]['asip']}")
        print(f"   loads {summary([r['load'] for r in runs])}; numba counts "
              f"{runs[0]['counts']}; heavy modules {runs[0]['modules']}")
        for phase in phases:
            print(f"   {phase:24s} {summary([r[phase] for r in runs])}")
    if len(arms) == 2:
        a, b = (results[x] for x in arms)
        print(f"\n== paired ratios {arms[1]} / {arms[0]}: median (min-max), n={len(a)}")
        for phase in phases:
            ratios = [rb[phase] / ra[phase] for ra, rb in zip(a, b) if ra[phase] > 1e-6]
            if ratios:
                print(f"   {phase:24s} {summary(ratios)}")


if __name__ == "__main__":
    main()
