"""Operators for the channel's end-to-end tests (importable by worker processes)."""

from __future__ import annotations

import time

import numpy as np

import asip


class FanOut(asip.Operator):
    """Latest state to everyone as a list (multicast), sparse deltas round the ring,
    and the refusals a user can hit; records what it heard."""

    def setup(self, ctx, partition):
        ctx.expect({"t": int}, optional={"w": ("float64", (None,)), "idx": ("int64", (None,)),
                                         "val": ("float64", (None,))})
        self.latest: dict[int, int] = {}
        self.sparse_from: set[int] = set()
        self.sparse_ok = True
        self.t = 0
        self.refusals = []
        for bad in (lambda: ctx.push({"a": 2**70}), lambda: ctx.push({"t": 1}, latest=3),
                    lambda: ctx.push({"t": 1}, to=[ctx.n_partitions]),
                    lambda: ctx.push({"t": 1}, to=ctx.index)):
            try:
                bad()
            except (asip.MessageError, ValueError) as exc:
                self.refusals.append(type(exc).__name__)

    def step(self, ctx):
        self.t += 1
        ctx.push({"t": self.t, "w": np.full(50, float(ctx.index))}, to=ctx.peers, latest=True)
        idx = np.array([ctx.index, 1000 + self.t], dtype=np.int64)
        ctx.push({"t": self.t, "idx": idx, "val": np.ones(2)}, to=ctx.ring())
        for m in ctx.poll(timeout=0.005):
            if "w" in m.payload:
                assert m.slot == ""
                self.latest[m.sender] = max(self.latest.get(m.sender, 0), m.payload["t"])
            else:
                self.sparse_from.add(m.sender)
                self.sparse_ok &= int(m.payload["idx"][0]) == m.sender
        time.sleep(0.002)

    def result(self, ctx):
        return {"heard": sorted(self.latest), "sparse_from": sorted(self.sparse_from),
                "sparse_ok": bool(self.sparse_ok), "refusals": self.refusals,
                "tree": [ctx.tree_parent() if ctx.tree_parent() is not None else -1,
                         *ctx.tree_children()],
                "gossip": ctx.gossip(2)}


class Flood(asip.Operator):
    """FIFO pushes of a ``d``-float vector to every peer, as fast as it can: far more
    than the links carry, so data queues up on every worker until the stage stops."""

    def __init__(self, d: int = 10_000):
        self.d = d

    def setup(self, ctx, partition):
        self.v = np.ones(self.d)
        self.heard: set[int] = set()

    def step(self, ctx):
        ctx.push({"v": self.v})
        for m in ctx.poll():
            self.heard.add(m.sender)

    def result(self, ctx):
        return {"heard": len(self.heard)}
