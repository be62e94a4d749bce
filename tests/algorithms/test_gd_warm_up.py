"""gd's kernel warm-up: a round's kernels on one row before the gang's clock, the reduce's
proximal step included (the default warm-up, a first `local_step`, waits for the peers and
never reached it: on a fresh install `prox_inplace` compiled inside the first run)."""

from __future__ import annotations

import numpy as np
import pytest
from _sim import split_rows

from asip.algorithms import _gd as G
from asip.algorithms import make_logistic, make_sparse_logistic
from asip.algorithms import _kernels as K
from asip.algorithms import _weights as W
from asip.algorithms._base import local_data, make_problem


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("loss", ["log_loss", "hinge"])
def test_warm_up_runs_the_gradient_on_one_row_and_the_prox_and_changes_nothing(
        monkeypatch, loss, sparse):
    calls = {"rows": [], "prox": 0}
    loss_grad, prox = W.loss_grad, K.prox_inplace
    monkeypatch.setattr(W, "loss_grad", lambda data, *a: calls["rows"].append(data.n)
                        or loss_grad(data, *a))

    def counted(*a):
        calls["prox"] += 1
        return prox(*a)

    monkeypatch.setattr(K, "prox_inplace", counted)
    ds = (make_sparse_logistic(400, 30, nnz_per_row=5, random_state=0) if sparse
          else make_logistic(400, 6, random_state=0))
    parts = split_rows(ds.X, ds.y, 2)
    code = {"log_loss": K.LOGISTIC, "hinge": K.HINGE}[loss]
    pb = make_problem(code, K.L2, 1e-3, True, parts)
    for sw in (None, np.ones(200)):
        data = local_data(*parts[0], pb, 0, sw=sw)
        state = G.init(pb, data, G.ALGORITHM.merge(None))
        calls["rows"], calls["prox"] = [], 0
        G.ALGORITHM.warm_up(state, data)
        assert calls == {"rows": [1], "prox": 1}, calls
        assert state.mem["k"] == 0 and state.mem["L"] == 0.0 and not state.grad.any()
        np.testing.assert_array_equal(state.mem["point"], np.zeros(pb.p))
        assert state.barrier.pushed_at == -float("inf")  # nothing went out
