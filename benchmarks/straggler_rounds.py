"""Rounds, not seconds: asip-cocoa's Newton local solver in lockstep (Jacobi: every partition
steps on what all pushed the round before), with partition 0 silent (the paper's straggler
before it first wakes) or not. Prints the relative suboptimality of the combined model after
each round, per setting; deterministic and load-independent, so settings compare exactly.

Run: ``python benchmarks/straggler_rounds.py --datasets a9a
--tasks log_loss-l2-1/n --partitions 16 --silent 15 --params missing_peers='"self"'
--params missing_peers='"rescale"'``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import scipy.sparse as sp

from asip.algorithms import _kernels as K
from asip.algorithms._base import local_data, make_problem
from asip.algorithms._reference import reference_optimum
from asip.algorithms._solvers import get_algorithm
from asip_bench.data import load_dataset, parse_task


class _Msg:
    __slots__ = ("sender", "incarnation", "payload", "sent_at")

    def __init__(self, sender, payload):
        self.sender, self.incarnation, self.payload, self.sent_at = sender, 0, payload, time.time()


def lockstep(X, y, task, n_parts: int, params: dict, rounds: int, silent: int) -> list[float]:
    """Relative suboptimality after each Jacobi round (partition 0 skips the first ``silent``)."""
    n = X.shape[0]
    objective = task.objective(n)
    f_star = reference_optimum(objective, X, y).f_star
    cut = np.linspace(0, n, n_parts + 1).astype(int)
    parts = [(X[a:b], y[a:b]) for a, b in zip(cut[:-1], cut[1:])]
    problem = make_problem(K.LOGISTIC if task.loss == "log_loss" else K.SQUARED, K.L2,
                           task.alpha_for(n), False, parts)
    algo = get_algorithm("asip-cocoa")
    params = algo.merge({"tol": 0.0, "seed": 0, "local_solver": "newton",
                         "cert_period": 1e9, **params})
    datas = [local_data(Xb, yb, problem, i) for i, (Xb, yb) in enumerate(parts)]
    states = [algo.init(problem, d, params) for d in datas]
    boxes, out = [[] for _ in parts], []
    for r in range(1, rounds + 1):
        sent = [[] for _ in parts]
        for i in range(n_parts):
            if i == 0 and r <= silent:
                continue
            step = algo.local_step(states[i], datas[i], boxes[i], float(r))
            states[i], boxes[i] = step.state, []
            for o in step.outbox:
                for j in range(n_parts):
                    if j != i and o.to in (None, j):
                        sent[j].append(_Msg(i, o.payload))
        for j in range(n_parts):
            boxes[j].extend(sent[j])
        snaps = [algo.snapshot(s) for s in states]
        if r <= silent:
            snaps[0] = None  # not reported yet
        w = algo.combine(problem, snaps)
        out.append((objective.value(w, X, y) - f_star) / abs(f_star))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="a9a")
    p.add_argument("--tasks", default="log_loss-l2-1/n,log_loss-l2@1e-4")
    p.add_argument("--partitions", type=int, default=16)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--silent", type=int, default=0, help="rounds partition 0 sleeps through")
    p.add_argument("--params", action="append", default=None,
                   help="solver_params as k=v,k=v (json values); repeat to compare")
    args = p.parse_args(argv)
    settings = [dict((kv.split("=")[0], json.loads(kv.split("=", 1)[1]))
                     for kv in filter(None, spec.split(","))) for spec in args.params or [""]]
    for spec in args.datasets.split(","):
        data = load_dataset(spec)
        X = sp.csr_matrix(data.X) if sp.issparse(data.X) else np.asarray(data.X)
        for task in map(parse_task, args.tasks.split(",")):
            for params in settings:
                sub = lockstep(X, data.y, task, args.partitions, params, args.rounds, args.silent)
                first = next((r + 1 for r, v in enumerate(sub) if v <= 1e-3), None)
                print(f"{spec} {task.key} {params or 'defaults'}: 1e-3 after round {first}; "
                      + " ".join(f"{v:.1e}" for v in sub), flush=True)


if __name__ == "__main__":
    main()
