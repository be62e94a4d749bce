"""Small operators the runtime tests run on real clusters (importable by the workers)."""

from __future__ import annotations

import os
import time

import numpy as np
from distributed import get_worker

import asip


class Gossip(asip.Operator):
    """Broadcasts its index every step and records who it heard from and where it ran."""

    def __init__(self, payload_size: int = 10, to: int | None = None, poll_timeout: float = 0.005):
        self.payload_size = payload_size
        self.to = to
        self.poll_timeout = poll_timeout

    def setup(self, ctx, partition):
        block = partition[0] if isinstance(partition, tuple) else partition
        self.rows = int(block.shape[0])
        self.first_value = float(np.asarray(block).ravel()[0]) if block.size else 0.0
        self.heard: dict[int, int] = {}
        self.bad_values = 0
        self.steps = 0
        self.min_latency = float("inf")

    def step(self, ctx):
        if self.to is None or ctx.index != self.to:
            ctx.push({"v": np.full(self.payload_size, float(ctx.index)), "step": self.steps},
                     to=self.to)
        for msg in ctx.poll(timeout=self.poll_timeout):
            self.heard[msg.sender] = self.heard.get(msg.sender, 0) + 1
            self.min_latency = min(self.min_latency, time.time() - msg.sent_at)
            if not np.all(msg.payload["v"] == msg.sender):
                self.bad_values += 1
        self.steps += 1
        ctx.report(steps=self.steps)

    def result(self, ctx):
        senders = sorted(self.heard)
        return {
            "rows": self.rows,
            "first_value": self.first_value,
            "senders": np.array(senders, dtype=np.int64),
            "counts": np.array([self.heard[s] for s in senders], dtype=np.int64),
            "bad_values": self.bad_values,
            "min_latency": self.min_latency,
            "worker": get_worker().address,
            "pid": os.getpid(),
            "incarnation": ctx.incarnation,
        }


class PollTimer(asip.Operator):
    """Measures how long poll(0) takes while nobody sends anything."""

    def setup(self, ctx, partition):
        self.worst = 0.0
        self.waited = 0.0

    def step(self, ctx):
        t = time.perf_counter()
        ctx.poll()
        self.worst = max(self.worst, time.perf_counter() - t)
        if ctx.elapsed > 0.5 and self.waited == 0.0:
            t = time.perf_counter()
            ctx.poll(timeout=0.2)
            self.waited = time.perf_counter() - t

    def result(self, ctx):
        return {"worst": self.worst, "waited": self.waited}


class StopsEarly(asip.Operator):
    """Partition 0 returns asip.STOP after ``after`` seconds; the others would run forever."""

    def __init__(self, after: float = 0.3):
        self.after = after

    def setup(self, ctx, partition):
        pass

    def step(self, ctx):
        time.sleep(0.002)
        if ctx.index == 0 and ctx.elapsed >= self.after:
            return asip.STOP

    def result(self, ctx):
        return {"elapsed": ctx.elapsed}


class SlowSetup(asip.Operator):
    """Partition 1 spends ``seconds`` in setup: the gang cannot start in time."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def setup(self, ctx, partition):
        if ctx.index == 1:
            time.sleep(self.seconds)

    def step(self, ctx):
        time.sleep(0.01)


class BadPush(asip.Operator):
    """Tries one malformed payload, records the error, then stops."""

    def __init__(self, payload_kind: str):
        self.payload_kind = payload_kind

    def setup(self, ctx, partition):
        self.error = ""

    def step(self, ctx):
        payloads = {
            "object": {"a": np.array([None, 1], dtype=object)},
            "nested": {"a": {"b": np.zeros(2)}},
            "oversize": {"a": np.zeros(2_000_000)},
            "key": {3: np.zeros(2)},
        }
        try:
            ctx.push(payloads[self.payload_kind])
        except asip.MessageError as exc:
            self.error = str(exc)
        return asip.STOP

    def result(self, ctx):
        return {"error": self.error}
