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
  (`rejoin`), reading what it needs from their messages. It asks for them at
  once: its first step pushes a *hello* (``"hello": True``, the contribution's fields
  as placeholders so the schema holds), and a peer answers a hello in its next step
  with a full push to that operator alone, plus the solver's *handover* (fields
  prefixed ``r_``: the state every operator holds alike, such as lbfgs's memory) --
  rather than the rejoiner waiting up to ``resend_after`` for a peer's re-push and
  the solver starting its memory afresh (lbfgs: 21 rounds instead of 7 after a restart).
  The answer says it is one (``"answer": True``); a solver with a handover joins from
  the answers only, while ``rejoin_wait`` lasts: a peer's plain re-push (sent to every
  partition while it waited out the loss) often reaches the new incarnation first, and
  joining from it dropped lbfgs's memory (dense 500k x 100, KillWorker: 12 rounds
  instead of 6, one kill in three).

A *lean* solver (``barrier_step(lean=...)``, lbfgs at 10^5 features: 0.8 instead of
3.2 MB a push) sends only what the reduction reads in a round's first push; its
re-pushes carry the rest too: round ``k - 1``'s contribution and the fields only a
restarted operator needs. The channel is FIFO and drops nothing on a healthy run,
so those copies were insurance; a lost message now costs one re-push, which waits
at least twice the time the operator spent on its own contribution (a slow peer is
the usual reason to wait, and re-pushing megabytes to it every 0.1 s only slows the
machine it shares).

`barrier_step` is the round skeleton every barrier solver shares (absorb, wait
or resend, gather all ``N`` contributions, reduce, push the next round's);
a solver plugs in three pure pieces: its contribution, its reduction (the
update step and the stop decision) and how a restarted operator adopts a
peer's state. `latest_model` is their common ``combine``.
"""

from __future__ import annotations

import logging
import time

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
        self.contribute_s = 0.0  # seconds the last own contribution took (lean re-push wait)
        self.hellos: set[int] = set()  # restarted peers that asked for our state
        self.answers: dict[int, tuple[int, dict]] = {}  # sender -> (round, fields): answers
        self.hello_at = -float("inf")  # when this (restarted) operator last said hello
        self.hellos_said = 0  # and how often: it repeats after resend_after, 2x, 4x, ...

    @staticmethod
    def message(k: int, current: dict, previous: dict | None, omit=()) -> dict:
        """A flat payload carrying round ``k``'s contribution and round ``k-1``'s (without
        the current contribution's keys in ``omit``)."""
        out = {"k": int(k), "has_prev": previous is not None}
        out.update({f"c_{key}": v for key, v in current.items() if key not in omit})
        if previous is not None:
            out.update({f"p_{key}": v for key, v in previous.items()})
        return out

    @staticmethod
    def schema(contribution: dict, optional=(), handover=None) -> tuple[dict, dict]:
        """The message schema for contributions of these fields (key -> type or (dtype,
        shape)); the keys in ``optional`` may be missing from the current contribution
        (a lean solver's rejoin-only fields); ``handover``: the fields of the state a
        peer hands a restarted operator (sent as ``r_<key>``)."""
        required = {"k": int, "has_prev": bool}
        required.update({f"c_{key}": v for key, v in contribution.items()
                         if key not in optional})
        extra = {f"p_{key}": v for key, v in contribution.items()}
        extra.update({f"c_{key}": contribution[key] for key in optional})
        extra.update({f"r_{key}": v for key, v in (handover or {}).items()})
        extra["hello"] = bool
        extra["answer"] = bool
        return required, extra

    @staticmethod
    def hello(required: dict) -> dict:
        """A restarted operator's request for its peers' state: ``required`` (a schema's
        required fields) filled with zeros, so it passes the schema, and ``hello``."""
        out = {}
        for key, kind in required.items():
            if isinstance(kind, tuple):
                dtype, shape = kind
                out[key] = np.zeros(tuple(0 if d is None else d for d in shape), dtype=dtype)
            else:
                out[key] = kind()
        out.update(k=-1, has_prev=False, hello=True)
        return out

    def absorb(self, inbox) -> None:
        for msg in inbox:
            pl = msg.payload
            if "k" not in pl:
                continue
            if pl.get("hello"):
                self.hellos.add(msg.sender)
                continue
            k = int(pl["k"])
            cur = {key[2:]: v for key, v in pl.items() if key.startswith("c_")}
            handover = {key[2:]: v for key, v in pl.items() if key.startswith("r_")}
            if handover:
                cur["handover"] = handover
            if pl.get("answer"):
                self.answers[msg.sender] = (k, cur)
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

    def heard(self, answered: bool) -> dict[int, tuple[int, dict]]:
        """What a restarted operator joins from: each peer's answer to its hello where
        ``answered`` (else, and for peers that have not answered, the latest message)."""
        if not answered:
            return self.latest
        return {**self.latest, **self.answers}

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


def push_own(state, now: float, lean=None) -> tuple:
    """Push this partition's contribution to its current round (with the previous one).

    ``state`` is a barrier solver's state: ``state.mem`` holds ``k``, ``own`` and
    ``prev_own``, and ``state.barrier`` is its `Barrier`. ``lean``: the contribution's
    rejoin-only keys; this push then carries neither them nor the previous round's.
    """
    mem = state.mem
    if lean is None:
        msg = Barrier.message(mem["k"], mem["own"], mem["prev_own"])
    else:
        msg = Barrier.message(mem["k"], mem["own"], None, omit=lean)
    state.barrier.sent(msg, now)
    return (Outgoing(msg),)


def rejoin(state, data, now: float, adopt: Callable, answered: bool = False) -> bool:
    """A restarted barrier solver's first steps: True while it should keep waiting.

    It waits (up to ``params["rejoin_wait"]`` s from its first step,
    ``mem["started"]``) to hear from every peer -- with ``answered``, to hear every peer's
    answer to its hello (the one message with the peer's handover) -- then calls
    ``adopt(state, data, k, fields)`` with the lowest round they are at and that peer's
    fields (not at all if it heard from none) and goes back to ``phase = "run"``. An
    ``adopt`` that returns False (a lean push without the fields it needs) keeps it
    waiting for the peer's re-push.
    """
    mem, bar = state.mem, state.barrier
    waiting = now - mem["started"] < state.params["rejoin_wait"]
    if len(bar.answers if answered else bar.latest) < data.n_partitions - 1 and waiting:
        return True
    heard = bar.heard(answered)
    if heard:
        low = min(k for k, _ in heard.values())
        if all(adopt(state, data, k, fields) is False for k, fields in heard.values()
               if k == low):
            return True
    mem["phase"] = "run"
    return False


def barrier_step(state, data, inbox, now: float, *, contribute: Callable,
                 reduce: Callable, adopt: Callable, lean=None, schema: Callable | None = None,
                 handover: Callable | None = None) -> StepOutput:
    """One ``local_step`` of a barrier solver: wait for round ``k``, reduce it, push ``k + 1``.

    ``state`` has ``params``, ``barrier`` and ``mem`` (with ``k``, ``own``,
    ``prev_own``, ``phase``, ``started``). The solver supplies the math:

    * ``contribute(state, data) -> dict``: this partition's contribution to round
      ``mem["k"]``;
    * ``reduce(state, data, parts, k) -> bool``: the update from all ``N``
      contributions in partition order (identical on every operator); True stops;
    * ``adopt(state, data, k, fields)``: a restarted operator takes round ``k`` and the
      state a peer sent (see `rejoin`).

    ``lean``: None, or the contribution's keys only a restarted operator reads; then a
    round's first push is lean (see the module docstring) and re-pushes are full.
    ``schema(problem)``: the solver's message schema; with it a restarted operator says
    hello at once (again after ``resend_after`` s, then twice that, ... while it waits)
    instead of waiting for a re-push.
    ``handover(state) -> dict``: the state a peer sends along to a restarted operator
    (``adopt`` finds it under ``fields["handover"]``).
    """
    state.barrier.absorb(inbox)
    out = _round(state, data, now, contribute, reduce, adopt, lean, schema,
                 answered=handover is not None)
    answers = () if out.done else _answer_hellos(state, handover)
    return out._replace(outbox=answers + tuple(out.outbox)) if answers else out


def _answer_hellos(state, handover: Callable | None) -> tuple:
    """A full push of this operator's round (and ``handover``'s ``r_`` fields) to each
    restarted peer that said hello; kept for later while there is nothing to send."""
    mem, bar = state.mem, state.barrier
    if not bar.hellos or mem["phase"] != "run" or mem["own"] is None:
        return ()
    msg = Barrier.message(mem["k"], mem["own"], mem["prev_own"])
    msg["answer"] = True
    if handover is not None:
        msg.update({f"r_{key}": v for key, v in handover(state).items()})
    out = tuple(Outgoing(msg, to=j) for j in sorted(bar.hellos))
    bar.hellos.clear()
    return out


def _round(state, data, now: float, contribute, reduce, adopt, lean, schema,
           answered: bool = False) -> StepOutput:
    """`barrier_step` after absorbing the inbox: rejoin, wait or resend, or reduce."""
    mem, params, bar = state.mem, state.params, state.barrier
    if mem["started"] is None:
        mem["started"] = now
    if mem["phase"] == "rejoin" and rejoin(state, data, now, adopt, answered):
        out = ()
        # a lost hello is said again, less and less often: each answer may be megabytes
        gap = params["resend_after"] * 2 ** (bar.hellos_said - 1) if bar.hellos_said else 0.0
        if schema is not None and now - bar.hello_at >= gap:
            bar.hello_at, bar.hellos_said = now, bar.hellos_said + 1
            out = (Outgoing(Barrier.hello(schema(state.problem)[0])),)
        return StepOutput(state, out, wait=params["poll_wait"])
    if mem["own"] is None:  # the first contribution of this incarnation
        mem["own"] = _timed(bar, contribute, state, data)
        return StepOutput(state, push_own(state, now, lean))
    k = mem["k"]
    if not bar.complete(k):
        after = params["resend_after"]
        if lean is not None:
            after = max(after, 2.0 * bar.contribute_s)
        out = push_own(state, now) if bar.should_resend(now, after) else ()
        return StepOutput(state, out, wait=params["poll_wait"])
    done = reduce(state, data, bar.gather(k, mem["own"]), k)
    bar.prune(k + 1)
    mem["k"] = k + 1
    mem["prev_own"] = mem["own"]
    if done:
        return StepOutput(state, done=True)
    mem["own"] = _timed(bar, contribute, state, data)
    return StepOutput(state, push_own(state, now, lean), wait=params["poll_wait"])


def _timed(bar: Barrier, contribute: Callable, state, data) -> dict:
    """``contribute(state, data)``, its duration noted in ``bar.contribute_s``."""
    t0 = time.perf_counter()
    out = contribute(state, data)
    bar.contribute_s = time.perf_counter() - t0
    return out


def latest_model(problem: Problem, snapshots: list) -> np.ndarray:
    """``combine`` for barrier solvers: every operator holds the same model, take the most
    advanced one (zeros if none reported)."""
    s = latest_of(snapshots, "k")
    return np.zeros(problem.p) if s is None else np.asarray(s["w"], dtype=np.float64)
