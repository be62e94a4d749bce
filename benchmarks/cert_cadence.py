"""asip-cocoa SDCA's certificate cadence in one process (lock-step, `tests/algorithms/_sim.py`):
how far the reported model (`combine`: the leader's best evaluated ``wbar``) trails the
operators' own (``sum u_k``), the rounds it took, and what they cost.

Run: ``python benchmarks/cert_cadence.py --datasets a9a,ijcnn1,synthetic-logistic:20000,reuters
[--partitions 2,4] [--variants 'main CERT_BALANCE=inf;new'] [--cost 0.00013]``. A variant is a
label, then ``key=value`` words: an upper-case key sets that `_cocoa` / `_cert_round` constant
for its runs, others are solver params (Python literals). An exchange is one ``local_step`` of every
partition in turn at ``--round-time`` simulated s; a certificate pass costs the leader's
stopwatch ``--cost`` s (default: its real time), what the cadence is tied to. Prints, per
variant, exchanges to 1e-3 / 1e-6 of the reported and the operators' model, the certified
stop, rounds opened, the summed lag (exchanges the reported model reached each decade
1e-1..1e-6 after the operators'), and the certificate passes' share of the partitions'
real CPU in ``local_step`` (and the leader's last pass).
"""

from __future__ import annotations

import ast
import contextlib
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "algorithms"))

from _sim import _SimTime  # noqa: E402
from hinge_rounds import exchange, lockstep_parser, lockstep_setup, print_start  # noqa: E402

from asip.algorithms import _cert_round as R  # noqa: E402
from asip.algorithms import _cocoa  # noqa: E402
from asip.algorithms import _kernels as K  # noqa: E402
from asip.algorithms._objectives import Objective, get_loss, get_penalty  # noqa: E402
from asip.algorithms._reference import reference_optimum  # noqa: E402
from asip.algorithms._solvers import get_algorithm  # noqa: E402
from asip_bench.data import load_dataset  # noqa: E402

DECADES = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def parse_variant(spec: str) -> tuple[dict, dict]:
    params, consts = {"local_solver": "sdca"}, {}
    for kv in spec.split()[1:]:
        k, _, v = kv.partition("=")
        try:
            val = float(v) if k.isupper() else ast.literal_eval(v)
        except (ValueError, SyntaxError):
            val = v
        (consts if k.isupper() else params)[k] = val
    return params, consts


@contextlib.contextmanager
def _patched(clock, cost, consts):
    """`_cocoa` reads the simulated clock; a certificate pass costs ``cost`` s (None: real);
    ``consts`` set on `_cocoa` / `_cert_round` meanwhile."""
    mods = {k: _cocoa if hasattr(_cocoa, k) else R for k in consts}
    saved = [(_cocoa, "time", _cocoa.time), (R, "close", R.close)]
    saved += [(mods[k], k, getattr(mods[k], k)) for k in consts]
    close = R.close

    def fixed_close(book, *a, **kw):
        done = close(book, *a, **kw)
        if cost is not None:
            book["cost"] = cost
        return done
    try:
        _cocoa.time = _SimTime(clock)
        R.close = fixed_close
        for k, v in consts.items():
            setattr(mods[k], k, v)
        yield
    finally:
        for mod, k, v in saved:
            setattr(mod, k, v)


def run(X, y, n_parts, params, consts, obj, f_star, max_rounds, chunk_frac, alpha, round_time,
        cost):
    algo = get_algorithm("asip-cocoa")
    problem, datas, states = lockstep_setup(algo, X, y, n_parts, K.HINGE, alpha, params,
                                            chunk_frac)
    boxes = [[] for _ in datas]
    rounds, done = 0, False
    rep, own = {}, {}  # decade -> first exchange the reported / operators' model met it
    cpu, cert_cpu = [0.0] * n_parts, [0.0]
    parts_fn = _cocoa._parts

    def timed_parts(*a, **kw):
        c0 = time.thread_time()
        try:
            return parts_fn(*a, **kw)
        finally:
            cert_cpu[0] += time.thread_time() - c0

    def clock():
        return rounds * round_time

    _cocoa._parts = timed_parts
    try:
        with _patched(clock, cost, consts):
            while not done and rounds < max_rounds:
                rounds += 1
                done = exchange(algo, states, datas, boxes, clock(), cpu) or done
                if len(rep) < len(DECADES):
                    w = algo.combine(problem, [algo.snapshot(s) for s in states])
                    u = np.sum([s.u for s in states], axis=0)
                    for model, hits in ((w, rep), (u, own)):
                        r = (obj.value(model, X, y) - f_star) / abs(f_star)
                        for dec in DECADES:
                            if r <= dec:
                                hits.setdefault(dec, rounds)
    finally:
        _cocoa._parts = parts_fn
    lag = sum(rep.get(d, rounds) - own.get(d, rounds) for d in DECADES)
    return dict(rep3=rep.get(1e-3), rep6=rep.get(1e-6), own3=own.get(1e-3),
                own6=own.get(1e-6), cert=rounds if done else None,
                opened=states[0].cert["ver"], lag=lag, share=cert_cpu[0] / max(sum(cpu), 1e-12),
                cost=states[0].cert["cost"])


def main(argv=None):
    ap = lockstep_parser("a9a,ijcnn1,synthetic-logistic:20000,reuters", "now")
    ap.add_argument("--round-time", type=float, default=1e-3, help="simulated s an exchange")
    ap.add_argument("--cost", type=float, default=None,
                    help="s the leader's certificate pass costs (default: its real time)")
    args = ap.parse_args(argv)
    variants = [(v.strip(), *parse_variant(v.strip())) for v in args.variants.split(";")
                if v.strip()]
    print_start()
    fmt = lambda v: "-" if v is None else str(v)  # noqa: E731
    for name in args.datasets.split(","):
        data = load_dataset(name)
        X, y = data.X, data.y
        obj = Objective(get_loss("hinge"), get_penalty("l2", args.alpha), False)
        f_star = reference_optimum(obj, X, y).f_star
        for k in (int(p) for p in args.partitions.split(",")):
            for label, params, consts in variants:  # a throw-away run first: numba compiles
                run(X[:2000], y[:2000], k, params, consts, obj, f_star, 3, args.chunk,
                    args.alpha, args.round_time, args.cost)
                r = run(X, y, k, params, consts, obj, f_star, args.max_rounds, args.chunk,
                        args.alpha, args.round_time, args.cost)
                print(f"{name:26s} K={k:2d} {label:28s} reported 1e-3 {fmt(r['rep3']):>4s} "
                      f"1e-6 {fmt(r['rep6']):>4s} | own 1e-3 {fmt(r['own3']):>4s} 1e-6 "
                      f"{fmt(r['own6']):>4s} | cert {fmt(r['cert']):>4s} rounds "
                      f"{r['opened']:4d} lag {r['lag']:4d} cert-cpu {100 * r['share']:.1f}% pass "
                      f"{1e3 * r['cost']:.2f} ms",
                      flush=True)


if __name__ == "__main__":
    main()
