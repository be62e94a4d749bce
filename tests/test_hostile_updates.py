"""Hostile input at the algorithm level: every solver declares its message schema.

`SolverOperator` hands each algorithm's ``schema(problem)`` to ``ctx.expect``, so
the runtime rejects (and counts as ``rejected``) a peer's message with a missing
or unexpected key, the wrong dtype or shape, or a NaN/inf, before it reaches
``local_step``. Checked three ways:

* honest messages -- every kind each runtime solver sends, restarts included --
  pass their schema after a trip through the wire format (a schema that rejected
  them would silently cut the solver off from its peers);
* the poisoned copies are really harmful without the schema (NaN model, or a
  crash), and every one of them breaks the schema;
* on the cluster, partition 0 of a running ASIP-SGD / ASIP-ADMM stage pushes
  ~15 poisoned copies every 5th update (`fault_operators.PoisoningSolver`): no
  operator crashes or restarts, the receiver rejects exactly the poison and
  nothing else, and the fit converges as if nothing had happened.
"""

from __future__ import annotations

import time

import dask
import numpy as np
import pytest

import asip
from asip._channel import MessageSchema
from asip._wire import Limits, Message, decode_message, encode_message, local_item
from asip.algorithms import (Objective, get_algorithm, get_loss, get_penalty, make_logistic,
                             reference_optimum, relative_suboptimality)
from asip.algorithms import _kernels as K
from asip.algorithms._base import local_data, make_problem
from asip.algorithms._solvers import RUNTIME_SOLVERS
from fault_operators import PoisoningSolver, poisoned_variants
from test_stage import assert_clean

LIMITS = Limits(1 << 26, 256, 1 << 16)
ALPHA = 1e-2


def split(X, y, n):
    bounds = np.linspace(0, X.shape[0], n + 1).astype(int)
    return [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def wire(payload: dict, sender: int = 0, incarnation: int = 0) -> Message:
    """A payload as a receiver gets it: encoded, then decoded and validated."""
    enc = encode_message(payload, run_id="r", sender=sender, incarnation=incarnation, seq=0,
                         limits=LIMITS)
    return decode_message(local_item(enc), run_id="r", n_partitions=8, limits=LIMITS)


def honest_traffic(solver: str, n_parts: int = 3, rounds: int = 40, restart_at: int = 15):
    """Every payload a solver pushes in a round-robin run with partition 1 restarted midway."""
    ds = make_logistic(600, 6, random_state=0)
    parts = split(ds.X, ds.y, n_parts)
    # lp-hinge solves hinge-l1 only (the LP); every other solver takes logistic-l2
    loss, penalty = (K.HINGE, K.L1) if solver == "lp-hinge" else (K.LOGISTIC, K.L2)
    problem = make_problem(loss, penalty, ALPHA, False, parts)
    algo = get_algorithm(solver)
    params = algo.merge({"push_period": 0.0} if "push_period" in algo.defaults else {})
    if "rejoin_wait" in params:
        params["rejoin_wait"] = 0.05
    inc = [0] * n_parts
    datas = [local_data(Xb, yb, problem, i) for i, (Xb, yb) in enumerate(parts)]
    states = [algo.init(problem, d, params) for d in datas]
    boxes: list[list] = [[] for _ in parts]
    sent = []
    t0 = time.monotonic()
    for r in range(rounds):
        for i, (Xb, yb) in enumerate(parts):
            if i == 1 and r == restart_at:
                inc[i] += 1
                datas[i] = local_data(Xb, yb, problem, i, inc[i])
                states[i] = algo.init(problem, datas[i], params)
            inbox, boxes[i] = boxes[i], []
            out = algo.local_step(states[i], datas[i], inbox, time.monotonic() - t0)
            states[i] = out.state
            for o in out.outbox:
                sent.append(o.payload)
                for j in range(n_parts):
                    if j != i and (o.to is None or o.to == j):
                        boxes[j].append(wire(o.payload, i, inc[i]))
            if out.done:
                return problem, sent
        time.sleep(0.002)
    return problem, sent


@pytest.mark.parametrize("solver", sorted(RUNTIME_SOLVERS))
def test_every_honest_message_fits_its_schema_and_every_poisoned_copy_breaks_it(solver):
    problem, sent = honest_traffic(solver)
    algo = get_algorithm(solver)
    assert algo.schema is not None, f"{solver} declares no message schema"
    schema = MessageSchema(*algo.schema(problem))
    assert sent, f"{solver} sent nothing"
    kinds = set()
    for payload in sent:
        received = wire(payload).payload
        assert schema.violation(received) is None, (payload, schema.violation(received))
        kinds.add(tuple(sorted(payload)))
        for bad in poisoned_variants(payload):
            dropped = set(payload) - set(bad)
            if not (set(bad) - set(payload)) and dropped and not dropped & set(schema.required):
                continue  # dropping an optional key leaves another valid message kind
            assert schema.violation(wire(bad).payload) is not None, (solver, bad)
    print(f"\n{solver}: {len(sent)} messages of {len(kinds)} kinds fit the schema")


@pytest.mark.parametrize("solver", ["asip-sgd", "asip-admm"])
def test_without_the_schema_the_poison_would_wreck_the_model(solver):
    """The control: fed straight to ``local_step``, the NaN/inf copies poison the model and
    the misshapen ones crash the operator -- which is what the schema prevents."""
    problem, sent = honest_traffic(solver, n_parts=2, rounds=6, restart_at=-1)
    algo = get_algorithm(solver)
    ds = make_logistic(600, 6, random_state=0)
    Xb, yb = split(ds.X, ds.y, 2)[1]
    honest = next(p for p in sent if not p.get("echo"))
    poisoned = crashed = ignored = 0
    for bad in poisoned_variants(honest):
        data = local_data(Xb, yb, problem, 1)
        state = algo.init(problem, data, algo.merge({}))
        try:
            with np.errstate(all="ignore"):
                for k in range(3):
                    state = algo.local_step(state, data, [wire(bad, 0)] if k == 0 else [],
                                            0.01 * k).state
                w = algo.combine(problem, [None, algo.snapshot(state)])
        except (ValueError, TypeError, IndexError):
            crashed += 1
            continue
        poisoned += not np.all(np.isfinite(w))
        # asip-sgd's sparse exchange drops a misshapen vector itself (counted as malformed)
        sub = getattr(state, "sub", None)
        ignored += sub is not None and sub.counts["malformed"] > 0
    print(f"\n{solver}: unchecked, {poisoned} poisoned copies made the model NaN/inf, "
          f"{crashed} crashed the step and {ignored} were dropped as malformed")
    assert poisoned >= 3 and crashed + ignored >= 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("solver", ["asip-sgd", "asip-admm"])
def test_poisoned_updates_are_rejected_counted_and_harmless(client, solver):
    ds = make_logistic(4000, 20, random_state=1)
    parts = split(ds.X, ds.y, 2)
    problem = make_problem(K.LOGISTIC, K.L2, ALPHA, False, parts)
    data = [dask.delayed(tuple)([Xb, yb]) for Xb, yb in parts]
    # poisoning stops after ~120 copies and the run goes on honestly, so no poisoned copy is
    # still in flight at the stop (a load-dependent count when the poison ran to the end)
    # tol=0: the run goes on to max_time (asip-admm's certified stop would end it early)
    params = {"seed": 0, **({"tol": 0.0} if "tol" in get_algorithm(solver).defaults else {})}
    op = PoisoningSolver(solver, problem, params, every=5, limit=120)
    res = asip.Stage(op, data, client=client, max_time=2.5).run()
    assert res.stopped_by == "max_time"
    assert not res.restarts, "a poisoned message crashed an operator"
    poisoned = res.results[0]["poisoned"]
    ops = res.stats["operators"]
    print(f"\n{solver}: {poisoned} poisoned copies pushed, {ops[1]['rejected']} rejected, "
          f"{ops[1]['delivered']} honest delivered")
    assert poisoned >= 100
    # the receiver rejected the poison (all of it: it ended well before the stop) and only that
    assert 0.9 * poisoned <= ops[1]["rejected"] <= poisoned
    assert ops[1]["delivered"] > 10 and ops[0]["rejected"] == 0 and ops[1]["malformed"] == 0
    w = get_algorithm(solver).combine(problem, res.results)
    assert np.all(np.isfinite(w))
    objective = Objective(get_loss("log_loss"), get_penalty("l2", ALPHA))
    r = relative_suboptimality(objective.value(w, ds.X, ds.y),
                               reference_optimum(objective, ds.X, ds.y).f_star)
    print(f"{solver} with poisoned peers: relative suboptimality {r:.1e} (bound 1e-04)")
    assert r < 1e-4, f"{solver} with poisoned peers: relative suboptimality {r:.2e}"
    assert_clean(client)
