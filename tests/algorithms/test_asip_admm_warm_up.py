"""asip-admm's kernel warm-up: besides the default one step on a copy, the certificate's parts
on one row before the gang's clock (only a certificate round in the run reached them: on a
fresh install they compiled there, 3 s of one worker's 4 s run)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from _sim import split_rows

from asip.algorithms import _asip_admm as A
from asip.algorithms import _primal_cert as C
from asip.algorithms import make_logistic, make_sparse_logistic
from asip.algorithms import _kernels as K
from asip.algorithms._base import local_data, make_problem


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("loss", ["log_loss", "hinge"])
def test_warm_up_runs_the_certificate_parts_on_one_row_and_changes_nothing(
        monkeypatch, loss, sparse):
    rows = []
    parts_at = C.parts_at
    monkeypatch.setattr(C, "parts_at", lambda pb, data, *a: rows.append(data.n)
                        or parts_at(pb, data, *a))
    ds = (make_sparse_logistic(400, 30, nnz_per_row=5, random_state=0) if sparse
          else make_logistic(400, 6, random_state=0))
    parts = split_rows(ds.X, ds.y, 2)
    code = {"log_loss": K.LOGISTIC, "hinge": K.HINGE}[loss]
    pb = make_problem(code, K.L2, 1e-3, True, parts)
    data = local_data(*parts[0], pb, 0)
    state = A.init(pb, data, A.ALGORITHM.merge(None))
    before = copy.deepcopy(state.mem)
    A.ALGORITHM.warm_up(state, data)
    assert rows == [1]
    assert state.mem.keys() == before.keys()
    for key, value in before.items():  # the step ran on a copy
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(state.mem[key], value)
        else:
            assert state.mem[key] == value, key
    assert not state.solver.dual.any()
