"""``lbfgs``: distributed L-BFGS on the all-reduced gradient, in one process (`_sim`): it
reaches scipy's optimum with a certified stop in a handful of data passes (far fewer than
``gd``), through dropped messages and a restarted operator, and refuses what it cannot solve.
The cluster run is in test_convergence_table."""

from __future__ import annotations

import numpy as np
import pytest
from _sim import simulate, split_rows

from asip.algorithms import (Objective, get_loss, get_penalty, make_logistic,
                             make_sparse_logistic, reference_optimum, relative_suboptimality)
from asip.algorithms import _kernels as K
from asip.algorithms import _lbfgs as L
from asip.algorithms._base import make_problem

CODES = {"log_loss": K.LOGISTIC, "squared_error": K.SQUARED}


def _case(loss, fit_intercept, alpha=1e-3):
    ds = make_logistic(3000, 15, random_state=2)
    parts = split_rows(ds.X, ds.y, 3)
    obj = Objective(get_loss(loss), get_penalty("l2", alpha), fit_intercept=fit_intercept)
    return ds, parts, obj, reference_optimum(obj, ds.X, ds.y), make_problem(
        CODES[loss], K.L2, alpha, fit_intercept, parts)


@pytest.mark.parametrize("fault", [{}, {"drop": 0.2}, {"restart": {1: 6}}])
@pytest.mark.parametrize("loss, fit_intercept", [("log_loss", False), ("log_loss", True),
                                                 ("squared_error", True)])
def test_certified_optimum_through_drops_and_a_restart(loss, fit_intercept, fault):
    ds, parts, obj, ref, pb = _case(loss, fit_intercept)
    w, snaps, _, done = simulate("lbfgs", pb, parts, {"tol": 1e-9}, max_time=20, **fault)
    assert done
    rel = relative_suboptimality(obj.value(w, ds.X, ds.y), ref.f_star)
    assert rel <= 1e-8, rel
    latest = max((s for s in snaps if s is not None), key=lambda s: s["k"])
    assert latest["rel_gap"] <= 1e-9  # the model's certificate (a peer may be a round behind)


def test_fewer_passes_than_gd_on_sparse_logistic():
    """Rounds are data passes: lbfgs certifies 1e-3 in a few, gd's backtracking needs ~5x."""
    ds = make_sparse_logistic(20_000, 5000, nnz_per_row=10, random_state=0)
    parts = split_rows(ds.X, ds.y, 2)
    alpha = 1.0 / 20_000
    pb = make_problem(K.LOGISTIC, K.L2, alpha, False, parts)
    obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha))
    ref = reference_optimum(obj, ds.X, ds.y)
    passes = {}
    for solver in ("lbfgs", "gd"):
        w, snaps, _, done = simulate(solver, pb, parts, {"tol": 1e-3}, max_time=20)
        assert done and relative_suboptimality(obj.value(w, ds.X, ds.y), ref.f_star) <= 1e-3
        passes[solver] = max(s["k"] for s in snaps)
    assert passes["lbfgs"] * 3 <= passes["gd"], passes


def test_two_loop_satisfies_the_secant_equation():
    """The L-BFGS inverse-Hessian estimate maps the newest ``y`` to its ``s`` (``H y = s``),
    and without pairs the direction is steepest descent."""
    rng = np.random.default_rng(0)
    M = rng.standard_normal((5, 5))
    A = M @ M.T + 5 * np.eye(5)
    S = [rng.standard_normal(5) for _ in range(4)]
    Y = [A @ s for s in S]
    np.testing.assert_allclose(L.two_loop(Y[-1], S, Y), -S[-1], rtol=1e-10)
    np.testing.assert_array_equal(L.two_loop(np.ones(5), [], []), -np.ones(5))


@pytest.mark.parametrize("loss, penalty", [("hinge", "l2"), ("log_loss", "l1")])
def test_refuses_what_it_cannot_solve(loss, penalty):
    code = {"hinge": K.HINGE, "log_loss": K.LOGISTIC}[loss]
    ds = make_logistic(100, 3, random_state=0)
    pb = make_problem(code, {"l1": K.L1, "l2": K.L2}[penalty], 1e-3, False,
                      split_rows(ds.X, ds.y, 2))
    with pytest.raises(ValueError, match="solver 'lbfgs' needs a smooth loss"):
        L.validate(pb, L.ALGORITHM.merge(None))


def test_warm_up_reads_one_row_and_changes_nothing():
    """The operator's warm-up loads the gradient kernel on one row (not a whole pass)."""
    ds = make_sparse_logistic(500, 50, nnz_per_row=5, random_state=0)
    parts = split_rows(ds.X, ds.y, 2)
    pb = make_problem(K.LOGISTIC, K.L2, 1e-3, True, parts)
    from asip.algorithms._base import local_data

    for sw in (None, np.ones(250)):
        data = local_data(*parts[0], pb, 0, sw=sw)
        state = L.init(pb, data, L.ALGORITHM.merge(None))
        L.ALGORITHM.warm_up(state, data)
        assert state.mem["k"] == 0 and state.mem["own"] is None
        np.testing.assert_array_equal(state.mem["point"], np.zeros(pb.p))


def test_warm_up_also_runs_the_certificate_kernels_on_one_row(monkeypatch):
    """The warm-up runs a round's certificate work too (the intercept's side sums, the local
    Hessian where its certificate applies), on one row: on a fresh install their kernels
    compiled inside the run."""
    from asip.algorithms import _newton_cert as NC
    from asip.algorithms import _primal_cert as PC
    from asip.algorithms._base import local_data

    rows = {"side": [], "hessian": []}
    side, hessian = PC.side_parts, NC.local_hessian
    monkeypatch.setattr(PC, "side_parts", lambda pb, d, w: rows["side"].append(d.n)
                        or side(pb, d, w))
    monkeypatch.setattr(NC, "local_hessian", lambda pb, X, y, sw, w, **kw:
                        rows["hessian"].append(len(y)) or hessian(pb, X, y, sw, w, **kw))
    ds = make_logistic(500, 8, random_state=0)
    parts = split_rows(ds.X, ds.y, 2)
    pb = make_problem(K.LOGISTIC, K.L2, 1e-3, True, parts)
    data = local_data(*parts[0], pb, 0)
    state = L.init(pb, data, L.ALGORITHM.merge(None))
    L.ALGORITHM.warm_up(state, data)
    assert rows == {"side": [1], "hessian": [1]}, rows
    assert state.mem["k"] == 0 and not state.mem.get("want_h") and not state.grad.any()


@pytest.mark.parametrize("loss, fit_intercept, weighted", [("log_loss", False, False),
                                                           ("log_loss", True, True),
                                                           ("squared_error", True, False)])
def test_snapshot_carries_the_objective_of_its_own_model(loss, fit_intercept, weighted):
    """The certified snapshot's ``objective_w`` is the objective at its ``w`` (the fit's trace
    takes it instead of another pass over the data), row weights included."""
    from asip.algorithms._model import evaluate_trace

    ds, parts, obj, _, pb = _case(loss, fit_intercept)
    sw = np.random.default_rng(3).uniform(0.2, 1.8, size=len(ds.y)) if weighted else None
    if weighted:
        sw *= len(sw) / sw.sum()  # as the estimators normalize them
    bounds = np.cumsum([0] + [len(p[1]) for p in parts])
    weights = None if sw is None else [sw[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    w, snaps, _, done = simulate("lbfgs", pb, parts, {"tol": 1e-6}, max_time=20,
                                 weights=weights)
    assert done
    latest = max((s for s in snaps if s is not None), key=lambda s: s["k"])
    assert "objective_w" in latest and np.array_equal(latest["w"], w)
    want = evaluate_trace(obj, [(0.0, w)], ds.X, ds.y, sw)[0, 1]
    np.testing.assert_allclose(latest["objective_w"], want, rtol=1e-12)


def test_a_rounds_first_push_is_lean_and_a_repush_carries_the_rest():
    """A round's first push carries what the reduction reads (no point, no previous round:
    at 10^5 features 0.8 instead of 3.2 MB); a re-push, after waiting at least twice the
    contribution's own time, carries both, and a restarted operator that hears no answer to
    its hello adopts only from it, once ``rejoin_wait`` is over."""
    from asip.algorithms._base import local_data

    ds, parts, _, _, pb = _case("log_loss", False)
    params = L.ALGORITHM.merge(None)
    datas = [local_data(*parts[j], pb, j) for j in range(3)]
    states = [L.init(pb, d, params) for d in datas]
    first = [L.local_step(s, d, [], 0.0).outbox[0].payload for s, d in zip(states, datas)]
    assert "c_x" not in first[0] and "c_g" in first[0] and not first[0]["has_prev"]
    required, optional = L.schema(pb)
    assert set(required) <= set(first[0]) and "c_x" in optional
    states[0].barrier.contribute_s = 0.5  # a slow contribution: no re-push before 1 s
    assert L.local_step(states[0], datas[0], [], 0.6).outbox == ()
    again = L.local_step(states[0], datas[0], [], 1.1).outbox[0].payload
    np.testing.assert_array_equal(again["c_x"], np.zeros(pb.p))
    np.testing.assert_array_equal(again["c_g"], first[0]["c_g"])
    # a restarted partition 2 waits for a point, and adopts the re-pushed one
    from _sim import Msg

    fresh = L.init(pb, local_data(*parts[2], pb, 2, incarnation=1), params)
    lean = [Msg(j, 0, first[j], 0.0) for j in (1, 0)]  # the first to try is lean
    out = L.local_step(fresh, datas[2], lean, 10.0)
    assert fresh.mem["phase"] == "rejoin"
    assert [o.payload.get("hello") for o in out.outbox] == [True]  # it asks, nothing more
    L.local_step(fresh, datas[2], [Msg(1, 0, first[1], 0.0), Msg(0, 0, again, 0.0)], 10.1)
    assert fresh.mem["phase"] == "rejoin"  # it waits for its hello's answers
    L.local_step(fresh, datas[2], [], 10.0 + params["rejoin_wait"])
    assert fresh.mem["phase"] == "run" and fresh.mem["k"] == 0


@pytest.mark.parametrize("solver, extra_rounds", [("lbfgs", 1), ("gd", 1)])
def test_a_restarted_operator_rejoins_without_a_stall_or_a_fresh_memory(solver, extra_rounds):
    """A restarted operator says hello and its peers answer at once (no wait of
    ``resend_after`` for a re-push: 10 rounds at 0.01 s a round), with lbfgs's memory
    and line search, so no operator starts its memory afresh (it took 21 rounds instead
    of 7). Rounds, not seconds: the clock is simulated."""
    ds, parts, _, _, pb = _case("log_loss", False)
    parts = parts[:2]
    pb = make_problem(K.LOGISTIC, K.L2, 1e-3, False, parts)
    runs = {}
    for name, fault in (("clean", {}), ("restart", {"restart": {1: 6}})):
        _, snaps, rounds, done = simulate(solver, pb, parts, {"tol": 1e-9}, max_time=100,
                                          round_time=0.01, **fault)
        assert done
        runs[name] = rounds, max(s["k"] for s in snaps)
    assert runs["restart"][0] <= runs["clean"][0] + extra_rounds, runs  # stalls
    assert runs["restart"][1] <= runs["clean"][1], runs  # algorithm rounds


def test_the_hello_and_its_answer_fit_the_schema_and_hand_over_the_memory():
    """The hello passes the schema's checks (placeholders), a peer answers it with a full
    push to that operator alone, and the rejoiner adopts the very state the peer holds."""
    from _sim import Msg

    from asip._channel import MessageSchema
    from asip.algorithms._base import local_data

    for fit_intercept in (False, True):
        _, parts, _, _, pb = _case("log_loss", fit_intercept)
        params = L.ALGORITHM.merge({"tol": 1e-14})
        datas = [local_data(*parts[j], pb, j) for j in range(3)]
        states = [L.init(pb, d, params) for d in datas]
        boxes = [[] for _ in range(3)]
        for _ in range(8):  # a few rounds: the peers hold a memory
            for j in range(3):
                out = L.local_step(states[j], datas[j], boxes[j], 0.0)
                assert not out.done
                boxes[j] = []
                for o in out.outbox:
                    for i in range(3):
                        if i != j:
                            boxes[i].append(Msg(j, 0, o.payload, 0.0))
        assert states[0].mem["S"]
        check = MessageSchema(*L.schema(pb))
        fresh = L.init(pb, local_data(*parts[2], pb, 2, incarnation=1), params)
        hello = L.local_step(fresh, datas[2], [], 0.0).outbox
        assert len(hello) == 1 and hello[0].payload["hello"] is True
        assert check.violation(hello[0].payload) is None
        answers = {}
        for j in (0, 1):
            out = L.local_step(states[j], datas[j], [Msg(2, 1, hello[0].payload, 0.0)], 0.0)
            mine = [o for o in out.outbox if o.to == 2]
            assert len(mine) == 1 and "r_S" in mine[0].payload and "c_x" in mine[0].payload
            assert check.violation(mine[0].payload) is None
            answers[j] = mine[0].payload
        L.local_step(fresh, datas[2], [Msg(j, 0, answers[j], 0.0) for j in (0, 1)], 0.01)
        low = min((0, 1), key=lambda j: answers[j]["k"])  # it joins the lowest round
        peer = states[low].mem
        assert fresh.mem["phase"] == "run" and fresh.mem["k"] == peer["k"]
        for key in ("point", "base", "gbase", "d"):
            np.testing.assert_array_equal(fresh.mem[key], peer[key], err_msg=key)
        assert fresh.mem["t"] == peer["t"] and not fresh.mem["fresh"]
        np.testing.assert_array_equal(fresh.mem["S"], peer["S"])
        np.testing.assert_array_equal(fresh.mem["Y"], peer["Y"])


def _rounds_then_a_rejoiner(n_rounds: int = 8):
    """Three lbfgs operators after ``n_rounds`` all-reduced rounds (a memory held), and a
    restarted partition 2 that has said hello: (problem, datas, states, fresh, hello)."""
    from _sim import Msg

    from asip.algorithms._base import local_data

    _, parts, _, _, pb = _case("log_loss", False)
    params = L.ALGORITHM.merge({"tol": 1e-14})
    datas = [local_data(*parts[j], pb, j) for j in range(3)]
    states = [L.init(pb, d, params) for d in datas]
    boxes = [[] for _ in range(3)]
    for _ in range(n_rounds):
        for j in range(3):
            out = L.local_step(states[j], datas[j], boxes[j], 0.0)
            boxes[j] = []
            for o in out.outbox:
                boxes[(j + 1) % 3].append(Msg(j, 0, o.payload, 0.0))
                boxes[(j + 2) % 3].append(Msg(j, 0, o.payload, 0.0))
    fresh = L.init(pb, local_data(*parts[2], pb, 2, incarnation=1), params)
    hello = L.local_step(fresh, datas[2], [], 0.0).outbox[0].payload
    return pb, datas, states, fresh, hello


def test_a_rejoiner_joins_from_the_answer_not_from_a_plain_repush():
    """A peer waiting out the loss re-pushes its round to every partition; a re-push that
    reaches the restarted operator before the answer to its hello, or right behind it in
    the same step, has no memory: joining from it started every operator's memory afresh
    (one kill in three on a real cluster). It joins from the answers, with the memory."""
    from _sim import Msg

    _, datas, states, fresh, hello = _rounds_then_a_rejoiner()
    answers, repushes = {}, {}
    for j in (0, 1):
        states[j].barrier.contribute_s = 0.0
        out = L.local_step(states[j], datas[j], [Msg(2, 1, hello, 0.0)], 1.0)
        answers[j] = next(o.payload for o in out.outbox if o.to == 2)
        repushes[j] = next(o.payload for o in out.outbox if o.to is None)  # same step
        assert "r_S" not in repushes[j] and "c_x" in repushes[j]
    L.local_step(fresh, datas[2], [Msg(0, 0, repushes[0], 0.0), Msg(1, 0, repushes[1], 0.0)],
                 0.01)
    assert fresh.mem["phase"] == "rejoin"  # a re-push first: it waits for the answers
    L.local_step(fresh, datas[2], [Msg(j, 0, p, 0.0) for j in (0, 1)
                                   for p in (answers[j], repushes[j])], 0.02)
    peer = states[min((0, 1), key=lambda j: answers[j]["k"])].mem
    assert fresh.mem["phase"] == "run" and peer["S"]
    np.testing.assert_array_equal(fresh.mem["S"], peer["S"])
    np.testing.assert_array_equal(fresh.mem["Y"], peer["Y"])


def test_a_lost_hello_is_said_again_less_and_less_often():
    """Each answer to a hello may be megabytes (a wide model and its memory): a restarted
    operator that hears nothing repeats it after ``resend_after``, then twice that, ..."""
    from asip.algorithms._base import local_data

    _, parts, _, _, pb = _case("log_loss", False)
    params = L.ALGORITHM.merge(None)  # resend_after 0.1, rejoin_wait 0.5
    fresh = L.init(pb, local_data(*parts[2], pb, 2, incarnation=1), params)
    said = [i / 100 for i in range(45)
            if L.local_step(fresh, local_data(*parts[2], pb, 2), [], i / 100).outbox]
    np.testing.assert_allclose(said, [0.0, 0.1, 0.3], atol=0.011)  # gaps 0.1, 0.2
