"""``asip-svrg``: asynchronous distributed SVRG -- every operator runs local SVRG epochs at once.

Each operator ``k`` repeats, with no barrier:

1. take the model ``wbar`` from the latest iterates it has (its own and its peers' pushed
   ones that stepped against a recent anchor: a straggler's old one is absent), averaged
   per coordinate with the
   weights ``c_kj`` = the rows of partition ``k`` where feature ``j`` is nonzero (the
   aggregation of FSVRG, Konecny et al. 2016): on a feature a partition has no data for,
   its local steps only drift by the full-gradient term, and that drift must not count --
   with plain ``n_k/n`` weights it made a9a log_loss-l1 jump to 5x the optimum on a
   2-worker cluster before recovering; on dense data the weights are ``n_k/n``;
2. run ``epoch`` passes' worth of proximal SVRG steps on its own rows (`_vr_kernels`) from
   ``wbar``, against the anchor's row memory ``mem_i = s_i phi'(m_i(anchor))`` and the
   full-gradient estimate ``mu = (1/n) sum_j G_j`` (``G_j`` each partition's latest pushed
   gradient sum at an anchor; the partitions that never sent one are absent: the sum over
   those that did, divided by their rows);
3. push its iterate ``w_k`` and its gradient sum ``G_k``, as totals with a sequence number
   (receivers keep the latest: a lost or reordered message costs nothing).

Anchors and the certified stop. Partition 0 leads: it announces an anchor -- its ``wbar``,
with a version -- and, when every partition has pushed its ``G`` and loss sum at that
anchor, computes the duality gap there for free (`_primal_cert`: the gradient pass that
refreshes the SVRG memory *is* the certificate pass); it stops the stage when
``gap / |P| <= tol`` with that anchor as the model, else announces the next one. So the
snapshot refreshes at the pace of the slowest operator and nobody waits for it: between
anchors the operators keep stepping with the memory they have.

Backtracking. Local epochs on one partition's rows drift towards that partition's own
optimum; where partitions differ (ijcnn1 split in file order: a random split of the same
rows converges) and the penalty is weak, an epoch can move the average away from the
optimum (ijcnn1, log_loss-l2, alpha = 1/n, 2 workers: 60x the optimum after 4 s). The leader
sees that at the anchors: when the objective at a new anchor exceeds the best one's, it
re-announces the best anchor as a *reset* (every operator restarts its iterate there and
counts a peer's pushes from before the reset as that anchor) and cuts every operator's
local epoch to a quarter (``escale``, sent with the leader's pushes). The check needs no
certificate (`_improves`): a silent partition's loss is linearized from its latest ``f``
and ``G`` and a rise past `SLACK` rejected, so the deputy checks too. Without a
certificate the model (`combine`) is the newest best checked anchor.

Partial participation (the paper's straggler: partition 0 sleeps 2 s, re-armed 1 s after
waking). A partition not heard from for ``silence`` s (and 4 of its usual gaps between
pushes) counts as absent, as long as the
absent ones hold at most ``absent_share`` of the rows (else every one is waited for): an anchor
activates, and the next is announced, once the partitions heard from have their ``G``
there; in ``mu`` a silent partition's latest ``G`` stands in (replaced when it speaks:
exact at the fixed point), and before its first one its rows are left out and the others
reweighted (the steps solve the problem of the rows reported); ``wbar`` leaves out an
iterate that stepped against none of the last `RECENT` anchors. While the leader is
silent, partition 1 (the deputy) announces the anchors (odd versions, the leader's even:
two announcers never give one version two points); the leader takes over past them when
it speaks. The certificate still needs every partition's ``G`` at the very anchor, so
nothing is certified while a part is missing.

The estimate is the distributed SVRG of Lee et al. (local sampling, model averaging): at
the optimum ``mu = grad f(w*)`` cancels the prox step and every local step is zero, so the
fixed point is exact, and the variance vanishes as iterates and anchor converge. An
operator ``max_ahead`` epochs ahead of the news from every peer waits (its extra epochs
would only chase its own rows). Step ``1 / (3 L_max)``, ``L_max = curvature * max_i s_i
||[a_i, 1]||^2`` (``step_scale`` scales it). Smooth losses (logistic, squared), l2 or l1,
the intercept unpenalized, row weights (``LocalData.sw``). A restarted operator starts at
the anchor it next hears of (its memory is rebuilt by its first anchor pass).

References
----------
R. Johnson, T. Zhang, "Accelerating stochastic gradient descent using predictive variance
reduction", NeurIPS 2013. J. Lee, Q. Lin, T. Ma, T. Yang, "Distributed stochastic variance
reduced gradient methods by sampling extra data with replacement", JMLR 2017.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import numpy as np

from . import _kernels as K
from . import _primal_cert as C
from . import _weights as W
from ._base import Algorithm, LocalData, Outgoing, Problem, Start, StepOutput
from ._certificate import certified_model, snapshot_fields
from ._vr_kernels import anchor_pass, svrg_steps, svrg_steps_lazy, svrg_steps_scaled

__all__ = ["ALGORITHM", "SvrgState", "combine", "init", "local_step", "snapshot"]

logger = logging.getLogger(__name__)

LEADER = 0
DEPUTY = 1  # leads while the leader is silent (see "Partial participation")
REPEAT = 5  # a field that did not change rides every REPEAT-th push
SLACK = 1e-2  # a partial objective check (a silent partition) rejects a rise past this share
RECENT = 3  # a peer whose last epoch was against an older anchor than these is absent from wbar

DEFAULTS = {
    "step_scale": 1.0,  # step = step_scale / (3 L_max)
    "epoch": None,  # local passes between pushes; None: `epoch_for` the data's shape
    "tol": 1e-6,  # stop when the relative duality gap at an anchor is below this
    "max_iter": None,  # local epochs
    "max_ahead": 2,  # epochs an operator runs without news from any peer, then it waits
    "rejoin_wait": 0.3,  # a restarted leader waits this long to hear every peer
    "backtrack": 0.25,  # objective up at an anchor: reset to the best one, epochs times this
    "silence": 0.5,  # seconds without a message after which a partition counts as absent
    "absent_share": 0.125,  # ...as long as the absent ones hold at most this share of the rows
    "seed": None,
}


class SvrgState(NamedTuple):
    """One operator's iterate, anchor memory and its view of the peers."""

    problem: Problem
    params: dict
    step: float
    w: np.ndarray  # own iterate (pushed)
    mem: np.ndarray  # s_i phi'(m_i) at the anchor
    grad: np.ndarray  # own G at the anchor
    rng: np.ndarray
    peers: dict  # sender -> {"key", "w", "G", "f", "gver", "cnt", side, side_g}
    cnt: np.ndarray  # rows with a nonzero per coordinate (the intercept: all rows)
    clock: dict  # seq, epochs, ahead, ver (own anchor version), f, side, side_g, anchor
    lead: dict  # leader only: ver, anchor, best_dual, gap, rel_gap, certified


def validate(problem: Problem, params: dict) -> None:
    """Raise ValueError for what asip-svrg cannot solve (checked on the driver, before launch)."""
    if problem.curvature is None:
        raise ValueError("solver 'asip-svrg' needs a smooth loss (log_loss or squared_error); "
                         "for hinge use 'asip-cocoa' or 'admm'")
    if not params["step_scale"] > 0 or not (params["epoch"] is None or params["epoch"] > 0):
        raise ValueError(f"step_scale and epoch must be positive for solver 'asip-svrg', got "
                         f"{params['step_scale']!r} and {params['epoch']!r}")
    if not 0 <= params["absent_share"] < 1:
        raise ValueError(f"absent_share must be in [0, 1) for solver 'asip-svrg', got "
                         f"{params['absent_share']!r}")
    if not params["silence"] > 0:
        raise ValueError(f"silence must be positive seconds for solver 'asip-svrg', got "
                         f"{params['silence']!r}")
    if not 0 < params["backtrack"] <= 1:
        raise ValueError(f"backtrack must be in (0, 1] for solver 'asip-svrg', got "
                         f"{params['backtrack']!r}")


def init(problem: Problem, data: LocalData, params: dict) -> SvrgState:
    """Anchor and iterate at zero, the memory of the zero anchor (one pass)."""
    validate(problem, params)
    lmax = problem.curvature * (problem.sq_max + problem.fit_intercept) * W.max_weight(data)
    step = params["step_scale"] / (3.0 * max(lmax, 1e-12))
    seed = params["seed"]
    seed = None if seed is None else seed * 1_000_003 + data.index * 7919 + data.incarnation
    p = problem.p
    epoch = params["epoch"] if params["epoch"] is not None else epoch_for(data, p)
    state = SvrgState(problem, params, float(step), np.zeros(p), np.zeros(data.n), np.zeros(p),
                      K.make_rng(seed), {}, _counts(problem, data),
                      {"seq": 0, "epochs": 0.0, "ahead": 0.0, "epoch": float(epoch), "base_epoch": float(epoch),
                       "escale": 1.0, "reset": -1, "ver": -1, "anchor": np.zeros(p),
                       "rejoining": data.incarnation > 0, "started": None,
                       "leader": data.index == LEADER, "acting": data.index == LEADER,
                       "heard": {}},
                      {"ver": 0, "anchor": np.zeros(p), "best_dual": -np.inf, "gap": np.inf,
                       "best_fs": {}, "best_anchor": np.zeros(p),
                       "rel_gap": np.inf, "certified": None,
                       "certify": C.certifiable(problem, data.sw is not None)})
    if not state.clock["rejoining"]:
        _anchor(state, data, 0, np.zeros(p))
        if data.index in (LEADER, DEPUTY):  # the start: the model until a check (a
            state.lead["best_ver"] = 0  # straggling leader's snapshot may be missing)
    return state


def epoch_for(data: LocalData, p: int) -> float:
    """Local passes between pushes: 1, or up to 4 where ``p`` is large against the partition's
    nonzeros (each push costs O(p): averaging, sending and receiving the iterate; at 100k x
    10^6 with 30 nonzeros a row, 2 passes a push reached 1e-5 where 1 reached 2e-4)."""
    nnz = len(data.X[1]) if isinstance(data.X, tuple) else data.X.size
    return float(min(4, max(1, int(np.ceil(3.0 * p / max(nnz, 1))))))


def _counts(problem: Problem, data: LocalData) -> np.ndarray:
    """Rows with a nonzero, per coordinate (float; the intercept counts every row)."""
    if isinstance(data.X, tuple):
        cnt = np.bincount(data.X[1], minlength=problem.n_features).astype(np.float64)
    else:
        cnt = np.count_nonzero(data.X, axis=0).astype(np.float64)
    return np.append(cnt, float(data.n)) if problem.fit_intercept else cnt


def _sw(data: LocalData) -> np.ndarray:
    return np.zeros(0) if data.sw is None else data.sw


def _anchor(state: SvrgState, data: LocalData, ver: int, a: np.ndarray) -> None:
    """Move the own anchor to ``a``: memory, ``G`` and loss sum there (and the intercept's
    certificate sums). ``a`` is copied first: one from a message is read-only, a type of its
    own to numba, and the kernels compiled again for it inside the run on a fresh install."""
    pb, clock = state.problem, state.clock
    a = np.array(a, dtype=np.float64, order="C")  # writeable, contiguous: the kernels' type
    t0 = time.perf_counter()
    clock["f"] = float(anchor_pass(data.X, data.y, _sw(data), a, pb.loss,
                                   pb.fit_intercept, state.mem, state.grad))
    _spent(clock, "anchor", t0)
    clock["ver"], clock["anchor"] = int(ver), a
    clock["recent"] = (clock.get("recent", []) + [int(ver)])[-RECENT:]
    # the anchors a peer's latest G is at, and the last few (`_improves` linearizes there)
    seen = clock.setdefault("anchors", {})
    seen[int(ver)] = clock["anchor"]
    held = {e["gver"] for e in state.peers.values()}
    for v in [v for v in seen if v < ver - 2 and v not in held]:
        del seen[v]
    if "act" not in clock:  # the first anchor is active at once
        clock["act"] = {"ver": int(ver), "mem": state.mem.copy(), "grad": state.grad.copy()}
    if pb.fit_intercept:
        clock["side"], clock["side_g"] = (
            C.side_parts(pb, data, a) if state.lead["certify"]
            else (np.zeros(C.side_len(pb)), np.zeros(pb.n_features)))


def _absorb(state: SvrgState, data: LocalData, inbox, now: float) -> None:
    if inbox:
        state.clock["ahead"] = 0.0
    for msg in inbox:
        pl = msg.payload
        _heard(state.clock, msg.sender, now)
        key = (msg.incarnation, int(pl["seq"]))
        old = state.peers.get(msg.sender)
        if old is not None and key <= old["key"]:
            continue
        same = old is not None and old["key"][0] == key[0]
        gs = dict(old["Gs"]) if same else {}
        entry = {"key": key, "w": np.asarray(pl["w"], dtype=np.float64), "Gs": gs,
                 "act": int(pl["act"]),
                 "cnt": (np.asarray(pl["cnt"], dtype=np.float64) if "cnt" in pl else
                         old["cnt"] if old is not None else None)}
        if "G" in pl:  # G, f and the intercept's sums belong to the anchor gver
            gs[int(pl["gver"])] = np.asarray(pl["G"], dtype=np.float64)
            for v in sorted(gs)[:-3]:  # at most two anchors are live; keep three
                del gs[v]
            entry.update(G=gs[int(pl["gver"])], f=float(pl["f"]), gver=int(pl["gver"]))
            if "side" in pl:
                entry.update(side=np.asarray(pl["side"]), side_g=np.asarray(pl["side_g"]))
        elif same:  # the G of the latest anchor this sender's pushes carried
            entry.update({k: old[k] for k in ("G", "f", "gver", "side", "side_g") if k in old})
        else:
            entry.update(G=None, f=0.0, gver=-1)
        state.peers[msg.sender] = entry
        if msg.sender in (LEADER, DEPUTY) and "escale" in pl:  # the deputy's while it leads
            _adopt_scale(state.clock, float(pl["escale"]), int(pl["reset"]))
        # anchors come from the leader, or from the deputy while it stands in (odd versions)
        if msg.sender in (LEADER, DEPUTY) and "anchor" in pl and data.index != LEADER and \
                msg.sender != data.index and int(pl["aver"]) > max(
                    state.clock["ver"], state.clock.get("next", (-1,))[0]):
            state.clock["next"] = (int(pl["aver"]), np.asarray(pl["anchor"], dtype=np.float64))


def _heard(clock: dict, sender: int, now: float) -> None:
    """Note a message from ``sender`` at ``now``, and the mean gap between its arrivals."""
    last = clock["heard"].get(sender)
    clock["heard"][sender] = now
    if last is not None and now > last:
        iv = clock.setdefault("interval", {}).get(sender)
        clock["interval"][sender] = now - last if iv is None else 0.8 * iv + 0.2 * (now - last)


def _silent(state: SvrgState, j: int, since: float) -> bool:
    """Whether partition ``j`` has been silent for ``silence`` s and 4 of its usual gaps, and
    of the own epochs (a partition whose epochs take seconds, at 1M rows, is not silent
    between them)."""
    clock = state.clock
    gap = 4.0 * max(clock.get("interval", {}).get(j, 0.0), clock.get("epoch_s", 0.0))
    return clock["now"] - clock["heard"].get(j, since) > max(state.params["silence"], gap)


def _adopt_scale(clock: dict, escale: float, reset: int) -> None:
    """The leader's epoch scale and latest reset anchor version (never backwards)."""
    if reset > clock["reset"] or escale < clock["escale"]:
        clock["escale"] = min(clock["escale"], escale)
        clock["reset"] = max(clock["reset"], reset)
        clock["epoch"] = clock["base_epoch"] * clock["escale"]


def _wbar(state: SvrgState, data: LocalData) -> np.ndarray:
    """The latest iterates averaged per coordinate by data counts, of the partitions whose
    last epoch was against one of the `RECENT` anchors: a straggler's old iterate is absent,
    not pinned (counted as the anchor, a straggler holding 1/16 of the rows shrank every
    average towards it and held a9a at 1e-2 until it woke). By anchors, not by seconds: a
    peer whose pushes come late under load still counts (dropping and re-adding peers by
    the clock made the average jitter, 2e-3 to 2e-2 on a 1/n problem)."""
    pb, clock = state.problem, state.clock
    oldest = min(clock.get("recent", [clock["ver"]]))
    items, sizes = [(state.cnt, state.w)], [pb.sizes[data.index]]
    for j, e in sorted(state.peers.items()):
        if j == data.index or e["act"] < oldest:
            continue
        # counts not in yet (a lost early push): by rows; from before a reset: the anchor
        items.append((e["cnt"] if e["cnt"] is not None else np.full(pb.p, float(pb.sizes[j])),
                      e["w"] if e["act"] >= state.clock["reset"] else state.clock["anchor"]))
        sizes.append(pb.sizes[j])
    return count_average(items, sizes)


def _live(state: SvrgState, data: LocalData) -> list:
    """The peers an anchor waits for: all, but those silent (`_silent`) while
    they hold at most ``absent_share`` of the rows (a straggler); when more are silent (a
    loaded machine, where half the partitions lagged by seconds), every one: their stale
    ``G`` in ``mu`` would be too large a share (a9a diverged to 200x the optimum)."""
    params = state.params
    peers = [j for j in range(data.n_partitions) if j != data.index]
    absent = [j for j in peers if _silent(state, j, -np.inf)]
    if sum(state.problem.sizes[j] for j in absent) > params["absent_share"] * \
            state.problem.n_total:
        absent = []
    return [j for j in peers if j not in absent]


def count_average(items: list, sizes: list) -> np.ndarray:
    """``sum_k c_k w_k / sum_k c_k`` per coordinate; where no partition has data, by rows."""
    num, den = np.zeros_like(items[0][1]), np.zeros_like(items[0][0])
    for c, w in items:  # in place: at d = 10^6 stacked temporaries cost more than the epoch
        num += c * w
        den += c
    empty = np.flatnonzero(den <= 0)
    np.divide(num, den, out=num, where=den > 0)
    if empty.size:
        num[empty] = sum(n * w[empty] for (_, w), n in zip(items, sizes)) / float(sum(sizes))
    return num


def _mu(state: SvrgState, data: LocalData) -> np.ndarray:
    """``(1/n) sum_j G_j`` at the active anchor; a peer without a ``G`` there: its latest
    (a silent straggler's stale part, replaced when it speaks: exact at the fixed point); the
    peers that never sent one are absent -- the sum is over the rows reported, scaled to
    all (so the steps solve the reported rows' problem, reweighted, until they report)."""
    pb, act = state.problem, state.clock["act"]
    total, rows = act["grad"].copy(), float(data.n)
    for j in range(data.n_partitions):
        if j != data.index:
            e = state.peers.get(j)
            if e is not None and e["G"] is not None:
                total += e["Gs"].get(act["ver"], e["G"])
                rows += pb.sizes[j]
    return total / rows


def _activate(state: SvrgState, data: LocalData) -> None:
    """Step against the newest anchor once every partition's ``G`` there is in (of those
    heard from lately, `_live`): the full gradient then belongs to one point (a mix of anchors' gradients with the own memory
    made the local epochs overshoot under message delay, 3x the optimum on a9a l1)."""
    clock = state.clock
    act = clock["act"]
    if act["ver"] == clock["ver"]:
        return
    # every partition heard from lately (a silent one: its latest G stands in, `_mu`)
    if all(j in state.peers and clock["ver"] in state.peers[j]["Gs"]
           for j in _live(state, data)):
        act["mem"][:] = state.mem
        act["grad"][:] = state.grad
        act["ver"] = clock["ver"]


def _behind(state: SvrgState, data: LocalData) -> bool:
    """Whether a peer heard from lately no longer holds a ``G`` at the active anchor: ``mu``
    would mix anchors against the own memory (a straggler waking after 2 s stepped from its
    anchor of 2 s before against its peers' new ``G`` and threw a9a to 5x the optimum)."""
    ver = state.clock["act"]["ver"]
    return any(j in state.peers and state.peers[j]["G"] is not None
               and ver not in state.peers[j]["Gs"] for j in _live(state, data))


def _steps(state: SvrgState, data: LocalData, n_steps: int, rng, w, mu) -> None:
    """``n_steps`` SVRG steps on ``w`` with the kernel for the data's layout and penalty."""
    pb = state.problem
    args = (data.X, data.y, _sw(data), pb.loss, pb.fit_intercept, n_steps, rng, w,
            state.clock["act"]["mem"], mu, state.step)
    if not isinstance(data.X, tuple):
        svrg_steps(*args, pb.penalty, pb.alpha)
    elif pb.penalty == K.L2:
        svrg_steps_scaled(*args, pb.alpha)
    else:
        svrg_steps_lazy(*args, pb.penalty, pb.alpha)


def warm_up(state: SvrgState, data: LocalData) -> None:
    """Load (or compile) the epoch's kernel with one step on copies, before the gang starts.
    (The operator's default warm-up, a first `local_step` on a copy of the state, ran a whole
    epoch: 0.7 s of setup at 1M x 10^5 before any operator started.)"""
    if "act" in state.clock:  # a restarted operator has no anchor yet: nothing to step with
        _steps(state, data, 1, state.rng.copy(), state.w.copy(), np.zeros(state.problem.p))


def local_step(state: SvrgState, data: LocalData, inbox, now: float) -> StepOutput:
    """Absorb, refresh the anchor if a new one was announced, one local epoch, push."""
    _absorb(state, data, inbox, now)
    clock, params = state.clock, state.params
    if clock["started"] is None:
        clock["started"] = now
    clock["now"] = now
    clock["acting"] = _acting(state, data, now)
    nxt = clock.pop("next", None)
    if nxt is not None:
        _anchor(state, data, *nxt)
        if clock["rejoining"] or nxt[0] == clock["reset"]:
            state.w[:] = nxt[1]
    if clock["rejoining"]:
        if clock["acting"]:  # restarted leader: hear the peers, then anchor past them
            if len(state.peers) < data.n_partitions - 1 and now - clock["started"] < params[
                    "rejoin_wait"]:
                return StepOutput(state, wait=0.02)
            _reanchor(state, data)
        elif clock["ver"] < 0:  # restarted: wait to hear of an anchor
            return StepOutput(state, wait=0.02)
        clock["rejoining"] = False
    _activate(state, data)
    # Anchor news goes out before an epoch, not after one: a peer answers a new anchor with
    # its G there, the leader certifies and announces the next as soon as the G are in (an
    # anchor took 2-3 epochs a side; at d = 10^6 the certified point lagged the iterates).
    done, early = False, nxt is not None
    if clock["acting"] and data.n_partitions > 1:
        ver = state.lead["ver"]
        done = _lead(state, data, None)
        early = done or state.lead["ver"] != ver
    if early:
        return StepOutput(state, (Outgoing(_payload(state)),), done=done)
    wait = 0.0
    epoch = clock["epoch"]
    if data.n_partitions > 1 and clock["ahead"] >= max(params["max_ahead"], 2 * epoch):
        wait = 0.005  # far ahead of every peer's news: let them catch up
    elif _behind(state, data):
        wait = 0.005  # the peers' G are at newer anchors than the own memory: activate first
    else:
        t0 = time.perf_counter()
        state.w[:] = _wbar(state, data)
        n_steps = max(int(epoch * data.n), 1)
        mu = _mu(state, data)
        t0 = _spent(clock, "average", t0)
        c0 = time.thread_time()
        _steps(state, data, n_steps, state.rng, state.w, mu)
        took = _spent(clock, "epoch", t0) - t0
        clock["epoch_s"] = took if "epoch_s" not in clock else 0.8 * clock["epoch_s"] + 0.2 * took
        clock["spent"]["epoch_cpu"] = clock["spent"].get("epoch_cpu", 0.0) + time.thread_time() - c0
        clock["epochs"] += epoch
        clock["ahead"] += epoch
        clock["stepped"] = clock["act"]["ver"]  # an epoch done against this anchor
    done = False
    payload = _payload(state)
    if clock["acting"]:
        done = _lead(state, data, payload)
    mi = params["max_iter"]
    if mi is not None and clock["epochs"] >= mi:
        done = True
    return StepOutput(state, (Outgoing(payload),), wait=wait, done=done)


def _acting(state: SvrgState, data: LocalData, now: float) -> bool:
    """Whether this operator announces anchors: the leader always; the deputy while the
    leader is silent and counts as absent (a straggling leader froze the anchors)."""
    if data.index == LEADER:
        return True
    if data.index != DEPUTY:
        return False
    # only while the leader counts as absent (`_live`): else every anchor waits for it anyway
    return _silent(state, LEADER, state.clock["started"]) and LEADER not in _live(state, data)


def _spent(clock: dict, what: str, t0: float) -> float:
    """Add the seconds since ``t0`` to ``clock["spent"][what]`` (the profile in the snapshot:
    where an operator's time goes); returns now."""
    now = time.perf_counter()
    spent = clock.setdefault("spent", {})
    spent[what] = spent.get(what, 0.0) + now - t0
    return now


def _repeat(clock: dict, field: str, ver: int) -> bool:
    """Whether this push carries ``field`` of version ``ver``: the first push since the
    version changed, then every `REPEAT`-th (a lost copy is made good; at d = 10^6 every dense
    field is 8 MB a push)."""
    sent = clock.setdefault("sent", {})
    last = sent.get(field)
    k = last[1] if last is not None and last[0] == ver else 0
    sent[field] = (ver, k + 1)
    return k < 1 or clock["seq"] % REPEAT == 0


def _payload(state: SvrgState) -> dict:
    clock, pb = state.clock, state.problem
    clock["seq"] += 1
    out = {"w": state.w.copy(), "seq": clock["seq"], "f": clock["f"], "gver": clock["ver"],
           "act": clock.get("stepped", -1)}
    if _repeat(clock, "G", clock["ver"]):
        out["G"] = state.grad.copy()
        if pb.fit_intercept:
            out.update(side=clock["side"], side_g=clock["side_g"])
    if _repeat(clock, "cnt", 0):
        out["cnt"] = state.cnt
    if clock["acting"] and not clock["rejoining"]:
        out.update(escale=clock["escale"], reset=clock["reset"])
        out["aver"] = clock["ver"]  # the leader's anchor
        if _repeat(clock, "anchor", clock["ver"]):
            out["anchor"] = clock["anchor"]
    return out


def _reanchor(state: SvrgState, data: LocalData) -> None:
    """The leader announces a new anchor (its ``wbar``) with a version past every peer's."""
    lead = state.lead
    ver = _next_version(state, data)
    a = _wbar(state, data)
    if state.clock["rejoining"]:
        state.w[:] = a
    lead.update(ver=ver, anchor=a)
    _anchor(state, data, ver, a)


def _next_version(state: SvrgState, data: LocalData) -> int:
    """A version past every one heard of: even from the leader, odd from the deputy (two
    operators that both announce never give one version two anchors)."""
    clock = state.clock
    ver = max([state.lead["ver"], clock["ver"], clock.get("next", (-1,))[0]]
              + [e["gver"] for e in state.peers.values()]) + 1
    return ver + (ver - (data.index != LEADER)) % 2


def _lead(state: SvrgState, data: LocalData, payload: dict | None) -> bool:
    """The leader: certify the anchor once every ``G`` is in; announce the next one once every
    operator has run an epoch against it (pushes ``act``: that anchor); ``payload``, a push
    already built, gets the new anchor's fields."""
    lead, clock, pb = state.lead, state.clock, state.problem
    ver = lead["ver"]
    # peers past a restarted leader, or past the deputy's or leader's last anchor: take over
    if clock["ver"] > ver or any(e["gver"] > ver for e in state.peers.values()):
        _reanchor(state, data)
        if payload is not None:
            payload.update(_payload_fields(state))
        return False
    peers = [state.peers.get(j) for j in range(data.n_partitions) if j != data.index]
    live = [state.peers.get(j) for j in _live(state, data)]
    if clock["ver"] != ver or any(e is None or e["gver"] != ver for e in live):
        return False
    # the certificate needs every partition's part at this very anchor: never a silent one's
    complete = all(e is not None and e["gver"] == ver for e in peers)
    if lead.get("checked") != ver:
        lead["checked"] = ver
        a = lead["anchor"]
        if not _improves(state, data, a):
            _backtrack(state, data)
            if payload is not None:
                payload.update(_payload_fields(state))
            return False
        if complete and lead["certify"]:
            rows = [(clock["f"], state.grad, clock.get("side"), clock.get("side_g"))
                    if j == data.index else (state.peers[j]["f"], state.peers[j]["G"],
                                             state.peers[j].get("side"),
                                             state.peers[j].get("side_g"))
                    for j in range(data.n_partitions)]
            parts = [C.free_parts(pb, pb.sizes[j], a, *row) for j, row in enumerate(rows)]
            primal, dual, _ = C.relative_gap(pb, parts, a)
            if C.record_gap(lead, primal, dual, a, state.params["tol"]):
                return True
    if clock.get("stepped") != ver or any(e["act"] != ver for e in live):
        return False  # the next anchor once everyone (heard from) steps against this one
    old = lead["anchor"]
    _reanchor(state, data)  # the next anchor: the leader's model now
    if payload is not None:
        payload.update(_payload_fields(state))
    if not lead["certify"]:  # no certificate for this problem: stop when the anchor settles
        return complete and float(np.linalg.norm(lead["anchor"] - old)) <= state.params["tol"] * max(
            float(np.linalg.norm(lead["anchor"])), 1e-12)
    return False


def _improves(state: SvrgState, data: LocalData, a: np.ndarray) -> bool:
    """Whether the objective at anchor ``a`` is no worse than at the best anchor -- with every
    partition's loss sum at both when all are in (the primal itself), else a silent one's
    linearized from its latest ``(f, G)`` at its anchor, the part that stands in for it in
    ``mu``: the check needs no certificate, so the deputy and a leader with a straggler absent
    make it too (made only at full certificates, 16 partitions of ijcnn1 with the leader
    silent ran to 9x the optimum, unchecked). ``a`` becomes the best when it is."""
    lead, clock, pb = state.lead, state.clock, state.problem
    ver, seen = clock["ver"], clock["anchors"]
    fs = {data.index: clock["f"]}
    fs.update((j, e["f"]) for j, e in state.peers.items() if e["gver"] == ver)
    best, b = lead.get("best_fs", {}), lead["best_anchor"]

    def value(j: int, exact: dict, x: np.ndarray) -> float | None:
        if j in exact:
            return exact[j]
        e = state.peers.get(j)
        if e is None or e["G"] is None or e["gver"] not in seen:
            return None
        return e["f"] + float(e["G"] @ (x - seen[e["gver"]]))
    now = then = rows = 0.0
    for j in range(data.n_partitions):
        va, vb = value(j, fs, a), value(j, best, b)
        if va is not None and vb is not None:
            now, then, rows = now + va, then + vb, rows + pb.sizes[j]
    if rows and best:
        now, then = now / rows + pb.penalty_value(a), then / rows + pb.penalty_value(b)
        # exact parts: any rise; a silent one's linearized: a rise past SLACK of the best
        # (a stale G linearized early wobbles by ~2e-3; a diverging run rose by factors)
        exact = len(fs) == len(best) == data.n_partitions
        if now > then + (1e-9 if exact else SLACK) * abs(then):
            return False
        if now >= then:  # within the slack: kept, not the best (a creep stays bounded)
            return True
    lead.update(best_fs=fs, best_anchor=a.copy(), best_ver=ver)
    return True


def _backtrack(state: SvrgState, data: LocalData) -> None:
    """The objective went up at the newest anchor: re-announce the best one as a reset and
    cut the local epochs (see the module docstring)."""
    lead, clock = state.lead, state.clock
    ver = _next_version(state, data)
    a = lead["best_anchor"].copy()
    lead.update(ver=ver, anchor=a)
    _adopt_scale(clock, clock["escale"] * state.params["backtrack"], ver)
    _anchor(state, data, ver, a)
    state.w[:] = a
    logger.debug("asip-svrg: objective up at anchor %d; reset to the best, epoch %.3g passes",
                 ver - 1, clock["epoch"])


def _payload_fields(state: SvrgState) -> dict:
    """The anchor-dependent fields of a push, after the leader moved its anchor (or reset it)."""
    clock, pb = state.clock, state.problem
    out = {"G": state.grad.copy(), "f": clock["f"], "gver": clock["ver"], "aver": clock["ver"],
           "anchor": clock["anchor"], "escale": clock["escale"], "reset": clock["reset"]}
    _repeat(clock, "G", clock["ver"])
    _repeat(clock, "anchor", clock["ver"])
    if pb.fit_intercept:
        out.update(side=clock["side"], side_g=clock["side_g"])
    return out


def schema(problem: Problem) -> tuple[dict, dict]:
    """An iterate ``(w, seq, gver, act)``; the gradient total ``G`` (with ``f`` and the
    intercept's sums), the counts and the leader's anchor only when new and then now and then."""
    vec = ("float64", (problem.p,))
    req = {"w": vec, "seq": int, "f": float, "gver": int, "act": int}
    opt = {"aver": int, "anchor": vec, "G": vec, "cnt": vec, "escale": float, "reset": int}
    if problem.fit_intercept:
        opt.update(side=("float64", (C.side_len(problem),)),
                   side_g=("float64", (problem.n_features,)))
    return req, opt


def resume(state: SvrgState, data: LocalData, start: Start) -> SvrgState:
    """Start iterate and anchor at the saved model."""
    w = np.array(start.w, dtype=np.float64)
    state.w[:] = w
    state.lead["anchor"], state.lead["best_anchor"] = w.copy(), w.copy()
    if not state.clock["rejoining"]:
        state.clock.pop("act", None)
        _anchor(state, data, 0, w)
    return state


def snapshot(state: SvrgState) -> dict:
    """Own iterate and epochs ``t``; the leader adds the gap and the certified anchor."""
    snap = {"w": state.w.copy(), "t": int(state.clock["epochs"]), "cnt": state.cnt,
            "anchors": int(state.clock["ver"])}
    snap.update({f"seconds_{k}": float(v) for k, v in state.clock.get("spent", {}).items()})
    snap.update(snapshot_fields(state.lead))  # the latest anchor's gap, as asip-cocoa's
    if "best_ver" in state.lead:  # an announcer's best checked anchor (`_improves`; the
        # start until its first check)
        snap.update(best=state.lead["best_anchor"].copy(), best_ver=int(state.lead["best_ver"]))
    return snap


def combine(problem: Problem, snapshots: list) -> np.ndarray:
    """The certified anchor if there is one, else the best checked anchor, else the iterates
    averaged as in a step (an
    iterate more than ``2 RECENT`` anchor versions behind the newest, a sleeping straggler's,
    left out as in `_wbar`)."""
    model = certified_model(snapshots)
    if model is not None:
        return model
    best = [s for s in snapshots if s is not None and "best" in s]
    if best:  # the newest anchor checked no worse than every earlier one: never a diverged
        # iterate (between checks, stale peers' iterates of 16 partitions on 2 workers ran
        # to 19x the optimum on ijcnn1 before the leader's next check reset them)
        return np.asarray(max(best, key=lambda s: s["best_ver"])["best"], dtype=np.float64)
    got = [(j, s) for j, s in enumerate(snapshots) if s is not None and "w" in s]
    top = max((int(s["anchors"]) for _, s in got if "anchors" in s), default=None)
    if top is not None:
        got = [(j, s) for j, s in got if int(s.get("anchors", top)) >= top - 2 * RECENT]
    if not got:
        return np.zeros(problem.p)
    items = [(np.asarray(s["cnt"], dtype=np.float64) if "cnt" in s else
              np.full(problem.p, float(problem.sizes[j])), np.asarray(s["w"], dtype=np.float64))
             for j, s in got]
    return count_average(items, [problem.sizes[j] for j, _ in got])


ALGORITHM = Algorithm("asip-svrg", init, local_step, snapshot, combine, DEFAULTS,
                      uses_tol=True, schema=schema, resume=resume, validate=validate,
                      sample_weight=True, warm_up=warm_up)
