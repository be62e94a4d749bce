"""``solver="auto"``: the one place that picks a solver for a loss, penalty and data shape.

`choose_solver` walks a preference list for the problem and returns the first
solver that is registered and can do what the fit needs (sample weights). The
lists put solvers with a certified stopping test (``uses_tol``) first, so that a
default ``fit()`` ends when ``tol`` is met and ``max_time`` is only a cap.
``"asip-cocoa"`` (CoCoA+ with a duality-gap stop) leads the hinge-l2 list and, on
sparse data, the smooth-l2 one; on dense smooth problems ``"gd"`` (backtracking,
gradient-norm stop) leads: measured on 2026-11-29, SDCA's rate there is set by
``max ||x||^2 / (alpha n)`` and gd certified a 1,000-row default fit in ~18 rounds where
asip-cocoa's gap was still 4e-3 after 10 s. With its Newton local solver and an
unpenalized intercept (same objective as gd's) asip-cocoa was re-measured the same day
(2 workers, load 7-12, certified ``fit()`` with defaults, 3 runs each): even with gd on
1,000 x 20 (0.2-0.8 s both), slower on 5,000 x 100 (0.9-1.2 s vs 0.7-0.9 s) and 20,000 x
100 (1.9-3.2 s vs 0.8-1.4 s; with ``newton_iter=2`` 1.0-1.5 s vs 0.6-0.85 s), so gd
stays first there. ``"asip-svrg"`` (asynchronous distributed
SVRG, certified stop) leads sparse smooth-l2: on a9a log_loss-l2 (alpha 1e-4, 2 workers,
2026-11-29, `benchmarks/time_to_target.py`) it reached 1e-3 in 2.5 s and 1e-6 in 5.2 s where
asip-cocoa took 8.3 s to 1e-3 and gd, admm, saga did not reach 1e-6 in 8 s; on the dense
synthetic set gd stays ahead (1e-6 in 0.5-1.3 s against asip-svrg's 1.3-1.8 s).
``"lbfgs"`` (synchronous distributed L-BFGS, certified stop) now leads dense smooth-l2:
in the quiet-machine run of 2026-11-29 18:29 UTC (``asip bench --ttt``, 2 workers, README
"Headline") it reached 1e-6 before gd on all six dense pairs (ijcnn1 and synthetic 20k x
100, log_loss-l2 at alpha 0.1 and 1/n: 0.13-0.29 s against gd's 0.22-2.05 s) and before
asip-svrg and asip-cocoa there. On sparse data asip-svrg stays first (a9a at alpha = 1/n:
0.48 s against lbfgs's 1.42 s), lbfgs second (a9a at alpha 0.1: 0.12 s against 0.19 s; at
1M x 10^5, alpha = 1/n, it certified 1e-3 in 2.9 s against asip-svrg's 8.9 s).
``"prox-newton"`` (distributed proximal Newton, certified l1 duality gap) leads both l1
lists: on a9a / ijcnn1 log_loss-l1 at alpha = 1e-5 it certifies in about ten iterations
where every first-order solver ended at 2.5e-3 or worse after 10 s (README, l1 section).
It stays first for hinge-l1 too: ``"lp-hinge"`` (the LP by row and column generation)
certified reuters hinge-l1 at 1e-3 in 21 s where prox-newton was at 0.24 after 60 s
(2026-11-29, load 8-9), but on a9a / ijcnn1 it took 76-178 s (one process) against
prox-newton's 0.5-0.8 s, and this list cannot tell the shapes apart; choose it by name
for wide sparse hinge-l1.
"""

from __future__ import annotations

import logging

__all__ = ["PREFERENCES", "choose_solver"]

logger = logging.getLogger(__name__)

#: (loss kind, penalty) -> solvers in order of preference (see the module docstring)
PREFERENCES: dict[tuple[str, str], tuple[str, ...]] = {
    ("smooth", "l2"): ("lbfgs", "gd", "asip-cocoa", "admm", "saga", "asip-sgd"),
    ("smooth-sparse", "l2"): ("asip-svrg", "lbfgs", "asip-cocoa", "gd", "admm", "saga",
                              "asip-sgd"),
    ("smooth", "l1"): ("prox-newton", "gd", "saga", "admm", "asip-sgd"),
    ("hinge", "l2"): ("asip-cocoa", "admm", "asip-admm", "asip-sgd"),
    ("hinge", "l1"): ("prox-newton", "admm", "asip-admm", "asip-sgd"),
}


def choose_solver(loss: str, penalty: str, n: int, d: int, sparse: bool,
                  sample_weight: bool = False, registry: dict | None = None,
                  problem=None) -> str:
    """The solver ``solver="auto"`` uses for this problem.

    Parameters
    ----------
    loss, penalty : str
        As the estimator's parameters (``"log_loss"``, ``"hinge"``, ``"squared_error"``;
        ``"l2"``, ``"l1"``).
    n, d : int
        Rows and features of the training data.
    sparse : bool
        Whether ``X`` is sparse.
    sample_weight : bool
        Whether the fit has row weights (only solvers that read them qualify).
    registry : dict, optional
        Solver name -> `Algorithm` (default: the runtime registry).
    problem : Problem, optional
        When given, a solver whose ``validate`` refuses it (e.g. alpha = 0) is skipped.
    """
    if registry is None:
        from ._solvers import RUNTIME_SOLVERS as registry
    kind = "hinge" if loss == "hinge" else "smooth-sparse" if sparse and penalty == "l2" \
        else "smooth"
    prefs = PREFERENCES[(kind, penalty)]
    for name in prefs:
        algo = registry.get(name)
        if algo is None or (sample_weight and not getattr(algo, "sample_weight", False)):
            continue
        check = getattr(algo, "validate", None)
        if problem is not None and check is not None:
            try:
                check(problem, dict(algo.defaults))
            except ValueError:
                continue
        logger.debug("solver='auto': %s for %s-%s on %d x %d%s", name, loss, penalty, n, d,
                     " sparse" if sparse else "")
        return name
    need = " with sample weights" if sample_weight else ""
    raise NotImplementedError(f"solver='auto' found no solver for {loss}-{penalty}{need} among "
                              f"{sorted(registry)}; the ones tried were {list(prefs)}")
