"""Small operators the runtime tests run on real clusters (importable by the workers)."""

from __future__ import annotations

import os
import time

import numpy as np
from distributed import get_worker

import asip


class Gossip(asip.Operator):
    """Broadcasts its index every step and records who it heard from and where it ran.

    ``quiet_for``: no pushes in the first seconds of the stage. ``stop_after_restart``: a
    restarted incarnation ends the stage (STOP) after that many steps, so a test waits for
    the restart instead of racing it against ``max_time``."""

    def __init__(self, payload_size: int = 10, to: int | None = None, poll_timeout: float = 0.005,
                 quiet_for: float = 0.0, stop_after_restart: int | None = None):
        self.payload_size = payload_size
        self.to = to
        self.poll_timeout = poll_timeout
        self.quiet_for = quiet_for
        self.stop_after_restart = stop_after_restart

    def setup(self, ctx, partition):
        block = partition[0] if isinstance(partition, tuple) else partition
        self.rows = int(block.shape[0])
        self.first_value = float(np.asarray(block).ravel()[0]) if block.size else 0.0
        self.heard: dict[int, int] = {}
        self.bad_values = 0
        self.steps = 0
        self.min_latency = float("inf")

    def step(self, ctx):
        if (self.to is None or ctx.index != self.to) and ctx.elapsed >= self.quiet_for:
            ctx.push({"v": np.full(self.payload_size, float(ctx.index)), "step": self.steps},
                     to=self.to)
        for msg in ctx.poll(timeout=self.poll_timeout):
            self.heard[msg.sender] = self.heard.get(msg.sender, 0) + 1
            self.min_latency = min(self.min_latency, time.time() - msg.sent_at)
            if not np.all(msg.payload["v"] == msg.sender):
                self.bad_values += 1
        self.steps += 1
        ctx.report(steps=self.steps)
        if ctx.incarnation > 0 and self.stop_after_restart is not None \
                and self.steps >= self.stop_after_restart:
            return asip.STOP
        return None

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


class Saboteur(asip.Operator):
    """Partition 0 writes hostile items straight onto partition 1's channel, then one good one.

    Partition 1 must count and drop every hostile item, never execute the pickle, and
    still receive the good message and run on.
    """

    def __init__(self, marker: str):
        self.marker = marker

    def setup(self, ctx, partition):
        self.sent = False
        self.good = 0

    def step(self, ctx):
        if ctx.index == 0 and not self.sent:
            self._attack(ctx)
            self.sent = True
        for msg in ctx.poll(timeout=0.01):
            if msg.payload.get("good"):
                self.good += 1

    def _attack(self, ctx):
        import pickle

        import msgpack
        from distributed.comm import connect
        from distributed.utils import sync

        from asip._wire import Limits, encode_message, wire_item

        marker = self.marker

        class Exploit:
            def __reduce__(self):
                return (open, (marker, "w"))

        limits = Limits(1 << 20, 16, 1024)
        good = encode_message({"good": True, "v": np.ones(3)}, run_id=ctx.run_id, sender=0,
                              incarnation=0, seq=0, limits=limits)
        good_item = [1, *wire_item(good, limits)]
        other_run = encode_message({"v": np.ones(3)}, run_id="someone-else", sender=0,
                                   incarnation=0, seq=0, limits=limits)
        bad_shape = msgpack.packb([2, ctx.run_id, 0, 0, 1, 0.0, {}, [["v", "<f8", [1000]]], None])
        object_dtype = msgpack.packb([2, ctx.run_id, 0, 0, 1, 0.0, {}, [["v", "|O", [1]]], None])
        hostile = [
            [1, pickle.dumps(Exploit())],  # a pickle where msgpack is expected
            [1, good.header, pickle.dumps(Exploit())],  # a pickle where raw bytes are expected
            [1, b"\x00garbage\xff"],
            [1, *wire_item(other_run, limits)],  # another run's message
            [1, bad_shape, b"\x00" * 24],  # shape and buffer disagree
            [1, object_dtype, b"\x00" * 8],
            [7, *wire_item(good, limits)],  # no such partition
            "not a list",
        ]
        plugin = ctx._plugin
        address = plugin.directory[1][0]
        op = f"asip_deliver_{ctx.run_id}"

        async def send():  # as a peer link does: handshake, then batches on the stream
            from asip._stream import read_message

            comm = await connect(address, **plugin.worker.connection_args)
            await comm.write({"op": op, "reply": True})
            assert await read_message(comm, 4096) is True
            for batch in (hostile, [good_item], "not even a list"):
                await comm.write({"batch": batch})
                await read_message(comm, 4096)
            await comm.close()

        sync(plugin.loop, send)

    def result(self, ctx):
        import os

        return {"good": self.good, "exploited": os.path.exists(self.marker)}


class Validated(asip.Operator):
    """Partition 1 expects {"w": float64[3], "t": int}; partition 0 sends good and poisoned updates."""

    def setup(self, ctx, partition):
        ctx.expect({"w": ("float64", (3,)), "t": int}, optional={"note": str})
        self.sent = False
        self.received: list = []
        self.model = np.zeros(3)

    def step(self, ctx):
        if ctx.index == 0 and not self.sent:
            good = np.ones(3)
            for payload in (
                {"w": good, "t": 1},
                {"w": np.array([1.0, np.nan, 0.0]), "t": 2},  # NaN
                {"w": np.array([np.inf, 0.0, 0.0]), "t": 3},  # inf
                {"w": np.ones(4), "t": 4},  # wrong shape
                {"w": np.ones(3, dtype=np.float32), "t": 5},  # wrong dtype
                {"w": good, "t": 6, "extra": 1},  # unexpected key
                {"w": good},  # missing key
                {"w": good, "t": 1.5},  # wrong type
                {"w": good, "t": 9, "note": "fine"},
            ):
                ctx.push(payload, to=1)
            self.sent = True
        for msg in ctx.poll(timeout=0.01):
            self.received.append(msg.payload["t"])
            self.model += msg.payload["w"]

    def result(self, ctx):
        return {"received": np.array(self.received, dtype=np.int64), "model": self.model}


class Reporter(asip.Operator):
    """Reports a model that grows with time: w = elapsed * (index + 1); can start from a value."""

    def __init__(self, start: dict | None = None):
        self.start = start or {}

    def setup(self, ctx, partition):
        self.offset = float(self.start.get(ctx.index, 0.0))

    def step(self, ctx):
        time.sleep(0.01)
        ctx.report(w=np.full(2, self.offset + ctx.elapsed * (ctx.index + 1)))

    def result(self, ctx):
        return {"offset": self.offset}


class TimedReporter(Reporter):
    """A `Reporter` that also returns when each of its ``report`` calls began and ended: a
    report the rate limit held back can then be checked against the limit at that time."""

    def setup(self, ctx, partition):
        super().setup(ctx, partition)
        self.calls = []

    def step(self, ctx):
        time.sleep(0.01)
        began = ctx.elapsed
        ctx.report(w=np.full(2, self.offset + began * (ctx.index + 1)))
        self.calls.append((began, ctx.elapsed))

    def result(self, ctx):
        return {"offset": self.offset, "calls": self.calls}


class OddResults(asip.Operator):
    """Partition 0 returns a nested, list-bearing result; partition 1's result() raises."""

    def setup(self, ctx, partition):
        self.steps = 0

    def step(self, ctx):
        self.steps += 1
        ctx.report(steps=self.steps)
        time.sleep(0.005)

    def result(self, ctx):
        if ctx.index == 1:
            raise RuntimeError("formatting bug")
        return {"history": [1, 2.5, "x"], "nested": {"w": np.arange(4.0).reshape(2, 2)},
                "steps": self.steps}


class GilHog(asip.Operator):
    """Partition 1 holds its worker's GIL for ``seconds`` at 0.3 s (someone else's C call):
    the worker's event loop, and with it its heartbeat, freeze, while the process is busy."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def setup(self, ctx, partition):
        self.hogged = False

    def step(self, ctx):
        if ctx.index == 1 and not self.hogged and ctx.elapsed > 0.3:
            import sys

            self.hogged = True
            old = sys.getswitchinterval()
            sys.setswitchinterval(1000.0)  # never hand the GIL over while spinning
            try:
                end = time.perf_counter() + self.seconds
                while time.perf_counter() < end:
                    pass
            finally:
                sys.setswitchinterval(old)
        time.sleep(0.01)

    def result(self, ctx):
        return {"hogged": self.hogged}


class ProfilerProbe(asip.Operator):
    """Reports which function Dask's task profiler on its worker calls while it runs."""

    def setup(self, ctx, partition):
        pc = get_worker().periodic_callbacks.get("profile")
        self.callback = getattr(pc.callback, "__name__", repr(pc.callback)) if pc else None

    def step(self, ctx):
        time.sleep(0.01)

    def result(self, ctx):
        return {"callback": self.callback}


class PluginsProbe(asip.Operator):
    """Reports the asip worker plugins and handlers on its worker at setup, then stops."""

    def setup(self, ctx, partition):
        worker = get_worker()
        self.plugins = sorted(p for p in worker.plugins if "asip" in p)
        self.handlers = sorted(h for h in worker.handlers if h.startswith("asip"))

    def step(self, ctx):
        return asip.STOP

    def result(self, ctx):
        return {"plugins": self.plugins, "handlers": self.handlers}


class ReportsThenStops(asip.Operator):
    """Reports ``{"last": 1}`` 50 ms into its first step, ``pause`` s later stops the stage."""

    def __init__(self, pause: float = 0.0):
        self.pause = pause

    def step(self, ctx):
        time.sleep(0.05)  # (a report at once would wait for the rate limit: to the end)
        ctx.report(last=1)
        time.sleep(self.pause)
        return asip.STOP

    def result(self, ctx):
        return {"index": ctx.index}


class WaitsForNews(asip.Operator):
    """Every step polls with a timeout (as a barrier solver waiting for its peers); partition
    0 returns asip.STOP after ``after`` seconds. The result counts the steps taken."""

    def __init__(self, after: float = 0.3, wait: float = 0.05):
        self.after, self.wait, self.steps = after, wait, 0

    def setup(self, ctx, partition):
        self.steps = 0

    def step(self, ctx):
        ctx.poll(self.wait)
        self.steps += 1
        if ctx.index == 0 and ctx.elapsed >= self.after:
            return asip.STOP

    def result(self, ctx):
        return {"steps": self.steps, "elapsed": ctx.elapsed}
