"""prox-newton's round-B messages carry only what the reduction reads, compactly (`_compact`).

Decoding must be exact (every operator reduces the same numbers), the working-set
Hessian travels as its upper triangle, and the wide-model fit stays certified.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp
from _sim import Msg

from asip._channel import MessageSchema
from asip._wire import Limits, decode_message, encode_message, local_item
from asip.algorithms import _compact as CM
from asip.algorithms import _kernels as K
from asip.algorithms import get_algorithm, make_logistic
from asip.algorithms._base import local_data, make_problem

pytestmark = pytest.mark.timeout(120)


def test_vectors_go_sparse_only_when_smaller_and_decode_exactly():
    rng = np.random.default_rng(0)
    base = rng.normal(size=50)
    v = base.copy()
    v[[3, 17, 40]] = rng.normal(size=3)
    f = CM.vector_fields("h", v, base)
    assert set(f) == {"h_idx", "h_val"} and f["h_idx"].dtype == np.int32
    assert np.array_equal(CM.vector_of(f, "h", 50, base), v)  # bit for bit
    dense = rng.normal(size=50)
    f = CM.vector_fields("h", dense)
    assert set(f) == {"h"} and np.array_equal(CM.vector_of(f, "h", 50), dense)
    assert CM.vector_of({}, "h", 50) is None
    empty = CM.vector_fields("h", np.zeros(7))
    assert np.array_equal(CM.vector_of(empty, "h", 7), np.zeros(7))


def test_symmetric_matrices_travel_as_their_upper_triangle():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(9, 6))
    H = A @ A.T
    H[np.abs(H) < 1.0] = 0.0  # some zeros: either form must decode the same
    f = CM.sym_fields("hs", H)
    packed = CM.packed_of(f, "hs", 9)
    assert packed.size == 9 * 10 // 2
    np.testing.assert_array_equal(CM.sym_of(packed, 9), np.triu(H) + np.triu(H, 1).T)
    two = CM.sym_of(packed + packed, 9)  # sums of packed triangles, as the reduction does
    np.testing.assert_array_equal(two, 2 * CM.sym_of(packed, 9))


@pytest.mark.parametrize("active_max", [0, 768])  # local directions only / working sets
def test_round_b_sends_no_dense_direction_in_working_set_rounds_and_stays_certified(active_max):
    ds = make_logistic(600, 60, n_zero=48, random_state=2)
    X = sp.csr_matrix(ds.X)
    parts = [(X[:350], ds.y[:350]), (X[350:], ds.y[350:])]
    problem = make_problem(K.LOGISTIC, K.L1, 1e-2, True, parts)
    algo = get_algorithm("prox-newton")
    params = algo.merge({"hessian": "local", "active_max": active_max, "tol": 1e-7})
    datas = [local_data(Xb, yb, problem, i) for i, (Xb, yb) in enumerate(parts)]
    states = [algo.init(problem, d, params) for d in datas]
    boxes: list = [[], []]
    sent, sent_b = [], []
    t0, done = time.monotonic(), False
    for _ in range(3000):
        for i in (0, 1):
            inbox, boxes[i] = boxes[i], []
            out = algo.local_step(states[i], datas[i], inbox, time.monotonic() - t0)
            states[i] = out.state
            for o in out.outbox:
                sent.append(o.payload)
                if o.payload["k"] % 3 == 1:
                    sent_b.append(o.payload)
                boxes[1 - i].append(Msg(i, 0, o.payload, time.time()))
            done = done or out.done
        if done:
            break
    assert done and states[0].mem["rel_gap"] <= 1e-7
    ws = [m for m in sent_b if "c_S" in m]
    local = [m for m in sent_b if "c_S" not in m]
    assert (ws and not local) if active_max else (local and not ws)
    for m in ws:
        s = len(m["c_S"])
        assert not any(key.startswith("c_dk") for key in m)  # no zero direction
        packed = CM.packed_of({k[2:]: v for k, v in m.items() if k.startswith("c_")}, "hs", s)
        assert packed.size == s * (s + 1) // 2
    for m in local:
        assert "c_dk" in m or "c_dk_idx" in m
    # every payload survives the wire format and fits the declared schema
    schema = MessageSchema(*algo.schema(problem))
    for m in sent:
        enc = encode_message(m, run_id="r", sender=0, incarnation=0, seq=0,
                             limits=Limits(1 << 26, 256, 1 << 16))
        got = decode_message(local_item(enc), run_id="r", n_partitions=2,
                             limits=Limits(1 << 26, 256, 1 << 16)).payload
        assert schema.violation(got) is None, schema.violation(got)
