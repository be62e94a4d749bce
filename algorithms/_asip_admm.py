"""ASIP-ADMM: asynchronous consensus ADMM in which every operator keeps its own ``z``.

The asynchronous ADMM of the ASIP paper (the authors' "PORKCHOP"). Each
operator loops, never waiting for anyone longer than a step or two (`_admm_core` holds the
updates)::

    z_i <- prox_{R/(N rho)}( mean_j (x_j + y_j / rho) )           (self + latest from each peer)
    y_i <- y_i + rho (x_i - z_i)                                   (x_i: this operator's last)
    x_i <- argmin f_i(x) + (rho/2) ||x - (z_i - y_i/rho)||^2      (SDCA epochs, warm-started)
    push (x_i, y_i) if this step took in a peer's new state, or ``push_period`` has passed

The z and dual steps come first, with the states that came in since the last step: the
ASIP code (and this one until 2026-11-30) took them at a step's end, so the peers' news
reached an x step one step late. With the z of the latest states, two operators that step
in parallel run the synchronous ADMM's rounds without its barrier, and over-relaxation is
stable (below). Lock-step rounds to 1e-6 (hinge-l2, alpha 0.1, 2 partitions,
`benchmarks/admm_rounds.py`), before -> now: a9a 27 -> 21, ijcnn1 12 -> 6,
synthetic-logistic:20000 33 -> 13 (``admm``: 16, 7, 14); in parallel with messages held
back 0-2 steps: 49 -> 18, 21 -> 10, 59 -> 27. (A step also does them at its end, from
the same states, for the certificate's ``z`` and the snapshot.)

Receivers keep only the *latest* ``(x_j, y_j)`` per sender (ordered by
incarnation and round), so messages are idempotent state: a dropped one is
replaced by the next, a late one is ignored. Peers not heard from yet are left
out of the mean (``N`` in the threshold stays the true count). The l1 ``z``
step is the correct soft threshold (the authors' code shifted small entries
instead of zeroing them). The ASIP code's table was written by another thread
without a lock -- here it is only touched by the operator's own thread.

``rho`` starts (``rho_rule="auto"``) at a ``sqrt(mu L)``-type choice for the
hinge with an l2 penalty, floored at an eighth of the ``alpha``-blind one, for log_loss
with l2 unless the features are unscaled (there at 0.3x the ``alpha``-blind one), and at the
``alpha``-blind one otherwise
(`_admm_core.default_rho`, ``rule="auto"``, with the measurements); the leader then adapts it (``rho_adapt="balance"``, `_balance`: residual
balancing, rho x/÷ 2, at most ``adapt_max`` times) and every push carries rho with a
version, so every operator steps with the leader's newest (a changed rho keeps the unscaled
duals ``y_i`` and rescales the local solver's warm start). The static rule has no
curvature to go by for the hinge: on `benchmarks/cold_start.py`'s nearly separable 1,000 x
20 (alpha 1e-4, intercept) the floor is ~16-30x too large, and lock-step (2 partitions,
round-robin) reached no 1e-3 in 1,200 rounds; adapted, rho falls 16x in 50 rounds and the
fit reaches 1e-6 in 663 (in parallel with messages held back 0-2 steps: 1e-3 in 305
rounds instead of none). ``relaxation`` (gamma)
over-relaxes as in the synchronous ``admm`` (each operator sends
``x^_i = gamma x_i + (1 - gamma) z_i``), 1.6 by default as there. A step over-relaxes only
when every peer's state is new since the operator's last step (`_fresh`); against a stale
one it takes ``gamma = 1``. With the z step at a step's end only, gamma = 1.3 had
diverged on a9a hinge and 1.5 on least squares (and 1.6 did in simulation: 4 partitions,
messages held back 0-2 steps); with the z of the latest states none diverged (hinge and
logistic on a9a, ijcnn1, reuters, synthetic; least squares on synthetic and abalone; 2 and
4 partitions; round-robin, in parallel, and in parallel with messages held back 0-2
steps), and 1.6 needs fewer rounds to 1e-6 than 1 nearly everywhere: in parallel hinge a9a
23 -> 14, ijcnn1 11 -> 7, synthetic 28 -> 19 (held back: 33 -> 18, 13 -> 10, 37 -> 26).
The exception is round-robin a9a (19 -> 21 on 2 partitions, 17 -> 26 on 4).

One-shot start (hinge-l2, ``oneshot_epochs``, `_oneshot`). The first step solves the
partition's own problem ``f_i + (alpha / N)/2 ||x||^2`` by ``oneshot_epochs`` (4) SDCA epochs
and sends ``x_i`` with ``y_i = (alpha / N) x_i`` (``-grad f_i`` there), so the first exchange's
``z`` is the mean of the local models (one-shot averaging: a9a 2.7e-5 of the optimum with exact
local models, synthetic-logistic:20000 2.9e-4, ijcnn1 2.2e-3) and the duals already match it;
the local SDCA duals carry on as the warm start. Parallel lock-step rounds (2 partitions,
alpha 0.1) to 1e-3 / 1e-6, cold -> one-shot: a9a 5 / 14 -> 1 / 11, ijcnn1 3 / 7 -> 2 / 5,
synthetic 5 / 19 -> 1 / 13, reuters 3 / 5 -> 1 / 1 (4 and 8 partitions: the same or fewer);
the certified stop's rounds stay. Only where a partition's labels look like a random
sample's (`_oneshot_applies`): skin_nonskin's label-sorted rows took 36 rounds instead of 23.
Round-robin on 4 partitions of a 4,000 x 50 synthetic set it cost rounds (15 -> 24).
On a 2 x 1 LocalCluster (`benchmarks/admm_oneshot.py`, 8 pairs alternating, load 3.6-5.1,
2026-12-01 10:01 and 10:04 UTC) the trace's 1e-3 came 3.9x sooner on a9a, 1.7-2.5x on
synthetic, 3.9-8.3x on reuters (ijcnn1 within the noise) and reuters' 1e-6 4.5-6.3x sooner
(39-54 -> 8-10 ms); the other sets' 1e-6 and every certified fit moved within the noise.

Waiting for news. A step against the same peer states as the last one is of little use
(Pushes, below), and on shared cores it takes the CPU a peer needs: after a step the next
poll waits for a message up to ``news_wait`` (2) times the step's own time, at most
``push_period``, and returns the moment one comes in; a straggler costs the others at most
that per step.

Pushes. An operator pushes on the step after it took in news (a peer's new state), so
the exchange runs at the peers' pace, one answer per state heard, with no wait; and at
least every ``push_period`` (10 ms; the keep-alive that restarts the exchange after a lost
message). With pushes every 10 ms only, an operator ran 3-7 one-epoch steps against the
same peer states (an epoch is 0.3-1.5 ms on these partitions), and the rounds needed grew
with it: hinge-l2 (alpha 0.1, 2 partitions, a simulated 1.5 ms a step) to 1e-6, a9a 81 ->
27, ijcnn1 33 -> 12, synthetic-logistic:20000 94 -> 33, reuters 27 -> 11 with the news
push. The paper's 100 ms period (its local solve was up to 10,000 SGD steps) left a9a at
1e-2 after 1 s; ``push_period=0`` pushes every step.

Certified stop (`_cert_round`). Partition 0 leads: every ``cert_period`` s (at least 4x its own
certificate pass) it sends its current ``z`` (its own and the peers' latest states) with
a round number; every operator answers on its next step with its duality-gap parts at that
``z`` (`_primal_cert.parts_at`: the hinge's local SDCA duals, which are feasible whatever
their age, else the free dual point ``-phi'(z)``). With all answers in, the leader has
``P(z) - D``, a bound on ``P(z) - P*`` whatever the asynchrony did, and stops the stage
when ``(P - D) / |P| <= tol`` (default 1e-6; ``tol=0``: no stop) with that ``z`` as the
model (`combine`). Near ``tol`` the rounds follow the gaps' trend instead of the period
(`_cert_round.due_by_trend`). A lost request or answer: the leader opens a new round once
the open one is overdue.

A restarted operator (incarnation > 0) gets its lost state back from its
peers by the echo/rejoin protocol the asynchronous solvers share (`_rejoin`):
it announces itself with ``k = 0``; a peer that knew an
older incarnation keeps using that one's last ``(x_j, y_j)`` and echoes it back
(``echo=True``); the restarted operator takes it up, redoes the dual step with
the ``z`` of the current states, and goes on from there, once it has the echo
and a state from every peer (or after ``rejoin_wait``). If nobody remembers it,
it starts from ``x_i = z_i`` (from the peers) and ``y_i = 0``, which costs a
long detour: the duals are most of what ADMM has learnt (measured on 4
partitions of a9a: 1.5x the fault-free suboptimality 1.4 s after the restart,
1.1x with the echo). An echo that comes after ``rejoin_wait`` is taken up all the same
(with the dual step redone): the peers echo it because they ignore the restarted
operator's rounds below its old clock and still use its old state. (Until 2026-12-01 it
was dropped, and the two views stayed apart until the new rounds passed the old clock:
lock-step, 4 partitions of a9a, ``rejoin_wait=0``: 1.55x the fault-free suboptimality
at matched rounds, 1.0x now; `tests/algorithms/test_asip_admm_rejoin.py`.)
The output (`combine`) is the certified ``z``, else the ``z`` step applied once to the mean
of all operators' final ``(x_i, y_i)``; while the operators run (the trace: each one's
latest report), an operator's own ``z`` where it is made of newer states than those reports.
"""

from __future__ import annotations

import copy
import logging
from typing import NamedTuple
from time import perf_counter  # the step's own time (``news_wait``)

import numpy as np

from . import _kernels as K
from . import _cert_round as R
from . import _primal_cert as C
from ._admm_core import LocalSolver, local_solve, setup, z_update
from ._base import Algorithm, LocalData, Outgoing, Problem, Start, StepOutput
from ._certificate import certified_model, snapshot_fields
from ._rejoin import PeerStates

__all__ = ["ALGORITHM", "AsyncADMMState", "init", "local_step"]

logger = logging.getLogger(__name__)

DEFAULTS = {
    "rho": None,
    # starting rho (`_admm_core.default_rho`): "auto" (hinge with l2: "sqrt" floored at
    # "legacy" / 8; log_loss with l2: "sqrt" if L <= 1e3, else 0.3 "legacy"; else "legacy"),
    # "legacy" (alpha-blind), "sqrt" (sqrt(mu L)-type) or "scaled" (admm's); the leader adapts it
    "rho_rule": "auto",
    "relaxation": 1.6,  # over-relaxation gamma in (0, 2), taken only against fresh peers
    "local_epochs": 1,
    "oneshot_epochs": 4,  # hinge-l2: SDCA epochs on the partition's own problem before the first
    # exchange (`_oneshot`): the start is the average of the local models
    "push_period": 0.01,
    "news_wait": 2.0,  # the next poll waits up to this many times the step's own time (at
    # most push_period) for a peer's state; 0: never waits
    "rejoin_wait": 0.3,
    "tol": 1e-6,  # stop when the certified relative duality gap at a consensus z is below this
    "cert_period": 0.02,  # seconds between the leader's certificate rounds, at least; and at
    # least 4x the leader's own certificate pass
    "seed": None,
    # rho adapted by the leader (`_balance`): "balance" (relative residual balancing) or None
    # (rho stays); a given ``rho`` always stays
    "rho_adapt": "balance",
    "adapt_every": 5,  # the leader's steps between two looks at the residuals
    "adapt_max": 8,  # rho changes at most this many times (ADMM converges once it is fixed)
}

#: valid ``rho_adapt`` values: the leader's residual balancing (`_balance`), or none
RHO_ADAPT = ("balance", None)
#: residual balancing: rho x/÷ `ADAPT_FACTOR` when one relative residual is `ADAPT_RATIO`
#: times the other
ADAPT_RATIO = 30.0
ADAPT_FACTOR = 2.0

#: `_oneshot_applies`: the least share of a partition's rows each label must have
ONESHOT_MIN_SHARE = 0.05

#: the partition that opens the certificate rounds and decides the stop
LEADER = 0


class AsyncADMMState(NamedTuple):
    problem: Problem
    params: dict
    rho: float
    solver: LocalSolver
    table: PeerStates  # latest (x_j, y_j) per peer and its round k_j (`_rejoin`)
    mem: dict  # x, y, z, k, pushed, started, phase
    cert: dict  # certificate rounds (`_certify`): the leader's book, a peer's owed answer


def init(problem: Problem, data: LocalData, params: dict) -> AsyncADMMState:
    rho, solver = setup(problem, data, params, "asip-admm")
    if not params["news_wait"] >= 0:
        raise ValueError(f"news_wait must be >= 0 for solver 'asip-admm', got "
                         f"{params['news_wait']!r}")
    if params["rho_adapt"] not in RHO_ADAPT:
        raise ValueError(f"unknown rho_adapt {params['rho_adapt']!r} for solver 'asip-admm'; "
                         f"valid values are {list(RHO_ADAPT)}")
    for key, least in (("adapt_every", 1), ("adapt_max", 0), ("oneshot_epochs", 0)):
        if not (isinstance(params[key], (int, np.integer)) and params[key] >= least):
            raise ValueError(f"{key} must be an integer >= {least} for solver "
                             f"'asip-admm', got {params[key]!r}")
    p = problem.p
    mem = {"x": np.zeros(p), "y": np.zeros(p), "y_used": np.zeros(p), "z": np.zeros(p), "k": 0,
           "pushed": -np.inf, "started": None,
           "phase": "run" if data.incarnation == 0 else "rejoin",
           # rho's version (`_balance`): (the leader's incarnation that set it, count); a
           # restarted operator (the leader too) takes the first it hears
           "rv": (0, 0) if data.incarnation == 0 else (-1, 0), "changes": 0,
           "oneshot": _oneshot_applies(problem, data, params)}
    certify = (C.certifiable(problem, data.sw is not None)
               and not (data.sw is not None and problem.loss == K.HINGE))
    cert = R.new_book(on=certify, asked=(-1, 0), owed=None)
    return AsyncADMMState(problem, params, rho, solver,
                          PeerStates(("x", "y"), "k", expecting=data.incarnation > 0), mem, cert)


def _absorb(state: AsyncADMMState, data: LocalData, inbox) -> tuple:
    """Keep the latest state per sender (`_rejoin.PeerStates`); returns the echoes owed to peers.

    A restarted operator takes the first echo of its own state up as its saved round.
    Certificate traffic: a peer answers the leader's newest request (`_answer`); the leader
    keeps the answers to its open round.
    """
    inbox = list(inbox)
    cert = state.cert
    for msg in inbox:
        pl = msg.payload
        if "cv" in pl and "cz" in pl and msg.sender == LEADER and data.index != LEADER \
                and (msg.incarnation, int(pl["cv"])) > cert["asked"]:
            cert["asked"] = (msg.incarnation, int(pl["cv"]))
            cert["owed"] = (cert["asked"], np.array(pl["cz"], dtype=np.float64))
        if "av" in pl and data.index == LEADER and pl.get("cert"):
            R.accept(cert, msg.sender, (int(pl.get("ai", -1)), int(pl["av"])), data.incarnation,
                     C.decode(state.problem, state.problem.sizes[msg.sender], pl))
        if "rv" in pl and (int(pl["ri"]), int(pl["rv"])) > state.mem["rv"] \
                and 0.0 < float(pl["rho"]) < np.inf:
            state.mem["rv"] = (int(pl["ri"]), int(pl["rv"]))  # a newer rho (`_balance`)
            state.mem["rho_next"] = float(pl["rho"])
    echoes, own = state.table.absorb(inbox)
    mem = state.mem
    if own is not None and int(own["k"]) > mem["k"]:
        # our state before the restart (`_rejoin`); once running (the echo came after
        # ``rejoin_wait``), the peers still use it, as they ignore our rounds below its clock
        mem["x"], mem["y_used"], mem["k"] = own["x"], own["y"], int(own["k"])
        mem["late_echo"] = mem["phase"] == "run"
    return echoes


def _z(state: AsyncADMMState, data: LocalData, include_self: bool) -> np.ndarray:
    xs = [pe.state["x"] for pe in state.table.values()]
    ys = [pe.state["y"] for pe in state.table.values()]
    if include_self:
        xs.append(state.mem["x"])
        ys.append(state.mem["y"])
    return z_update(state.problem, np.mean(xs, axis=0), np.mean(ys, axis=0), state.rho,
                    data.n_partitions)


def local_step(state: AsyncADMMState, data: LocalData, inbox, now: float) -> StepOutput:
    """One inexact local solve, a local z step from the latest states, a dual step, maybe a push."""
    mem, params = state.mem, state.params
    echoes = _absorb(state, data, inbox)
    if "rho_next" in mem:
        state = _set_rho(state, mem.pop("rho_next"))
    if mem["started"] is None:
        mem["started"] = now
    waiting = now - mem["started"] < params["rejoin_wait"] and data.n_partitions > 1
    if mem["phase"] == "resume":
        # a warm start from every operator's saved (x, y, z): a z step before the peers'
        # states are in would be a local one (a jump of y_i/rho); push ours, wait for theirs
        if len(state.table) < data.n_partitions - 1 and waiting:
            return StepOutput(state, echoes + _push_state(state, now), wait=0.02)
        mem["phase"] = "run"
        state.table.stop_expecting()
    if mem["phase"] == "rejoin":
        # a restart: wait for our old state (echoed) and a state from every peer
        if not state.table.ready(data.n_partitions) and waiting:
            return StepOutput(state, echoes + _push_state(state, now), wait=0.02)
        # (still expecting: an echo after this is taken up on a later step, `_absorb`)
        if state.table.recovered:  # redo the dual step of the saved round with today's z
            _redo_dual_step(state, data)
        elif state.table:
            mem["z"] = _z(state, data, include_self=False)
            mem["x"] = mem["z"].copy()
        mem["phase"] = "run"
    t0 = perf_counter()
    heard = _peer_clocks(state)
    if mem.pop("late_echo", False) or (mem["k"] > 0 and heard != mem.get("seen")):
        # the last z and dual steps again, with the peers' states new since (none new: the
        # last step's end computed exactly these)
        _redo_dual_step(state, data)
    if mem.pop("oneshot", False):
        return _oneshot(state, data, now, heard, t0)
    v = mem["z"] - mem["y"] / state.rho
    x = local_solve(state.solver, state.problem, data, v, state.rho, params["local_epochs"])
    gamma = params["relaxation"] if _fresh(state, data, heard) else 1.0
    # over-relaxation: the z and dual steps see x^ = gamma x + (1 - gamma) z (Eckstein-Bertsekas)
    mem["x"] = x if gamma == 1.0 else gamma * x + (1.0 - gamma) * mem["z"]
    _z_and_dual_step(state, data, heard)
    state = _balance(state, data, heard)
    extra, done = _certify(state, data, now)
    wait = min(params["news_wait"] * (perf_counter() - t0), params["push_period"])
    return StepOutput(state, echoes + _push_state(state, now, extra, heard), wait=wait,
                      done=done)


def _oneshot_applies(problem: Problem, data: LocalData, params: dict) -> bool:
    """Whether the first step is `_oneshot`: a fresh operator (not restarted), hinge with l2
    (measured there), and this partition's rows look like a random sample: both labels, each
    on at least `ONESHOT_MIN_SHARE` of its rows, and in no long runs (`_labels_shuffled`).
    Local models average well only from partitions that are samples of the same rows:
    skin_nonskin's label-sorted rows (its second partition all one label) went from 23 to 36
    lock-step rounds to 1e-6 with a one-shot start."""
    if data.incarnation != 0 or params["oneshot_epochs"] <= 0 or problem.loss != K.HINGE \
            or problem.mu <= 0:
        return False
    share = float(np.mean(data.y > 0))
    return ONESHOT_MIN_SHARE <= share <= 1.0 - ONESHOT_MIN_SHARE and _labels_shuffled(data.y)


def _labels_shuffled(y: np.ndarray) -> bool:
    """Whether the labels change from row to row at least half as often as in a random order
    (``2 q (1 - q)`` of the rows, ``q`` the positive share): sorted rows change a few times."""
    pos = np.asarray(y) > 0
    q = float(np.mean(pos))
    changes = int(np.count_nonzero(pos[1:] != pos[:-1]))
    return changes >= 0.5 * 2.0 * q * (1.0 - q) * (len(pos) - 1)


def _oneshot(state: AsyncADMMState, data: LocalData, now: float, heard: dict,
             t0: float) -> StepOutput:
    """The first step: ``x_i`` the partition's own model, ``argmin f_i + (mu / N)/2 ||x||^2``
    by ``oneshot_epochs`` SDCA epochs, with ``y_i = (mu / N) x_i`` (``-grad f_i`` there, by
    its SDCA duals), so the ``z`` of these states is the mean of the local models (one-shot
    averaging) and the duals match it; the local solver keeps its duals for the next x step.
    The intercept's dual starts at 0, not ``(mu / N) b_i``: the consensus step leaves it
    unpenalized, so at the optimum its duals sum to 0, and a start of ``(mu / N) b_i`` on every
    partition is an error that ADMM's tail works off slowly (parallel lock-step, reuters
    hinge-l2 alpha 0.1 with intercept, 2 partitions: rounds to 1e-6 60 cold, 286 with it, 22
    from 0; the certified stop 71 / never in 300 / 22; synthetic 19 / 14 / 14)."""
    mem, params, pb = state.mem, state.params, state.problem
    reg = pb.mu / data.n_partitions
    x = local_solve(state.solver, pb, data, np.zeros(pb.p), reg, params["oneshot_epochs"])
    np.multiply(state.solver.dvec, reg / state.rho, out=state.solver.dvec)  # x - v at rho
    mem["x"], mem["y"] = x, reg * x
    if pb.fit_intercept:  # unpenalized: at the optimum its duals sum to 0, so each starts there
        mem["y"][-1] = 0.0
    mem["seen"] = heard
    _z_and_dual_step(state, data, heard)
    extra, done = _certify(state, data, now)
    wait = min(params["news_wait"] * (perf_counter() - t0), params["push_period"])
    return StepOutput(state, _push_state(state, now, extra, heard), wait=wait, done=done)


def warm_up(state: AsyncADMMState, data: LocalData) -> None:
    """Load (or compile) the kernels before the gang's clock: the default warm-up (one step
    on a copy) and, on the first row, the certificate's parts, which only a round in the run
    reached -- on a fresh install they compiled there (3.05 s of one worker's 4.1 s run,
    `benchmarks/cold_start.py log_loss:asip-admm`, 2026-11-30)."""
    trial = copy.deepcopy(state)
    trial.mem["oneshot"] = False  # the same kernels; its epochs only cost time here
    local_step(trial, data, (), 0.0)
    pb, one = state.problem, data.first_row()
    dual = state.solver.dual[:1] if pb.loss == K.HINGE else None
    C.parts_at(pb, one, np.zeros(pb.p), np.zeros(pb.p), dual)


def _z_and_dual_step(state: AsyncADMMState, data: LocalData, heard: dict) -> None:
    """A step's z and dual steps after its x (``mem["x"]``), and its round: ``k`` and the
    rounds its z is made of (``heard``: `_peer_clocks`)."""
    mem = state.mem
    mem["z"] = _z(state, data, include_self=True)
    # (x_i, y_i) travel as the pair the z step uses: y_i is the dual this x step saw
    mem["y_used"] = mem["y"]
    mem["y"] = mem["y_used"] + state.rho * (mem["x"] - mem["z"])
    mem["k"] += 1
    mem["zk"] = _stamp(data, mem["k"], heard)


def _redo_dual_step(state: AsyncADMMState, data: LocalData) -> None:
    """The last step's z and dual steps again, with the peers' states that came in since."""
    mem = state.mem
    mem["y"] = mem["y_used"]
    mem["z"] = _z(state, data, include_self=True)
    mem["y"] = mem["y_used"] + state.rho * (mem["x"] - mem["z"])


def _peer_clocks(state: AsyncADMMState) -> dict:
    """``{peer: (incarnation, round)}`` of the peer states held: a state changes only with these."""
    return {j: (pe.incarnation, pe.clock) for j, pe in state.table.peers.items()}


def _stamp(data: LocalData, k: int, heard: dict) -> np.ndarray:
    """The rounds of the states a ``z`` is made of, per partition (-1: none): this
    operator's ``k`` and the peers' clocks (``heard``: `_peer_clocks`)."""
    stamp = np.full(data.n_partitions, -1, dtype=np.int64)
    stamp[data.index] = k
    for j, (_, clock) in heard.items():
        if 0 <= j < data.n_partitions:
            stamp[j] = clock
    return stamp


def _fresh(state: AsyncADMMState, data: LocalData, heard: dict) -> bool:
    """Whether every peer's state (``heard``: `_peer_clocks`) is new since this operator's last
    step (over-relaxation is safe only then: against a stale peer it diverged, see the module
    docstring); the step's z is then of these states (``mem["seen"]``)."""
    fresh = _all_new(heard, state.mem.get("seen", {}), data.n_partitions)
    state.mem["seen"] = heard
    return fresh


def _all_new(heard: dict, before: dict, n_partitions: int) -> bool:
    """Whether ``heard`` (`_peer_clocks`) holds a state from every peer, each new since
    ``before`` (an earlier `_peer_clocks`)."""
    return len(heard) == n_partitions - 1 and all(before.get(j) != c for j, c in heard.items())


def _push_state(state: AsyncADMMState, now: float, extra: dict | None = None,
                heard: dict | None = None) -> tuple:
    """``(x_i, y_i, k)`` if this step took in a peer's new state (news: the answer to it goes
    out at once, so the exchange runs at the peers' pace) or ``push_period`` has passed (``k =
    0`` announces a restart), or now with certificate fields ``extra`` (a request or an answer:
    they must not wait)."""
    mem = state.mem
    heard = _peer_clocks(state) if heard is None else heard
    news = mem["phase"] == "run" and heard != mem.get("heard")
    if not extra and not news and now - mem["pushed"] < state.params["push_period"]:
        return ()
    mem["pushed"], mem["heard"] = now, heard
    rho = {"rho": state.rho, "ri": mem["rv"][0], "rv": mem["rv"][1]} \
        if _adapts(state.params) else {}
    return (Outgoing({"x": mem["x"], "y": mem["y_used"], "k": mem["k"], **rho, **(extra or {})}),)


def _adapts(params: dict) -> bool:
    """Whether rho is the leader's to adapt: ``rho_adapt`` on and no ``rho`` given."""
    return params["rho_adapt"] is not None and params["rho"] is None


def _set_rho(state: AsyncADMMState, rho: float) -> AsyncADMMState:
    """The state with penalty ``rho``: the duals ``y_i`` are unscaled and stay; the local
    solver's ``x - v = (c / rho) sum dual_j a_j`` is rescaled so its warm start holds."""
    if rho == state.rho:
        return state
    np.multiply(state.solver.dvec, state.rho / rho, out=state.solver.dvec)
    return state._replace(rho=float(rho))


def _balance(state: AsyncADMMState, data: LocalData, heard: dict) -> AsyncADMMState:
    """The leader's residual balancing (Boyd et al. 2011 sec. 3.4.1, with relative residuals as
    Wohlberg 2017): every ``adapt_every`` steps, once every peer's state is new since its last
    look, with the primal residual ``r = ||x_j - z||`` (stacked over its own and the peers'
    latest states) over ``max(||x||, ||z||)`` and the dual one ``s = rho sqrt(N) ||z -
    z_prev||`` (``z_prev``: its previous step's) over ``||y||``: rho x 2 when ``r > 30 s`` on
    two looks in a row, / 2 when ``s > 30 r``; at most ``adapt_max`` changes (ADMM converges
    once rho stays). The new rho gets a new version ``(leader's incarnation, count)``; every
    push carries both and every operator takes the newest it hears (`_absorb`, `_set_rho`).
    Ratio 10 instead of 30 halved rho on a9a log_loss 1/n, where the default is right, and
    the rounds to 1e-6 grew 89 -> 127-150 (`benchmarks/admm_rounds.py`, 2026-12-01)."""
    mem, params = state.mem, state.params
    if data.index != LEADER or not _adapts(params) or data.n_partitions == 1:
        return state
    every, k = int(params["adapt_every"]), mem["k"]
    zp = mem.pop("z_prev", None)
    if (k + 1) % every == 0:
        mem["z_prev"] = mem["z"].copy()
    if k % every != 0 or zp is None or mem["changes"] >= params["adapt_max"]:
        return state
    # every peer's state new since the last look (``heard``: this step's `_peer_clocks`): a
    # straggler's stale x_j (or a z that moved by the leader's own steps alone) says nothing
    # about rho
    if not _all_new(heard, mem.get("looked", {}), data.n_partitions):
        return state
    mem["looked"] = heard
    z = mem["z"]
    xs = [pe.state["x"] for pe in state.table.values()] + [mem["x"]]
    ys = [pe.state["y"] for pe in state.table.values()] + [mem["y_used"]]
    n = len(xs)
    xn = max(np.sqrt(sum(float(np.dot(x, x)) for x in xs)),
             np.sqrt(n) * float(np.linalg.norm(z)))
    yn = np.sqrt(sum(float(np.dot(y, y)) for y in ys))
    if xn <= 0.0 or yn <= 0.0:
        return state
    r = np.sqrt(sum(float(np.sum((x - z) ** 2)) for x in xs)) / xn
    s = state.rho * np.sqrt(n) * float(np.linalg.norm(z - zp)) / yn
    lean = 1 if r > ADAPT_RATIO * s else -1 if s > ADAPT_RATIO * r else 0
    last, mem["lean"] = mem.get("lean", 0), lean
    if lean == 0 or lean != last:  # only an imbalance seen twice in a row (not a transient)
        return state
    rho = state.rho * ADAPT_FACTOR ** lean
    mem["lean"] = 0
    mem["changes"] += 1
    mem["rv"] = (data.incarnation, mem["rv"][1] + 1)
    return _set_rho(state, rho)


def _parts(state: AsyncADMMState, data: LocalData, z: np.ndarray):
    """This partition's duality-gap parts at ``z`` (`_primal_cert.parts_at`): the hinge's
    local SDCA duals (feasible, and far tighter than its subgradient), else the free dual point
    ``-phi'`` of ``z`` (one gradient pass)."""
    pb = state.problem
    dual = state.solver.dual if pb.loss == K.HINGE else None
    return C.parts_at(pb, data, z, np.zeros(pb.p), dual)


def _certify(state: AsyncADMMState, data: LocalData, now: float) -> tuple[dict, bool]:
    """One step's certificate work: ``(fields to push now, stop)``.

    A peer answers the leader's newest request with its parts at the requested ``z``
    (`_answer`). The leader closes its open round once every peer answered (the gap
    ``P(wbar) - D`` bounds ``P(wbar) - P*`` whatever the asynchrony: any duals are feasible)
    and opens the next at its current ``z`` (the consensus of its own and the peers' latest
    states) every ``cert_period`` s, or at once when an open one is overdue (a lost message).
    """
    cert, pb = state.cert, state.problem
    if not cert["on"]:
        return {}, False
    if data.index != LEADER:
        return _answer(state, data), False
    if data.n_partitions == 1 or len(state.table) < data.n_partitions - 1:
        return {}, False  # the first rounds: the leader's z is its own alone
    if R.complete(cert, data.n_partitions) and R.close(
            cert, pb, lambda z: _parts(state, data, z), state.params["tol"]):
        return {}, True
    if R.opens(cert, now, float(state.params["cert_period"]), tol=state.params["tol"]):
        ver = R.open_round(cert, state.mem["z"].copy(), now)
        return {"cv": ver, "cz": cert["wbar"]}, False
    return {}, False


def _answer(state: AsyncADMMState, data: LocalData) -> dict:
    """A peer's answer to the leader's newest request, if one is owed: the leader's
    ``(incarnation, version)`` and this partition's parts at its ``z`` (`_parts`)."""
    cert = state.cert
    if cert["owed"] is None:
        return {}
    (inc, ver), z = cert["owed"]
    cert["owed"] = None
    return {"ai": inc, "av": ver, **C.encode(state.problem, _parts(state, data, z))}


def schema(problem: Problem) -> tuple[dict, dict]:
    """An operator's latest ``(x_i, y_i)`` and its round ``k``; optional: rho and its version
    ``(ri, rv)`` (`_balance`), certificate fields:
    the leader's request ``(cv, cz)``, a peer's answer ``(ai, av)`` (the leader's incarnation
    and round it answers) with its gap parts
    (`_primal_cert.fields_schema`)."""
    vec = ("float64", (problem.p,))
    return {"x": vec, "y": vec, "k": int}, {"echo": bool, "rho": float, "ri": int, "rv": int,
                                             "cv": int, "cz": vec, "ai": int, "av": int,
                                             **C.fields_schema(problem)}


def resume(state: AsyncADMMState, data: LocalData, start: Start) -> AsyncADMMState:
    """Continue from this partition's saved ``(x_i, y_i, z_i)``, else from consensus at ``start.w``.

    A snapshot holds the dual its ``x_i`` step used; the dual step after it is redone here,
    so the next round is the one the saved run would have taken; and its rho with that rho's
    version (`_balance`), which this run starts from unless ``rho`` is given.
    """
    mem, p = state.mem, state.problem.p
    mem["oneshot"] = False  # a given start is the start
    own = start.own(data.index)
    if own is not None and all(np.shape(own.get(key)) == (p,) for key in ("x", "y", "z")):
        mem["x"], mem["z"] = np.array(own["x"], dtype=np.float64), np.array(own["z"], dtype=np.float64)
        mem["y_used"] = np.array(own["y"], dtype=np.float64)
        mem["y"] = mem["y_used"] + float(own.get("rho", state.rho)) * (mem["x"] - mem["z"])
        mem["k"] = int(own.get("k", 0))
        mem["phase"] = "resume" if data.n_partitions > 1 else "run"
        if state.params["rho"] is None and "rho" in own:  # the saved run's (adapted) rho
            state = state._replace(rho=float(own["rho"]))
            mem["rv"] = (int(own.get("ri", 0)), int(own.get("rv", 0)))
    else:
        mem["z"] = np.array(start.w, dtype=np.float64)
        mem["x"] = mem["z"].copy()
    return state


def snapshot(state: AsyncADMMState) -> dict:
    """The operator's ``(x_i, y_i, z_i)``; the leader's also its latest gap and the certified
    model (`_certificate.snapshot_fields`)."""
    mem = state.mem
    snap = {"x": mem["x"].copy(), "y": mem.get("y_used", mem["y"]).copy(),
            "z": mem["z"].copy(), "rho": state.rho, "k": int(mem["k"]),
            "ri": int(mem["rv"][0]), "rv": int(mem["rv"][1])}
    if "zk" in mem:  # the rounds its z is made of (`_stamp`): `combine` takes the freshest
        snap["zk"] = mem["zk"].copy()
    snap.update(snapshot_fields(state.cert))
    return snap


def combine(problem: Problem, snapshots: list) -> np.ndarray:
    """The certified model if there is one, else the freshest consensus ``z``: ``prox_{R/(N
    rho)}(mean x_i + mean y_i / rho)`` over the operators that reported, unless an
    operator's own ``z`` (the same step over its own and the peers' latest states, which
    reach it by push, sooner than a report reaches the driver) is made of newer rounds
    (`_freshness`).

    The runtime's trace combines each partition's latest report, and an operator reports
    every 20 ms or so: the mean of the reported states was up to a report period behind the
    operators' own ``z`` (a9a hinge-l2 on 2 workers: the trace saw 1e-6 16-21 ms after the
    operators had it, 2026-12-01). With every final state in, the mean is the freshest (and
    is kept on ties)."""
    model = certified_model(snapshots)
    if model is not None:
        return model
    got = [s for s in snapshots if s is not None and "x" in s]
    if not got:
        return np.zeros(problem.p)
    n = problem.n_partitions
    rounds = np.full(n, -1, dtype=np.int64)
    for i, s in enumerate(snapshots):
        if s is not None and "x" in s and i < n:
            rounds[i] = int(s.get("k", 0))
    best, best_key = None, _freshness(rounds)
    for s in got:
        zk = s.get("zk")
        if zk is not None and np.shape(zk) == (n,) and np.shape(s.get("z")) == (problem.p,):
            key = _freshness(np.asarray(zk, dtype=np.int64))
            if key > best_key:
                best, best_key = s, key
    if best is not None:
        return np.array(best["z"], dtype=np.float64)
    return z_of_reports(problem, got)


def z_of_reports(problem: Problem, got: list) -> np.ndarray:
    """The ``z`` step applied once to the mean of the reported ``(x_i, y_i)`` (``got``: the
    snapshots that have them, at least one)."""
    xbar = np.mean([s["x"] for s in got], axis=0)
    ybar = np.mean([s["y"] for s in got], axis=0)
    return z_update(problem, xbar, ybar, float(got[0]["rho"]), problem.n_partitions)


def _freshness(rounds: np.ndarray) -> tuple[int, int]:
    """How new the states a ``z`` is made of are (``rounds``: per partition, -1 for none): the
    oldest one's round, then their sum."""
    return int(rounds.min()), int(rounds.sum())


ALGORITHM = Algorithm("asip-admm", init, local_step, snapshot, combine, DEFAULTS, schema=schema,
                      resume=resume, uses_tol=True, warm_up=warm_up)
