"""asip-cocoa's Newton local solver while a partition is silent (the paper's straggler), in
process: peers not heard from are modelled by rescaling the rows heard from, so every
partition converges to one point -- the optimum on the rows heard from -- where modelling
them by each partition itself leaves one fixed point per partition; a round waits for news
from every peer heard from lately (lockstep among the active peers: a silent one drops out of
the wait, and rejoins it when it speaks) or, with a fraction `min_news`, from peers holding that
share of the other rows (or until overdue); the CSR Hessian kernel equals scipy's product."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _sim import Msg, simulate, split_rows

from asip.algorithms import Objective, get_loss, get_penalty, make_logistic, reference_optimum
from asip.algorithms import _kernels as K
from asip.algorithms._base import local_data, make_problem
from asip.algorithms._cocoa import _newton_due
from asip.algorithms._cocoa_newton import LocalNewton
from asip.algorithms._solvers import get_algorithm

ALPHA = 1e-3


def _sparse_logistic(n=1200, d=12, parts=6, seed=4):
    ds = make_logistic(n, d, random_state=seed)
    X = np.asarray(ds.X, dtype=np.float64).copy()
    X[np.random.default_rng(seed).random(X.shape) < 0.5] = 0.0
    X = sp.csr_matrix(X)
    return X, ds.y, split_rows(X, ds.y, parts)


@pytest.mark.parametrize("missing", ["rescale", "self"])
def test_silent_partition_rescaled_peers_share_one_fixed_point(missing):
    X, y, parts = _sparse_logistic()
    problem = make_problem(K.LOGISTIC, K.L2, ALPHA, False, parts)
    obj = Objective(get_loss("log_loss"), get_penalty("l2", ALPHA), False)
    cut = parts[0][0].shape[0]
    # the optimum on the rows heard from (alpha unchanged): what "rescale" converges to
    w_rest = reference_optimum(obj, X[cut:].toarray(), y[cut:], cache=False).w
    _, snaps, rounds, _ = simulate(
        "asip-cocoa", problem, parts,
        {"tol": 0.0, "seed": 0, "local_solver": "newton", "missing_peers": missing},
        max_rounds=25, round_time=1e-3, silent={0: (1, 10**6)})
    xs = np.array([s["x"] for s in snaps[1:]])
    spread = np.abs(xs - xs.mean(axis=0)).max() / np.abs(w_rest).max()
    if missing == "rescale":
        assert spread <= 1e-9
        np.testing.assert_allclose(xs, np.broadcast_to(w_rest, xs.shape), rtol=0,
                                   atol=1e-7 * np.abs(w_rest).max())
    else:  # each partition's own rows stand in for the silent one: one fixed point each
        assert spread > 1e-4


def test_a_round_waits_for_half_the_other_rows_or_until_overdue():
    X, y, parts = _sparse_logistic(parts=5)
    problem = make_problem(K.LOGISTIC, K.L2, ALPHA, False, parts)
    algo = get_algorithm("asip-cocoa")
    params = algo.merge({"local_solver": "newton", "min_news": 0.5})
    data = local_data(*parts[0], problem, 0)
    state = algo.init(problem, data, params)
    clock = state.clock
    assert _newton_due(state, data, 0.0)  # the first round
    clock.update(round_at=1.0, round=0.01)
    assert not _newton_due(state, data, 1.39)  # no news: wait 4 active windows (0.1 s each)
    assert _newton_due(state, data, 1.41)  # ... then a round anyway (liveness)
    clock["news"] = {1}  # a quarter of the other rows
    assert not _newton_due(state, data, 1.01)
    assert _newton_due(state, data, 1.05)  # overdue: 4x its round, at least 20 ms
    clock["news"] = {1, 2}  # half of them
    assert _newton_due(state, data, 1.0)
    with pytest.raises(ValueError, match="min_news must be"):
        simulate("asip-cocoa", problem, parts, {"min_news": 1.5}, max_rounds=1)
    with pytest.raises(ValueError, match="missing_peers must be"):
        simulate("asip-cocoa", problem, parts, {"missing_peers": "zero"}, max_rounds=1)


def test_a_round_waits_for_every_active_peer_and_not_for_a_silent_one():
    # partition 1 of 4; partition 0 is the straggler (silent at first), 3 goes silent later
    X, y, parts = _sparse_logistic(parts=4)
    problem = make_problem(K.LOGISTIC, K.L2, ALPHA, False, parts)
    algo = get_algorithm("asip-cocoa")
    # cert_period 0: the leader's first certificate round opens at its first round, not
    # once it heard every peer (3 stays silent here)
    params = algo.merge({"local_solver": "newton", "seed": 0, "cert_period": 0.0})
    assert params["min_news"] is None  # the default gate
    datas = [local_data(*part, problem, k) for k, part in enumerate(parts)]
    states = [algo.init(problem, d, params) for d in datas]

    sent, seen = {k: [] for k in range(4)}, {}

    def step(k, now, senders=()):
        """Partition k steps at ``now`` with what ``senders`` pushed to it since; its rounds."""
        inbox = []
        for j in senders:
            inbox += [Msg(j, 0, pl, now) for to, pl in sent[j][seen.get((j, k), 0):]
                      if to in (None, k)]
            seen[j, k] = len(sent[j])
        out = algo.local_step(states[k], datas[k], inbox, now)
        states[k] = out.state
        states[k].clock["round"] = 1e-3  # the active window is ACTIVE_MIN (0.1 s), whatever the load
        sent[k] += [(o.to, o.payload) for o in out.outbox]
        return states[k].clock.get("rounds", (0,))[0]

    for k in (1, 2, 3):
        assert step(k, 0.0) == 1  # the first round: due at once
    assert step(1, 0.01, (2, 3)) == 2  # news from every peer heard from (0 never spoke)
    for k in (2, 3):
        assert step(k, 0.01, {1, 2, 3} - {k}) == 2
    assert step(1, 0.02, (2,)) == 2  # 3 spoke 10 ms ago and has not moved since: wait for it
    assert step(1, 0.08) == 2
    assert step(1, 0.12) == 3  # 3 silent for 0.11 s > 0.1 s: out of the wait set
    assert step(0, 0.12) == 1  # the straggler wakes: its first round
    assert step(2, 0.12, (1,)) == 3
    assert step(1, 0.13, (0, 2)) == 4  # 0's and 2's news, 3 silent: due; 0's answer with it
    assert any("lver" in pl for _, pl in sent[1]), "0's certificate request went unanswered"
    assert step(1, 0.131) == 4
    assert step(0, 0.13, (1, 2)) == 2
    assert step(2, 0.13, (0, 1)) == 4  # due: the round first, its answer with the push
    assert step(2, 0.132) == 4
    assert step(1, 0.14, (2,)) == 4  # 0 spoke 10 ms ago: back in the wait set
    assert step(1, 0.15, (0,)) == 5
    clock = states[1].clock  # 2 moved; 0 speaks (re-pushes) without moving: overdue at last
    clock["news"], clock["heard"][0] = {2}, 0.34
    assert not _newton_due(states[1], datas[1], 0.345)
    assert _newton_due(states[1], datas[1], 0.355)  # twice the window after its round
    clock["news"].clear()
    assert step(1, 0.54) == 5  # no news: no round for 4 active windows (0.4 s)...
    assert step(1, 0.56) == 6  # ... then one anyway


@pytest.mark.parametrize("min_news", [None, 0.5])
def test_without_any_news_a_round_runs_anyway_after_quiet_windows(min_news):
    """Liveness: every push lost, so no partition ever hears a moved total (as when all wait
    on each other at a fixed point short of ``tol``). A round still runs `QUIET_WINDOWS`
    active windows after the last (here 4 x `ACTIVE_MIN` = 0.4 s): at 0.01, 0.41 and 0.81 s
    of a 1 s fit -- where the first round was the only one, and the fit idled to max_time."""
    X, y, parts = _sparse_logistic(parts=2)
    problem = make_problem(K.LOGISTIC, K.L2, ALPHA, False, parts)
    _, snaps, _, done = simulate(
        "asip-cocoa", problem, parts,
        {"tol": 0.0, "seed": 0, "local_solver": "newton", "min_news": min_news},
        max_time=1.0, round_time=0.01, drop=1.0)
    assert not done
    assert [s["rounds"] for s in snaps] == [3, 3]


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_csr_hessian_kernel_matches_scipy(fit_intercept):
    X, y, _ = _sparse_logistic(n=300)
    d = X.shape[1]
    p = d + int(fit_intercept)
    newton = LocalNewton((X.data, X.indices, X.indptr), y, K.LOGISTIC, fit_intercept, p,
                         1000, ALPHA, 10, 0)
    m = X @ np.linspace(-1, 1, d)
    H = newton._hessian(m)
    s = 1.0 / (1.0 + np.exp(-y * m))
    c = s * (1 - s) / 1000
    Xt = np.hstack([X.toarray(), np.ones((300, 1))]) if fit_intercept else X.toarray()
    np.testing.assert_allclose(H, Xt.T @ (Xt * c[:, None]), rtol=1e-12, atol=1e-15)
