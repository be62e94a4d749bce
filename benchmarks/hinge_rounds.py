"""asip-cocoa on hinge-l2 (``--loss log_loss``: log_loss-l2) in one process (lock-step,
`tests/algorithms/_sim.py`): exchanges to 1e-3 / 1e-6 relative suboptimality and to the
certified stop, local solvers side by side.

Run: ``python benchmarks/hinge_rounds.py --datasets a9a,ijcnn1,synthetic-logistic:20000
[--partitions 2] [--variants 'sdca;newton;newton mu0=0.1'] [--max-rounds 400]
[--round-time 0.001]`` (simulated seconds a round: what ``cert_period`` is measured in). A variant is
``local_solver`` then ``key=value`` params (Python literals; an upper-case key sets that
`_cocoa` (or `_hinge_smoothing`) constant for the variant's runs: ``NEWTON_CERT_ROUNDS=inf
BIAS_SHARE=-1`` is main's schedule). A round is one ``local_step`` of
every partition in turn (each an exchange); the model each round is the one the runtime would
report (`combine` of the snapshots), its objective against the certified reference; the CPU
is the busiest partition's thread time in ``local_step`` until 1e-6 (what a worker spends). The slice
of an SDCA step is fixed (``--chunk`` of a pass) so that counts do not depend on the load.
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "algorithms"))

from _sim import Msg, _fix_chunk, _simulated_stopwatches  # noqa: E402

from asip.algorithms import _cocoa, _hinge_smoothing  # noqa: E402
from asip.algorithms import _kernels as K  # noqa: E402
from asip.algorithms._base import local_data, make_problem  # noqa: E402
from asip.algorithms._objectives import Objective, get_loss, get_penalty  # noqa: E402
from asip.algorithms._reference import reference_optimum  # noqa: E402
from asip.algorithms._solvers import get_algorithm  # noqa: E402
from asip_bench.data import load_dataset  # noqa: E402


def parse_variant(spec: str) -> tuple[str, dict]:
    words = spec.split()
    params = {"local_solver": words[0]}
    for kv in words[1:]:
        k, _, v = kv.partition("=")
        if k.isupper():  # a module constant of `_cocoa`, set for this variant's runs
            params.setdefault("_const", {})[k] = float(v)
            continue
        try:
            params[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            params[k] = v
    return spec, params


def run(X, y, n_parts, params, obj, f_star, max_rounds, chunk_frac, alpha, round_time=1e-3,
        loss=K.HINGE):
    """Lock-step rounds; returns (rounds to 1e-3, to 1e-6, to the certified stop, the busiest
    partition's thread CPU seconds in `local_step` to 1e-6, partition 0's Newton rounds, mu)."""
    algo = get_algorithm("asip-cocoa")
    params = dict(params)
    consts = params.pop("_const", {})
    mods = {k: _cocoa if hasattr(_cocoa, k) else _hinge_smoothing for k in consts}
    saved = {k: getattr(mods[k], k) for k in consts}
    try:
        for k, v in consts.items():
            setattr(mods[k], k, v)
        return _run(X, y, n_parts, params, obj, f_star, max_rounds, chunk_frac, alpha,
                    round_time, algo, loss)
    finally:
        for k, v in saved.items():
            setattr(mods[k], k, v)


def lockstep_setup(algo, X, y, n_parts: int, loss: int, alpha: float, params: dict,
                   chunk_frac: float | None = None):
    """``X, y`` cut into ``n_parts`` equal row blocks: the problem, each block's local data
    and its operator's initial state (SDCA slices of ``chunk_frac`` of a pass, if given)."""
    bounds = np.linspace(0, X.shape[0], n_parts + 1).astype(int)
    parts = [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    problem = make_problem(loss, K.L2, alpha, False, parts)
    params = algo.merge({"tol": 1e-6, "seed": 0, **params})
    datas = [local_data(Xb, yb, problem, i) for i, (Xb, yb) in enumerate(parts)]
    states = [algo.init(problem, d, params) for d in datas]
    if chunk_frac is not None:
        chunk = max(1, int(chunk_frac * datas[0].n))
        states = [_fix_chunk(s, chunk) for s in states]
    return problem, datas, states


def exchange(algo, states: list, datas: list, boxes: list, now: float, cpu: list) -> bool:
    """One lock-step exchange, partitions in turn: each takes its inbox and steps at ``now``
    (its thread CPU added to ``cpu[i]``), its pushes land in the peers' boxes at once.
    Returns whether any partition said done."""
    done = False
    for i in range(len(states)):
        inbox, boxes[i] = boxes[i], []
        c0 = time.thread_time()
        out = algo.local_step(states[i], datas[i], inbox, now)
        cpu[i] += time.thread_time() - c0
        states[i] = out.state
        for o in out.outbox:
            for j in range(len(states)):
                if j != i and (o.to is None or o.to == j):
                    boxes[j].append(Msg(i, 0, o.payload, time.time()))
        done = done or out.done
    return done


def _run(X, y, n_parts, params, obj, f_star, max_rounds, chunk_frac, alpha, round_time, algo,
         loss):
    problem, datas, states = lockstep_setup(algo, X, y, n_parts, loss, alpha, params,
                                            chunk_frac)
    boxes = [[] for _ in datas]
    rounds, done, hit3, hit6 = 0, False, None, None
    cpu, cpu6 = [0.0] * n_parts, None

    def clock():
        return rounds * round_time

    with _simulated_stopwatches(clock):
        while not done and rounds < max_rounds:
            rounds += 1
            done = exchange(algo, states, datas, boxes, clock(), cpu) or done
            if hit6 is None:
                w = algo.combine(problem, [algo.snapshot(s) for s in states])
                r = (obj.value(w, X, y) - f_star) / abs(f_star)
                if hit3 is None and r <= 1e-3:
                    hit3 = rounds
                if r <= 1e-6:
                    hit6, cpu6 = rounds, max(cpu)
    snap = algo.snapshot(states[0])
    return hit3, hit6, rounds if done else None, cpu6, snap.get("rounds"), snap.get("mu")


def lockstep_parser(datasets: str, variants: str) -> argparse.ArgumentParser:
    """The options the lock-step asip-cocoa scripts share (this one, `cert_cadence.py`)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=datasets)
    ap.add_argument("--partitions", default="2")
    ap.add_argument("--variants", default=variants)
    ap.add_argument("--max-rounds", type=int, default=400)
    ap.add_argument("--chunk", type=float, default=0.4, help="SDCA slice, fraction of a pass")
    ap.add_argument("--alpha", type=float, default=0.1)
    return ap


def print_start() -> None:
    """The run's first line: UTC time and load."""
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load "
          f"{os.getloadavg()[0]:.2f}", flush=True)


def main(argv=None):
    ap = lockstep_parser("a9a,ijcnn1,synthetic-logistic:20000", "sdca;newton")
    ap.add_argument("--loss", default="hinge", choices=["hinge", "log_loss"])
    ap.add_argument("--round-time", type=float, default=1e-3, help="simulated s a round")
    args = ap.parse_args(argv)
    variants = [parse_variant(v.strip()) for v in args.variants.split(";") if v.strip()]
    print_start()
    for name in args.datasets.split(","):
        if name == "rare":  # CSR, power-law feature frequencies (`sparse_newton.rare_features`)
            from sparse_newton import rare_features
            X, y = rare_features()
        else:
            data = load_dataset(name)
            X, y = data.X, data.y
        obj = Objective(get_loss(args.loss), get_penalty("l2", args.alpha), False)
        loss = K.HINGE if args.loss == "hinge" else K.LOGISTIC
        f_star = reference_optimum(obj, X, y).f_star
        for k in (int(p) for p in args.partitions.split(",")):
            for label, params in variants:  # a throw-away run first: numba compiles
                run(X[:2000], y[:2000], k, params, obj, f_star, 3, args.chunk, args.alpha,
                    args.round_time, loss)
                h3, h6, cert, wall, nr, mu = run(X, y, k, params, obj, f_star,
                                                 args.max_rounds, args.chunk, args.alpha,
                                                 args.round_time, loss)
                fmt = lambda v: "-" if v is None else str(v)  # noqa: E731
                wall = math.nan if wall is None else wall * 1e3
                print(f"{name:26s} K={k:2d} {label:34s} 1e-3 {fmt(h3):>4s}  1e-6 {fmt(h6):>4s}"
                      f"  cert {fmt(cert):>4s}  newton-rounds {fmt(nr):>4s}  mu {mu}"
                      f"  cpu to 1e-6 {wall:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
