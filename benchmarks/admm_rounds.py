"""asip-admm and ``admm`` on hinge-l2 in one process (lock-step, `tests/algorithms/_sim.py`):
rounds to 1e-3 / 1e-6 relative suboptimality and the local SDCA epochs they cost.

Run: ``python benchmarks/admm_rounds.py --datasets a9a,ijcnn1,synthetic-logistic:20000
[--partitions 2] [--variants 'asip-admm;admm;asip-admm local_epochs=3'] [--max-rounds 300]``.
A variant is a solver then ``key=value`` params (Python literals; ``rho_x=2`` is twice the
``rho`` of the variant's ``rho_rule``, else of the solver's default). A round is one
``local_step`` of every partition in turn at ``--round-time`` simulated seconds; for
``admm`` (a barrier) the count is its completed barrier rounds (``k``), not the steps. The
model each round is the one the runtime would report (`combine` of the snapshots).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "algorithms"))

from _sim import Msg  # noqa: E402

from asip.algorithms import _kernels as K  # noqa: E402
from asip.algorithms._base import local_data, make_problem  # noqa: E402
from asip.algorithms._objectives import Objective, get_loss, get_penalty  # noqa: E402
from asip.algorithms._reference import reference_optimum  # noqa: E402
from asip.algorithms._solvers import get_algorithm  # noqa: E402
from asip_bench.data import load_dataset  # noqa: E402


def parse_variant(spec: str) -> tuple[str, str, dict]:
    words = spec.split()
    params = {}
    for kv in words[1:]:
        k, _, v = kv.partition("=")
        try:
            params[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            params[k] = v
    return spec, words[0], params


def deliver_due(later: list, boxes: list, k: int) -> list:
    """Put the held-back messages due by round ``k`` into their receivers' ``boxes``; returns
    those still held back."""
    for _, j, msg in [m for m in later if m[0] <= k]:
        boxes[j].append(msg)
    return [m for m in later if m[0] > k]


def take_inbox(boxes: list, inboxes: list | None, i: int) -> list:
    """Partition ``i``'s inbox for this step: with ``inboxes`` (parallel, Jacobi) what it held
    at the round's start, else (round-robin) everything in its box now."""
    if inboxes is not None:
        inbox = inboxes[i]
        boxes[i] = boxes[i][len(inbox):]
    else:
        inbox, boxes[i] = boxes[i], []
    return inbox


def post(outbox, i: int, incarnation: int, boxes: list, later: list, k: int, delay: int,
         rng) -> None:
    """Route partition ``i``'s pushes of round ``k`` to its peers, each held back a random
    0..``delay`` rounds (into ``later``) or delivered at once."""
    for o in outbox:
        for j in range(len(boxes)):
            if j != i and (o.to is None or o.to == j):
                msg = Msg(i, incarnation, o.payload, time.time())
                lag = int(rng.integers(0, delay + 1)) if delay else 0
                if lag:
                    later.append((k + lag, j, msg))
                else:
                    boxes[j].append(msg)


def run(X, y, n_parts, solver, params, obj, f_star, max_rounds, alpha, round_time=1.5e-3,
        loss=K.HINGE, jacobi=False, delay=0, intercept=False, trace=False):
    """Lock-step rounds; returns (rounds to 1e-3, to 1e-6, local SDCA epochs of the busiest
    partition to 1e-6, rounds at the certified stop or None)."""
    algo = get_algorithm(solver)
    bounds = np.linspace(0, X.shape[0], n_parts + 1).astype(int)
    parts = [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    problem = make_problem(loss, K.L2, alpha, intercept, parts)
    params = dict(params)
    if "rho_x" in params:  # a multiple of the rho of the variant's rho_rule (else the default)
        from asip.algorithms._admm_core import default_rho
        rule = params.get("rho_rule", algo.defaults["rho_rule"])
        params["rho"] = params.pop("rho_x") * default_rho(problem, rule)
    params = algo.merge({"tol": 1e-6, "seed": 0, **params})
    datas = [local_data(Xb, yb, problem, i) for i, (Xb, yb) in enumerate(parts)]
    states = [algo.init(problem, d, params) for d in datas]
    boxes = [[] for _ in parts]
    later = []  # (round due, receiver, message): ``delay`` holds each one back 0..delay rounds
    rng = np.random.default_rng(1)
    steps, hit3, hit6, ep6, stop = 0, None, None, None, None

    def rounds_now():
        if solver == "admm":
            return min(int(s.mem["k"]) for s in states)
        return steps

    def epochs():
        return max(int(s.mem.get("epochs", 0)) for s in states)

    while rounds_now() < max_rounds and steps < 4 * max_rounds:
        steps += 1
        later = deliver_due(later, boxes, steps)
        inboxes = [list(b) for b in boxes] if jacobi else None
        for i in range(len(parts)):
            out = algo.local_step(states[i], datas[i], take_inbox(boxes, inboxes, i),
                                  steps * round_time)
            states[i] = out.state
            post(out.outbox, i, 0, boxes, later, steps, delay, rng)
            if out.done and stop is None:
                stop = rounds_now()
        if hit6 is None:
            w = algo.combine(problem, [algo.snapshot(s) for s in states])
            r = (obj.value(w, X, y) - f_star) / abs(f_star)
            if trace:
                rhos = [float(s.rho) for s in states]
                print(f"    round {rounds_now():4d} rel {r:.2e} rho {rhos}", flush=True)
            if hit3 is None and r <= 1e-3:
                hit3 = rounds_now()
            if r <= 1e-6:
                hit6, ep6 = rounds_now(), epochs()
        if hit6 is not None and (stop is not None or params["tol"] == 0):
            break
    return hit3, hit6, ep6, stop


def cold_start_data():
    """`benchmarks/cold_start.py`'s dense data: 1,000 x 20 Gaussian, labels the sign of a
    Gaussian model plus noise 0.3 (nearly separable), in {-1, +1}."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 20))
    y = np.where(X @ rng.normal(size=20) + 0.3 * rng.normal(size=1000) > 0, 1.0, -1.0)
    return X, y


def _load(name):
    """``make_logistic:NxD`` (`make_logistic`, seed 0), ``cold_start`` (the 1,000 x 20 nearly
    separable data of `benchmarks/cold_start.py`), else the bench's."""
    if name == "cold_start":
        return cold_start_data()
    if name.startswith("make_logistic:"):
        from asip.algorithms import make_logistic
        n, _, d = name.partition(":")[2].partition("x")
        ds = make_logistic(int(n), int(d), random_state=0)
        return ds.X, np.asarray(ds.y, dtype=np.float64)
    data = load_dataset(name)
    return data.X, data.y


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="a9a,ijcnn1,synthetic-logistic:20000")
    ap.add_argument("--partitions", default="2")
    ap.add_argument("--variants", default="asip-admm;admm")
    ap.add_argument("--max-rounds", type=int, default=300)
    ap.add_argument("--alpha", default="0.1", help="a number or 1/n (the data's rows)")
    ap.add_argument("--loss", default="hinge")
    ap.add_argument("--round-time", type=float, default=1.5e-3)
    ap.add_argument("--delay", type=int, default=0, help="hold each message back a random "
                    "0..delay rounds")
    ap.add_argument("--intercept", action="store_true", help="fit an intercept (the estimators' "
                    "default)")
    ap.add_argument("--trace", action="store_true", help="print every round's suboptimality")
    ap.add_argument("--jacobi", action="store_true", help="every partition steps on the inbox "
                    "of the round's start (as operators running in parallel), not round-robin")
    args = ap.parse_args(argv)
    variants = [parse_variant(v.strip()) for v in args.variants.split(";") if v.strip()]
    loss = {"hinge": K.HINGE, "log_loss": K.LOGISTIC, "squared_error": K.SQUARED}[args.loss]
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load "
          f"{os.getloadavg()[0]:.2f}, {args.loss}-l2 alpha {args.alpha}"
          f"{', jacobi' if args.jacobi else ', round-robin'}, delay {args.delay}"
          f"{', intercept' if args.intercept else ''}", flush=True)
    for name in args.datasets.split(","):
        X, y = _load(name)
        alpha = 1.0 / X.shape[0] if args.alpha == "1/n" else float(args.alpha)
        obj = Objective(get_loss(args.loss), get_penalty("l2", alpha), args.intercept)
        f_star = reference_optimum(obj, X, y).f_star
        for k in (int(p) for p in args.partitions.split(",")):
            for label, solver, params in variants:
                h3, h6, ep, stop = run(X, y, k, solver, params, obj, f_star, args.max_rounds,
                                       alpha, args.round_time, loss, args.jacobi, args.delay,
                                       args.intercept, args.trace)
                fmt = lambda v: "-" if v is None else str(v)  # noqa: E731
                print(f"{name:26s} K={k:2d} {label:44s} 1e-3 {fmt(h3):>4s}  1e-6 {fmt(h6):>4s}"
                      f"  epochs {fmt(ep):>4s}  stop {fmt(stop):>4s}", flush=True)


if __name__ == "__main__":
    main()
