"""An all-reduce barrier over the sideways channel, for the synchronous baselines (``gd``, ``admm``).

Round ``k``: every operator pushes its contribution for ``k`` to all peers and
waits (polling with a timeout) until it holds all ``N`` contributions; then
each reduces them *in partition order*, so every operator computes bit-for-bit
the same result. No scheduler round trip, one reduction per round.

Robustness without acknowledgements:

* a peer can be at most one round ahead (it needs our round-``k`` message to
  leave ``k``), so every message carries the sender's contribution for ``k``
  *and* ``k - 1`` (fields prefixed ``c_`` and ``p_``); a dropped message is
  made good by the next round's, or by a re-push of the current one after
  ``resend_after`` seconds of waiting;
* duplicates are harmless (contributions are keyed by round and sender);
* a restarted operator joins at the lowest round its peers are at
  (`join_round`), reading what it needs from their messages.

`barrier_step` is the round skeleton every barrier solver shares (absorb, wait
or resend, gather all ``N`` contributions, reduce, push the next round's);
a solver plugs in three pure pieces: its contribution, its reduction (the
update step and the stop decision) and how a restarted operator adopts a
peer's state. `latest_model` is their common ``combine``.
"""

from __future__ import annotations

import logging

import numpy as np

from typing import Callable, NamedTuple

from ._base import Outgoing, Problem, StepOutput, latest_of

__all__ = ["Barrier", "barrier_step", "latest_model", "push_own", "rejoin"]

logger = logging.getLogger(__name__)


class Barrier:
    """Contributions received, by round and sender, plus each peer's latest round."""

    def __init__(self, index: int, n_partitions: int):
        self.index = index
        self.n = n_partitions
        self.table: dict[int, dict[int, dict]] = {}
        self.latest: dict[int, tuple[int, dict]] = {}  # sender -> (round, its current fields)
        self.pushed_at = -float("inf")
        self.last_message: dict | None = None

    @staticmethod
    def message(k: int, current: dict, previous: dict | None) -> dict:
        """A flat payload carrying round ``k``'s contribution and round ``k-1``'s."""
        out = {"k": int(k), "has_prev": previous is not None}
        out.update({f"c_{key}": v for key, v in current.items()})
        if previous is not None:
            out.update({f"p_{key}": v for key, v in previous.items()})
        return out

    @staticmethod
    def schema(contribution: dict) -> tuple[dict, dict]:
        """The message schema for contributions of these fields (key -> type or (dtype, shape))."""
        required = {"k": int, "has_prev": bool}
        required.update({f"c_{key}": v for key, v in contribution.items()})
        return required, {f"p_{key}": v for key, v in contribution.items()}

    def absorb(self, inbox) -> None:
        for msg in inbox:
            pl = msg.payload
            if "k" not in pl:
                continue
            k = int(pl["k"])
            cur = {key[2:]: v for key, v in pl.items() if key.startswith("c_")}
            self.table.setdefault(k, {})[msg.sender] = cur
            if pl.get("has_prev"):
                prev = {key[2:]: v for key, v in pl.items() if key.startswith("p_")}
                self.table.setdefault(k - 1, {}).setdefault(msg.sender, prev)
            if msg.sender not in self.latest or k >= self.latest[msg.sender][0]:
                self.latest[msg.sender] = (k, cur)

    def complete(self, k: int) -> bool:
        """Whether every peer's contribution for round ``k`` is here."""
        got = self.table.get(k, {})
        return all(j in got for j in range(self.n) if j != self.index)

    def gather(self, k: int, own: dict) -> list[dict]:
        """All ``N`` contributions for round ``k`` in partition order (own included)."""
        got = self.table.get(k, {})
        return [own if j == self.index else got[j] for j in range(self.n)]

    def prune(self, k: int) -> None:
        """Forget rounds older than ``k - 1`` (``k - 1`` may still be asked for by a rejoiner)."""
        for old in [r for r in self.table if r < k - 1]:
            del self.table[old]

    def join_round(self) -> tuple[int, dict] | None:
        """For a restarted operator: the lowest round a peer is at and that peer's fields."""
        if not self.latest:
            return None
        return min(self.latest.values(), key=lambda kv: kv[0])

    def should_resend(self, now: float, resend_after: float) -> bool:
        return self.last_message is not None and now - self.pushed_at >= resend_after

    def sent(self, message: dict, now: float) -> None:
        self.last_message = message
        self.pushed_at = now


class BarrierState(NamedTuple):
    """The state of a solver of gradient rounds (gd, lbfgs): what `barrier_step` and
    `_primal_cert.certify_round` read; ``mem`` holds the solver's own round state."""

    problem: Problem
    params: dict
    barrier: Barrier
    grad: np.ndarray  # scratch for the local gradient
    mem: dict
    certify: bool = True  # the free dual point certifies this problem (`_primal_cert.certifiable`)


def push_own(state, now: float) -> tuple:
    """Push this partition's contribution to its current round (with the previous one).

    ``state`` is a barrier solver's state: ``state.mem`` holds ``k``, ``own`` and
    ``prev_own``, and ``state.barrier`` is its `Barrier`.
    """
    mem = state.mem
    msg = Barrier.message(mem["k"], mem["own"], mem["prev_own"])
    state.barrier.sent(msg, now)
    return (Outgoing(msg),)


def rejoin(state, data, now: float, adopt: Callable) -> bool:
    """A restarted barrier solver's first steps: True while it should keep waiting.

    It waits (up to ``params["rejoin_wait"]`` s from its first step,
    ``mem["started"]``) to hear from every peer, then calls ``adopt(state, data, k, fields)``
    with the lowest round they are at and that peer's current fields (not at all if it
    heard from none) and goes back to ``phase = "run"``.
    """
    mem, bar = state.mem, state.barrier
    waited = now - mem["started"]
    if len(bar.latest) < data.n_partitions - 1 and waited < state.params["rejoin_wait"]:
        return True
    joined = bar.join_round()
    if joined is not None:
        adopt(state, data, *joined)
    mem["phase"] = "run"
    return False


def barrier_step(state, data, inbox, now: float, *, contribute: Callable,
                 reduce: Callable, adopt: Callable) -> StepOutput:
    """One ``local_step`` of a barrier solver: wait for round ``k``, reduce it, push ``k + 1``.

    ``state`` has ``params``, ``barrier`` and ``mem`` (with ``k``, ``own``,
    ``prev_own``, ``phase``, ``started``). The solver supplies the math:

    * ``contribute(state, data) -> dict``: this partition's contribution to round
      ``mem["k"]``;
    * ``reduce(state, data, parts, k) -> bool``: the update from all ``N``
      contributions in partition order (identical on every operator); True stops;
    * ``adopt(state, data, k, fields)``: a restarted operator takes round ``k`` and the
      state a peer sent (see `rejoin`).
    """
    mem, params, bar = state.mem, state.params, state.barrier
    bar.absorb(inbox)
    if mem["started"] is None:
        mem["started"] = now
    if mem["phase"] == "rejoin" and rejoin(state, data, now, adopt):
        return StepOutput(state, wait=params["poll_wait"])
    if mem["own"] is None:  # the first contribution of this incarnation
        mem["own"] = contribute(state, data)
        return StepOutput(state, push_own(state, now))
    k = mem["k"]
    if not bar.complete(k):
        out = push_own(state, now) if bar.should_resend(now, params["resend_after"]) else ()
        return StepOutput(state, out, wait=params["poll_wait"])
    done = reduce(state, data, bar.gather(k, mem["own"]), k)
    bar.prune(k + 1)
    mem["k"] = k + 1
    mem["prev_own"] = mem["own"]
    if done:
        return StepOutput(state, done=True)
    mem["own"] = contribute(state, data)
    return StepOutput(state, push_own(state, now), wait=params["poll_wait"])


def latest_model(problem: Problem, snapshots: list) -> np.ndarray:
    """``combine`` for barrier solvers: every operator holds the same model, take the most
    advanced one (zeros if none reported)."""
    s = latest_of(snapshots, "k")
    return np.zeros(problem.p) if s is None else np.asarray(s["w"], dtype=np.float64)
