"""The registry of solvers that run on the asip runtime, by the name users pass as ``solver=``."""

from __future__ import annotations

import logging

from ._base import Algorithm

__all__ = ["ASYNC_DRIVER_SOLVERS", "RUNTIME_SOLVERS", "SOLVERS", "get_algorithm"]

logger = logging.getLogger(__name__)


def _registry() -> dict[str, Algorithm]:
    from . import (_admm, _asip_admm, _asip_hogwild, _asip_sgd, _asip_svrg, _averaging, _cocoa,
                   _gd, _prox_newton, _saga)

    algos = [_asip_sgd.ALGORITHM, _asip_hogwild.ALGORITHM, _asip_admm.ALGORITHM, _gd.ALGORITHM,
             _admm.ALGORITHM, _averaging.ALGORITHM, _saga.ALGORITHM, _cocoa.ALGORITHM,
             _asip_svrg.ALGORITHM, _prox_newton.ALGORITHM]
    from ._lbfgs import ALGORITHM as lbfgs  # big smooth-l2 problems: fewest data passes
    algos.append(lbfgs)
    from ._lp_hinge import ALGORITHM as lp_hinge  # hinge-l1: the LP, by row/column generation
    algos.append(lp_hinge)
    return {a.name: a for a in algos}


RUNTIME_SOLVERS: dict[str, Algorithm] = _registry()
#: solvers that drive dask from the client instead of running as a stage
ASYNC_DRIVER_SOLVERS = ("admm-async", "admm-async-batched")
SOLVERS = tuple(sorted(RUNTIME_SOLVERS)) + ASYNC_DRIVER_SOLVERS


def get_algorithm(name: str) -> Algorithm:
    """The runtime algorithm called ``name``; raises ValueError listing the valid names."""
    try:
        return RUNTIME_SOLVERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown solver {name!r}; valid solvers are {list(SOLVERS)}") from None
