"""Cost of the certified stop in gd and admm: time per round with and without certificates.

Runs the solvers' math in one process (a round-robin stand-in for the runtime, as the
in-process tests do) on the synthetic logistic problem, ``--rounds`` rounds each, with
certificates every ``cert_every`` rounds and with none (``cert_every`` huge, tol 0), side
by side and alternating, and prints the median seconds per round and the ratio.

Run:  python benchmarks/cert_overhead.py [--n 20000 --d 100 --rounds 30 --repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from asip.algorithms import make_logistic
from asip.algorithms import _kernels as K
from asip.algorithms._base import local_data, make_problem
from asip.algorithms._solvers import get_algorithm


class _Msg:
    __slots__ = ("sender", "incarnation", "payload")

    def __init__(self, sender, payload):
        self.sender, self.incarnation, self.payload = sender, 0, payload


def per_round(solver: str, parts, problem, params: dict, rounds: int) -> float:
    algo = get_algorithm(solver)
    params = algo.merge(params)
    datas = [local_data(X, y, problem, i) for i, (X, y) in enumerate(parts)]
    states = [algo.init(problem, d, params) for d in datas]
    boxes = [[] for _ in parts]
    t0 = time.perf_counter()
    k = 0
    while k < rounds:
        for i in range(len(parts)):
            inbox, boxes[i] = boxes[i], []
            out = algo.local_step(states[i], datas[i], inbox, time.perf_counter() - t0)
            for o in out.outbox:
                for j in range(len(parts)):
                    if j != i:
                        boxes[j].append(_Msg(i, o.payload))
        k = min(s.mem["k"] for s in states)
    return (time.perf_counter() - t0) / rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--d", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    ds = make_logistic(args.n, args.d, random_state=0)
    X = np.asarray(ds.X)
    half = args.n // 2
    for fi in (False, True):
        parts = [(X[:half], ds.y[:half]), (X[half:], ds.y[half:])]
        problem = make_problem(K.LOGISTIC, K.L2, 1e-4, fi, parts)
        for solver in ("gd", "admm"):
            on, off = [], []
            for _ in range(args.repeats):
                on.append(per_round(solver, parts, problem, {"tol": 0.0, "cert_every": 5},
                                    args.rounds))
                off.append(per_round(solver, parts, problem, {"tol": 0.0, "cert_every": 10**9},
                                     args.rounds))
            a, b = statistics.median(on), statistics.median(off)
            print(f"{solver:5s} intercept={fi!s:5s} with certificates {a * 1e3:7.2f} ms/round, "
                  f"without {b * 1e3:7.2f} ms/round, ratio {a / b:.3f}", flush=True)


if __name__ == "__main__":
    main()
