"""Publish a cumulative vector as sparse deltas: traffic grows with the entries that change, not d.

Asynchronous solvers push *cumulative* state -- ASIP-SGD its gradient sum, asip-cocoa
its share ``u_k`` -- that receivers *replace*, so a lost or reordered message is
harmless. Sent dense, each push costs ``8 d`` bytes even when a time slice of
O(nnz) steps changed a few hundred entries. This module sends the same state as
``(index, new value)`` pairs of the entries that changed since the previous push,
numbered, so that a receiver knows when it missed one:

* `Publisher` (sender): ``publish(vec, now, **extra)`` gives the message fields of
  one push -- a *delta* (the changed entries' new values), or a *full* total
  (sparse ``(idx, val)`` of its nonzeros, or dense when it has more than
  ``dense_fraction * d`` of them) for the first push, every ``full_every`` s, and
  whenever a delta would be denser than that fraction. ``extra`` scalars (a step
  count, a version) travel with it and are kept with the state they belong to.
* `Subscriber` (receiver): applies each sender's messages in sequence. A gap (a
  dropped delta), a delta from an incarnation it has no full of (a restart on
  either side) or a malformed one leaves that sender *out of sync*: its vector is
  kept as it was, and `Subscriber.wants` names the senders to ask for a full.
  The request rides in the receiver's next push (``{name}_want``, the partitions it
  asks); the sender answers with `Publisher.resync`: the total as of its last
  push, with that push's sequence number, to the requester alone. A lost
  message therefore costs at most one resync; a lost request is repeated after
  ``retry`` s.

Deltas carry new *values*, not differences, so applying one twice is harmless and
no rounding accumulates at the receiver: an in-sync receiver holds exactly the
sender's last pushed vector. Messages between two operators arrive in the order
they were pushed (or not at all: asip's channel is FIFO per link), which is what
makes "the full as of the last push, then the next delta" consistent.

Wire fields of a stream ``name`` (all optional in the algorithm's schema, see
`schema_fields`): ``{name}_seq`` (int), ``{name}_idx`` (int32/int64, any length)
and ``{name}_val`` (float64) for a sparse delta or -- with ``{name}_full`` -- a
sparse full, ``{name}`` (float64, shape ``(d,)``) for a dense full, and
``{name}_want`` (int64, any length) for resync requests.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["Exchange", "Publisher", "Subscriber", "schema_fields"]

logger = logging.getLogger(__name__)

#: a delta (or a full) with more nonzeros than this share of ``d`` goes dense
DENSE_FRACTION = 1.0 / 3.0


def _index_dtype(size: int) -> np.dtype:
    return np.dtype(np.int32) if size < 2**31 - 1 else np.dtype(np.int64)


def schema_fields(name: str, size: int) -> dict[str, Any]:
    """The optional message fields of stream ``name`` over vectors of length ``size``."""
    return {f"{name}_seq": int, f"{name}_idx": (str(_index_dtype(size)), (None,)),
            f"{name}_val": ("float64", (None,)), f"{name}_full": bool,
            name: ("float64", (size,)), f"{name}_want": ("int64", (None,))}


class Publisher:
    """The sending side of one cumulative vector stream.

    Parameters
    ----------
    name : str
        Stream name: the prefix of its message fields.
    size : int
        Length of the vector.
    full_every : float or None
        Seconds between unrequested full totals (a bound on how long a receiver whose
        request was lost stays out of sync); None: only the first push and resyncs.
    dense_fraction : float
        A message with more nonzeros than this share of ``size`` is sent dense.
    """

    def __init__(self, name: str, size: int, full_every: float | None = 5.0,
                 dense_fraction: float = DENSE_FRACTION):
        self.name = name
        self.size = int(size)
        self.full_every = full_every
        self.dense_fraction = float(dense_fraction)
        self.seq = 0
        self.last = np.zeros(self.size)  # the vector as of the last push
        self.extra: dict = {}  # the scalars pushed with it
        self.full_at = -np.inf
        self.requests: set[int] = set()  # partitions that asked for a full
        self.counts = {"delta": 0, "sparse_full": 0, "dense_full": 0, "resync": 0}
        self._itype = _index_dtype(self.size)

    def publish(self, vec: np.ndarray, now: float, full: bool = False, **extra) -> dict:
        """The fields of the next push of ``vec`` (a delta when it pays, else a full; a full
        whenever ``full``)."""
        vec = np.asarray(vec, dtype=np.float64)
        if vec.shape != (self.size,):
            raise ValueError(f"stream {self.name!r}: vector of shape {vec.shape}, expected "
                             f"({self.size},)")
        self.seq += 1
        self.extra = dict(extra)
        periodic = self.full_every is not None and now - self.full_at >= self.full_every
        if self.seq == 1 or periodic or full:
            self.full_at = now
            self.last[:] = vec
            return {**self._full(), **extra}
        changed = np.flatnonzero(vec != self.last)
        if len(changed) > self.dense_fraction * self.size:
            self.full_at = now
            self.last[:] = vec
            self.counts["dense_full"] += 1
            return {f"{self.name}_seq": self.seq, self.name: self.last.copy(), **extra}
        val = vec[changed]
        self.last[changed] = val
        self.counts["delta"] += 1
        return {f"{self.name}_seq": self.seq, f"{self.name}_idx": changed.astype(self._itype),
                f"{self.name}_val": val, **extra}

    def _full(self) -> dict:
        nz = np.flatnonzero(self.last)
        if len(nz) > self.dense_fraction * self.size:
            self.counts["dense_full"] += 1
            return {f"{self.name}_seq": self.seq, self.name: self.last.copy()}
        self.counts["sparse_full"] += 1
        return {f"{self.name}_seq": self.seq, f"{self.name}_idx": nz.astype(self._itype),
                f"{self.name}_val": self.last[nz], f"{self.name}_full": True}

    def note_requests(self, payload: dict, sender: int, me: int) -> None:
        """Remember that ``sender`` asked for a full, if ``payload`` says so."""
        want = payload.get(f"{self.name}_want")
        if want is not None and me in np.asarray(want).tolist():
            self.requests.add(int(sender))

    def resyncs(self) -> list[tuple[int, dict]]:
        """``(partition, fields)`` of a full as of the last push, for each partition that asked.

        Nothing before the first push (that push is a full anyway).
        """
        if self.seq == 0 or not self.requests:
            return []
        fields = {**self._full(), **self.extra}
        out = [(to, fields) for to in sorted(self.requests)]
        self.counts["resync"] += len(out)
        self.requests.clear()
        return out


class Subscriber:
    """The receiving side of one stream: each sender's vector, kept in sync by sequence number.

    Parameters
    ----------
    name : str
        Stream name (the prefix of its message fields).
    size : int
        Length of the vector.
    retry : float
        Seconds before a resync request that got no full is repeated.
    keep_total : bool
        Keep ``total``, the sum of every sender's held vector, in step with each message:
        O(entries a delta carries), where a re-sum would cost O(d) per sender (fulls, rare,
        re-sum it exactly, which also bounds rounding drift).
    """

    def __init__(self, name: str, size: int, retry: float = 0.1, keep_total: bool = False):
        self.name = name
        self.size = int(size)
        self.retry = float(retry)
        self.total = np.zeros(self.size) if keep_total else None
        self.moved = False  # whether the last message applied changed its sender's vector
        self.vecs: dict[int, np.ndarray] = {}  # sender -> its vector (last consistent state)
        self.at: dict[int, tuple[int, int]] = {}  # sender -> (incarnation, seq) of that state
        self.synced: dict[int, bool] = {}
        self.asked: dict[int, float] = {}  # sender -> when a full was last asked for
        self.counts = {"applied": 0, "gaps": 0, "stale": 0, "malformed": 0}

    def absorb(self, msg) -> bool:
        """Apply ``msg`` (``sender``, ``incarnation``, ``payload``) if it holds this stream.

        True when the sender's vector is now exactly its state as of this message (its
        ``extra`` scalars describe it); False when the message has no part of this
        stream, is older than what is held, or could not be applied (a gap: the sender
        is out of sync until a full arrives).
        """
        pl = msg.payload
        self.moved = False
        seq = pl.get(f"{self.name}_seq")
        if seq is None:
            return False
        seq, sender, inc = int(seq), int(msg.sender), int(msg.incarnation)
        vec = self.vecs.get(sender)
        first = vec is None
        if vec is None:
            vec = self.vecs[sender] = np.zeros(self.size)
            self.synced[sender] = False
        known = self.at.get(sender)
        if known is not None and inc < known[0]:
            self.counts["stale"] += 1
            return False
        dense = pl.get(self.name)
        idx, val = pl.get(f"{self.name}_idx"), pl.get(f"{self.name}_val")
        full = dense is not None or bool(pl.get(f"{self.name}_full", False))
        if full:
            if self.synced[sender] and known is not None and (inc, seq) <= known:
                self.counts["stale"] += 1  # an older full (a resync overtaken by events)
                return False
            if dense is not None:
                if np.shape(dense) != (self.size,):
                    return self._malformed(sender)
                new = np.asarray(dense, dtype=np.float64)
            else:
                if not self._valid(idx, val):
                    return self._malformed(sender)
                new = np.zeros(self.size)
                new[np.asarray(idx)] = val
            self._write_full(vec, new, first)
            self._in_sync(sender, inc, seq)
            return True
        if idx is None or val is None:
            return self._malformed(sender)
        if known is not None and self.synced[sender] and inc == known[0]:
            if seq <= known[1]:
                self.counts["stale"] += 1
                return False
            if seq == known[1] + 1:
                if not self._valid(idx, val):
                    return self._malformed(sender)
                self._write_delta(vec, np.asarray(idx), val)
                self._in_sync(sender, inc, seq)
                return True
        # a gap, or a delta of an incarnation we hold no full of: out of sync until one comes
        if self.synced[sender]:
            self.counts["gaps"] += 1
        self.synced[sender] = False
        return False

    def _write_full(self, vec: np.ndarray, new: np.ndarray, first: bool) -> None:
        self.moved = first or not np.array_equal(vec, new)
        vec[:] = new
        if self.total is not None:
            self.total[:] = 0.0
            for held in self.vecs.values():
                self.total += held

    def _write_delta(self, vec: np.ndarray, idx: np.ndarray, val) -> None:
        old = vec[idx]  # fancy indexing: a copy
        vec[idx] = val
        new = vec[idx]  # a repeated index: its last value, the same in every copy of it
        self.moved = bool(np.any(new != old))
        if self.total is not None:
            self.total[idx] += new - old

    def _valid(self, idx, val) -> bool:
        if idx is None or val is None or np.shape(idx) != np.shape(val) or np.ndim(idx) != 1:
            return False
        idx = np.asarray(idx)
        return len(idx) == 0 or (int(idx.min()) >= 0 and int(idx.max()) < self.size)

    def _malformed(self, sender: int) -> bool:
        self.counts["malformed"] += 1
        self.synced[sender] = False
        return False

    def _in_sync(self, sender: int, inc: int, seq: int) -> None:
        self.at[sender] = (inc, seq)
        self.synced[sender] = True
        self.asked.pop(sender, None)
        self.counts["applied"] += 1

    def in_sync(self, sender: int) -> bool:
        """Whether ``sender``'s vector is its state as of one of its pushes."""
        return self.synced.get(sender, False)

    def wants(self, now: float) -> list[int]:
        """Senders to ask for a full now (out of sync, not asked within ``retry`` s)."""
        out = []
        for sender, ok in self.synced.items():
            if not ok and now - self.asked.get(sender, -np.inf) >= self.retry:
                self.asked[sender] = now
                out.append(sender)
        return out

    def want_field(self, now: float) -> dict:
        """``{name}_want`` for the next push when some sender is to be asked, else nothing."""
        want = self.wants(now)
        return {f"{self.name}_want": np.asarray(want, dtype=np.int64)} if want else {}

    def forget(self, sender: int) -> None:
        """Drop what is held of ``sender`` (e.g. its state was replaced by other means)."""
        if self.total is not None and sender in self.vecs:
            self.total -= self.vecs[sender]
        for d in (self.vecs, self.at, self.synced, self.asked):
            d.pop(sender, None)


class Exchange:
    """Both sides of one stream for an operator that pushes its own total and folds its peers'.

    Parameters
    ----------
    name, size
        As for `Publisher` and `Subscriber`.
    me : int
        This operator's partition (to find the requests addressed to it).
    full_every : float or None
        See `Publisher`.
    keep_total : bool
        See `Subscriber` (the peers' totals summed, kept in step).
    """

    def __init__(self, name: str, size: int, me: int, full_every: float | None = 5.0,
                 keep_total: bool = False):
        self.me = int(me)
        self.pub = Publisher(name, size, full_every=full_every)
        self.sub = Subscriber(name, size, keep_total=keep_total)

    def absorb(self, msg) -> bool:
        """Take one peer message: note its resync requests, apply its part of the stream.

        True when the sender's total is now its state as of this message (see
        `Subscriber.absorb`).
        """
        self.pub.note_requests(msg.payload, msg.sender, self.me)
        return self.sub.absorb(msg)

    def fields(self, vec: np.ndarray, now: float, full: bool = False, **extra) -> dict:
        """The next push of ``vec`` (delta or full), with this side's resync requests."""
        out = self.pub.publish(vec, now, full=full, **extra)
        out.update(self.sub.want_field(now))
        return out

    def resyncs(self) -> list[tuple[int, dict]]:
        """Fulls owed to peers that asked: ``(partition, fields)`` (see `Publisher.resyncs`)."""
        return self.pub.resyncs()

    def __len__(self) -> int:
        """Peers whose total is held as of one of their pushes."""
        return sum(self.sub.synced.values())

    def vector(self, sender: int) -> np.ndarray:
        """``sender``'s total as last held (zeros before any)."""
        return self.sub.vecs[sender]

    def totals(self) -> list[np.ndarray]:
        """Every peer's total as last held."""
        return list(self.sub.vecs.values())

    def counts(self) -> dict:
        """Messages missed (``gaps``) and fulls sent on request (``resyncs``)."""
        return {"gaps": self.sub.counts["gaps"], "resyncs": self.pub.counts["resync"]}
