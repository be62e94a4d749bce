"""asip-cocoa's Newton rounds in parallel lock-step: exchanges to 1e-6, variants side by side.

Every partition steps (`_cocoa.local_step`) on the messages its peers pushed in the previous
exchange -- as on a cluster, where the partitions' rounds run at the same time (the
round-robin `tests/algorithms/_sim.py` hands a partition its peer's push of the same
exchange). Prints per exchange which partitions ran a Newton round (``R``) and the
relative suboptimality of the reported model (`combine`) against the certified reference.

Run: ``python benchmarks/newton_exchanges.py synthetic-logistic:20000 0.1 2 "" "hessian_rows=2000"``
(dataset, alpha or ``1/n``, partitions, then variants: ``key=value`` solver params, Python
literals; an upper-case key sets that `_cocoa` / `_cocoa_newton` constant for the rest;
``NEWTON_EXCHANGES_MAX`` in the environment: the most exchanges, 12 unless set).
"""

from __future__ import annotations

import ast
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "algorithms"))

from _sim import Msg, _simulated_stopwatches  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hinge_rounds import lockstep_setup  # noqa: E402

from asip.algorithms import _cocoa, _cocoa_newton  # noqa: E402
from asip.algorithms import _kernels as K  # noqa: E402
from asip.algorithms._objectives import Objective, get_loss, get_penalty  # noqa: E402
from asip.algorithms._reference import reference_optimum  # noqa: E402
from asip.algorithms._solvers import get_algorithm  # noqa: E402


def run(X, y, k, params, obj, f_star, alpha, max_ex=12, verbose=True):
    """Exchanges until the model is within 1e-6 of ``f_star`` (or ``max_ex``); returns
    ``(exchange, busiest partition's thread CPU seconds until then)`` or None."""
    algo = get_algorithm("asip-cocoa")
    problem, datas, states = lockstep_setup(algo, X, y, k, K.LOGISTIC, alpha, params)
    boxes = [[] for _ in datas]
    ex, hit, cpu = 0, None, [0.0] * k
    with _simulated_stopwatches(lambda: ex * 2e-3):
        while ex < max_ex:
            ex += 1
            nxt, kinds, done = [[] for _ in datas], [], False
            for i in range(k):
                before = states[i].clock.get("rounds", (0,))[0]
                c0 = time.thread_time()
                out = algo.local_step(states[i], datas[i], boxes[i], ex * 2e-3)
                cpu[i] += time.thread_time() - c0
                states[i] = out.state
                kinds.append("R" if states[i].clock.get("rounds", (0,))[0] > before else ".")
                for o in out.outbox:
                    for j in range(k):
                        if j != i and o.to in (None, j):
                            nxt[j].append(Msg(i, 0, o.payload, time.time()))
                done = done or out.done
            boxes = nxt
            w = algo.combine(problem, [algo.snapshot(s) for s in states])
            rel = (obj.value(w, X, y) - f_star) / abs(f_star)
            if hit is None and rel <= 1e-6:
                hit = (ex, max(cpu))
            if verbose:
                print(f"  exchange {ex:2d} {''.join(kinds)} rel {rel:9.2e}"
                      f"{' certified' if done else ''}", flush=True)
            if done:
                break
    return hit


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    from asip_bench.data import load_dataset

    name, alpha, k, variants = argv[0], argv[1], int(argv[2]), argv[3:] or [""]
    data = load_dataset(name)
    X, y = data.X, data.y
    alpha = 1.0 / X.shape[0] if alpha == "1/n" else float(alpha)
    obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
    f_star = reference_optimum(obj, X, y).f_star
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    for spec in variants:
        params = {"local_solver": "newton"}
        for kv in spec.split():
            key, _, val = kv.partition("=")
            if key.isupper():
                setattr(_cocoa if hasattr(_cocoa, key) else _cocoa_newton, key, float(val))
            else:
                params[key] = ast.literal_eval(val)
        run(X[:2000], y[:2000], k, params, obj, f_star, alpha, 3, False)  # numba compiles
        print(f"{name} alpha {alpha:g} K={k} {spec or 'default'}", flush=True)
        hit = run(X, y, k, params, obj, f_star, alpha,
                  int(os.environ.get("NEWTON_EXCHANGES_MAX", 12)))
        print(f"  1e-6 at exchange {hit[0] if hit else '-'}, busiest CPU "
              f"{1e3 * hit[1]:.1f} ms" if hit else "  1e-6 not reached", flush=True)


if __name__ == "__main__":
    main()
