"""The leader's certificate round that asip-admm and asip-cocoa share: open, answers, close.

The leader opens a round at a model ``wbar`` with a new version; every peer answers with
its `GapParts` at that ``wbar``; with every answer in, the leader adds its own and closes
it: ``P(wbar) - D`` bounds ``P(wbar) - P*`` whatever the asynchrony did (any duals are
feasible). One round is open at a time; an overdue one (a lost message) is opened anew.
The book is a dict (`_certificate.snapshot_fields` reads it); the solvers supply their
parts, the model, the period and what follows a closed round.
"""

from __future__ import annotations

import time

import numpy as np

from ._base import Problem
from ._primal_cert import record_gap, relative_gap

__all__ = ["accept", "balanced_period", "close", "complete", "due_by_trend", "new_book",
           "open_round", "opens"]

#: a round is at least this many of the leader's own certificate passes apart (the
#: certificates' cost stays under ~20%)
COST_PERIODS = 4.0
#: an open round is overdue (ask again) after this many periods and `OVERDUE_SLACK` s
OVERDUE_PERIODS = 5.0
OVERDUE_SLACK = 0.1
#: `due_by_trend` times the rounds once the last gap is within this factor of ``tol``
NEAR = 100.0


def new_book(**extra) -> dict:
    """A leader's empty certificate book (``extra``: the solver's own entries)."""
    return {"ver": 0, "wbar": None, "answers": {}, "at": -np.inf, "cost": 0.0,
            "best_dual": -np.inf, "gap": np.inf, "rel_gap": np.inf, "primal": np.nan,
            "certified": None, "trend": [], **extra}


def opens(book: dict, now: float, period: float, slack: float = 0.0, tol: float = 0.0) -> bool:
    """Whether the leader opens a round now: ``period`` (and `COST_PERIODS` of its own
    certificate pass) since the last, which closed -- or whose answers are overdue
    (`OVERDUE_PERIODS` periods, `OVERDUE_SLACK` and ``slack`` s: one was lost). With
    ``tol``, a closed round's successor opens sooner when the gaps' trend says it meets
    ``tol`` within the period (`due_by_trend`)."""
    period = max(period, COST_PERIODS * book["cost"])
    overdue = now - book["at"] >= OVERDUE_PERIODS * period + OVERDUE_SLACK + slack
    if book["wbar"] is None:
        return now - book["at"] >= min(period, due_by_trend(book, tol, period))
    return overdue and now - book["at"] >= period


def balanced_period(cost: float, t: float) -> float:
    """The period that balances a reported model's lag behind its solver against the rounds'
    cost: ``sqrt(2 cost t)`` at stage time ``t``, ``cost`` s a round. Where the model is the
    last round's, it trails by half a period on average, and rounds every ``P`` s cost
    ``cost t / P`` s by ``t``: their sum is least at this ``P`` (the rounds' share of the time
    is then ``sqrt(cost / (2 t))``: 3.6% for a9a's 0.13 ms pass at 50 ms, 20 ms cap aside)."""
    return float(np.sqrt(2.0 * max(cost, 0.0) * max(t, 0.0)))


def due_by_trend(book: dict, tol: float, period: float) -> float:
    """Seconds after the last round's opening at which the next opens, near the end: once
    the last gap is within `NEAR` of ``tol``, when the gap, falling at the rate of the last
    two closed rounds (a straight line in ``log(rel_gap)`` against their opening times), is
    there; not falling (a plateau, a model that moved back), twice their interval. At least
    `COST_PERIODS` of the leader's certificate pass (the certificates' cost stays under
    ~20%), at most ``period``; ``period`` farther out. With the period alone, a model that
    met ``tol`` just after a round waited up to a period for the next."""
    trend = book.get("trend", ())
    if not 0 < tol or len(trend) < 2:
        return period
    (t1, g1), (t2, g2) = trend[-2:]
    if not (np.isfinite(g1) and np.isfinite(g2) and tol < g2 <= NEAR * tol and t2 > t1):
        return period
    if g1 > g2:  # log gap falls log(g1 / g2) in t2 - t1 s
        wait = np.log(g2 / tol) * (t2 - t1) / np.log(g1 / g2)
    else:
        wait = 2.0 * (t2 - t1)
    return min(period, max(wait, COST_PERIODS * book["cost"]))


def open_round(book: dict, wbar: np.ndarray, now: float, **reset) -> int:
    """Open the next round at ``wbar`` (answers to an older one no longer count); its
    version. ``reset``: the solver's per-round entries, emptied."""
    book.update(ver=book["ver"] + 1, wbar=wbar, at=now, answers={}, **reset)
    return book["ver"]


def accept(book: dict, sender: int, asked: tuple, incarnation: int, parts) -> bool:
    """Keep ``sender``'s answer ``parts`` when it answers the open round: ``asked``, the
    leader's ``(incarnation, version)`` it names, is this leader's and this round's (and
    the parts decoded: not None)."""
    if book["wbar"] is None or parts is None or tuple(asked) != (incarnation, book["ver"]):
        return False
    book["answers"][sender] = parts
    return True


def complete(book: dict, n_partitions: int) -> bool:
    """Whether the open round has every peer's answer."""
    return book["wbar"] is not None and len(book["answers"]) >= n_partitions - 1


def close(book: dict, problem: Problem, own_parts, tol: float) -> bool:
    """Close the complete open round: the leader's parts (``own_parts(wbar)``, timed: the
    period's floor) and the answers give ``P(wbar)`` and ``D``; True when the relative gap
    is at most ``tol`` (`record_gap`: the book then holds the certified ``wbar``)."""
    wbar = book["wbar"]
    t0 = time.perf_counter()
    own = own_parts(wbar)
    book["cost"] = time.perf_counter() - t0
    primal, dual, _ = relative_gap(problem, [own, *book["answers"].values()], wbar)
    book.update(primal=primal, wbar=None)
    done = record_gap(book, primal, dual, wbar, tol)
    # the gap at this round's model, with its opening time: `due_by_trend`'s last two
    book["trend"] = [*book.get("trend", ())[-1:], (book["at"], float(book["rel_gap"]))]
    return done
