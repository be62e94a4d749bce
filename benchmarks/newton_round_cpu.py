"""CPU per Newton round of asip-cocoa (``local_solver="newton"``, or ``"newton-cg"``), in one
process, no cluster.

The partitions step in turn (lockstep, every push delivered to the peers' next inbox, as
the tests' `_sim` does) on a simulated clock, so each run does the same rounds whatever
the machine's load; a round's CPU is `_newton_round`'s (the operator's ``clock["rounds"]``,
as a worker records it) and a step's is ``local_step``'s with the messages and the leader's
certificate. Prints the median per round index over partitions and repeats (and the
line-search trials, a loss pass each), and the relative suboptimality reached. To compare two trees, run it from each alternately.

Run:  python benchmarks/newton_round_cpu.py [--data ijcnn1 a9a] [--task log_loss-l2]
          [--partitions 2] [--rounds 6] [--repeats 5] [--json out.json]
          [--local-solver newton-cg]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import NamedTuple

# one BLAS thread, as in a distributed worker (its nanny sets these before it starts)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402


class Msg(NamedTuple):
    sender: int
    incarnation: int
    payload: dict
    sent_at: float


def run_once(parts, problem, params, rounds: int, round_time: float = 0.01):
    """One fit of ``rounds`` lockstep steps per partition: per partition, the CPU (ms) of
    each Newton round in order, of the step that ran it, and the round's line-search
    trials; the final combined model."""
    from asip.algorithms import _cocoa
    from asip.algorithms._base import local_data

    algo = _cocoa.ALGORITHM
    datas = [local_data(X, y, problem, i) for i, (X, y) in enumerate(parts)]
    states = [algo.init(problem, d, params) for d in datas]
    for s, d in zip(states, datas):
        algo.warm_up(s, d)
    boxes = [[] for _ in parts]
    cpu = [[] for _ in parts]
    for r in range(rounds):
        for i in range(len(parts)):
            inbox, boxes[i] = boxes[i], []
            before = states[i].clock.get("rounds", (0, 0.0, 0.0))
            trials = states[i].newton.trials
            c0 = time.thread_time()
            out = algo.local_step(states[i], datas[i], inbox, (r + 1) * round_time)
            step = time.thread_time() - c0
            states[i] = out.state
            after = states[i].clock.get("rounds", (0, 0.0, 0.0))
            if after[0] > before[0]:
                cpu[i].append((1e3 * (after[2] - before[2]), 1e3 * step,
                               states[i].newton.trials - trials))
            for o in out.outbox:
                for j in range(len(parts)):
                    if j != i and (o.to is None or o.to == j):
                        boxes[j].append(Msg(i, 0, o.payload, time.time()))
    model = algo.combine(problem, [algo.snapshot(s) for s in states])
    return cpu, model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["ijcnn1", "a9a"])
    ap.add_argument("--task", default="log_loss-l2", help="asip_bench task[@alpha]")
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6, help="steps per partition")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="append the figures here (one JSON line per dataset)")
    ap.add_argument("--local-solver", default="newton", choices=["newton", "newton-cg"])
    args = ap.parse_args(argv)

    from asip.algorithms import _cocoa, reference_optimum, relative_suboptimality
    from asip.algorithms import _kernels as K
    from asip.algorithms._base import make_problem
    from asip_bench.data import load_dataset, parse_task

    task = parse_task(args.task)
    for name in args.data:
        data = load_dataset(name)
        alpha = task.alpha_for(data.n)
        bounds = np.linspace(0, data.n, args.partitions + 1).astype(int)
        parts = [(data.X[a:b], data.y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        problem = make_problem(getattr(K, {"log_loss": "LOGISTIC", "hinge": "HINGE"}[task.loss]),
                               K.L2, alpha, False, parts)
        params = _cocoa.ALGORITHM.merge({"local_solver": args.local_solver, "seed": 0,
                                          "tol": 0.0})
        per_round: dict = {}
        models = []
        for _ in range(args.repeats):
            cpu, model = run_once(parts, problem, params, args.rounds)
            models.append(model)
            for rows in cpu:
                for k, row in enumerate(rows):
                    per_round.setdefault(k, []).append(row)
        obj = task.objective(data.n)
        ref = reference_optimum(obj, data.X, data.y)
        sub = relative_suboptimality(obj.value(np.asarray(models[-1]), data.X, data.y), ref.f_star)
        med = {k: tuple(statistics.median(x) for x in zip(*v))
               for k, v in sorted(per_round.items())}
        print(f"{name} {task.key} alpha={alpha:.3g} {args.partitions} partitions, load "
              f"{os.getloadavg()[0]:.2f}: round cpu ms "
              f"{[round(a, 2) for a, _, _ in med.values()]} step cpu ms "
              f"{[round(b, 2) for _, b, _ in med.values()]} trials "
              f"{[c for _, _, c in med.values()]} subopt {sub:.2e}", flush=True)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps({"data": name, "task": task.key, "load": os.getloadavg(),
                                     "round_ms": [a for a, _, _ in med.values()],
                                     "step_ms": [b for _, b, _ in med.values()],
                                     "trials": [c for _, _, c in med.values()],
                                     "subopt": sub, "model": np.asarray(models[-1]).tolist()})
                         + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
