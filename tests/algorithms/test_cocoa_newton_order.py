"""asip-cocoa's Newton: the order of a step's work. A due round runs before an owed
certificate answer (or the leader's close), which goes out with the round's push
(`_cocoa.NEWTON_ROUND_FIRST`).

Parallel lock-step (every partition steps on the pushes of the exchange before, as
`benchmarks/newton_exchanges.py`), 2 partitions of a small logistic problem."""

from __future__ import annotations

import numpy as np
from _sim import Msg, split_rows

from asip.algorithms import make_logistic
from asip.algorithms import _kernels as K
from asip.algorithms._base import local_data, make_problem
from asip.algorithms._solvers import get_algorithm


def _newton_pair(alpha=1e-4):
    ds = make_logistic(4000, 10, random_state=3)
    parts = split_rows(np.ascontiguousarray(ds.X), ds.y, 2)
    problem = make_problem(K.LOGISTIC, K.L2, alpha, False, parts)
    algo = get_algorithm("asip-cocoa")
    params = algo.merge({"local_solver": "newton", "tol": 1e-10, "seed": 0})
    datas = [local_data(X, y, problem, i) for i, (X, y) in enumerate(parts)]
    return algo, [algo.init(problem, d, params) for d in datas], datas


def _rounds(state) -> int:
    return state.clock.get("rounds", (0,))[0]


def _step(algo, states, datas, i, inbox, now):
    out = algo.local_step(states[i], datas[i], inbox, now)
    states[i] = out.state
    return [Msg(i, 0, o.payload, 0.0) for o in out.outbox], out.done


def test_a_due_round_runs_before_the_owed_answer_which_goes_out_with_its_push():
    algo, states, datas = _newton_pair()
    boxes, answered = [[], []], 0
    for ex in range(1, 9):
        now = 2e-3 * ex
        nxt = [[], []]
        for i in (0, 1):
            owes = i == 1 and any("ver" in m.payload for m in boxes[i])
            before = _rounds(states[i])
            out, done = _step(algo, states, datas, i, boxes[i], now)
            nxt[1 - i].extend(out)
            if owes:  # a certificate request and the leader's moved total: a round is due
                assert _rounds(states[i]) == before + 1, f"exchange {ex}: no round, only the answer"
                assert any("lver" in m.payload for m in out), f"exchange {ex}: the answer waited"
                answered += 1
            if done:
                break
        boxes = nxt
    assert answered >= 2
