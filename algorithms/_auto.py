"""``solver="auto"``: the one place that picks a solver for a loss, penalty and data shape.

`choose_solver` walks the problem's preference list (`PREFERENCES`) and returns the first
solver that is registered, reads sample weights when the fit has them, and whose
``validate`` accepts the problem (asip-cocoa needs alpha > 0). Solvers with a certified
stopping test come first, so a default ``fit()`` ends when ``tol`` is met and
``max_time`` is only a cap. Today's picks, each the fastest to 1e-6 in the recorded
benchmark runs (README "Which solver"; history in ``benchmarks/RESULTS.md``):

- dense smooth-l2: ``"lbfgs"`` (synchronous distributed L-BFGS, certified): it reached
  1e-6 before gd, asip-svrg and asip-cocoa on every dense pair of ``asip bench --ttt``;
- sparse smooth-l2: ``"asip-svrg"`` (asynchronous SVRG, certified), then ``"lbfgs"``
  (a9a at alpha = 1/n: 0.48 s against lbfgs's 1.42 s);
- smooth-l1 and hinge-l1: ``"prox-newton"`` (distributed proximal Newton, certified l1
  gap): ~10 iterations where first-order solvers end at 2.5e-3 or worse after 10 s.
  ``"lp-hinge"`` (the LP by row and column generation) certifies wide sparse hinge-l1
  such as reuters where prox-newton stalls, but a9a / ijcnn1 take it minutes (a third
  of their rows end violated), and this list cannot tell the shapes apart: name it;
- hinge-l2: ``"asip-cocoa"`` (asynchronous CoCoA+, duality-gap stop).

With sample weights, solvers that can't read them are skipped (weighted smooth-l1 gets
``gd``, weighted hinge ``admm``).
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
