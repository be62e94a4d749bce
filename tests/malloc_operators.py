"""Operators for tests/test_malloc.py: what malloc costs an operator thread on its worker."""

from __future__ import annotations

import resource

import numpy as np

import asip


def faults_per_allocation(n: int = 8, nbytes: int = 1 << 20) -> float:
    """Minor page faults of this thread per allocate-touch-free of an ``nbytes`` array: about
    ``nbytes / 4096`` when each one is a fresh mmap, about 0 when malloc reuses its heap."""
    a = np.ones(nbytes // 8)
    del a
    f0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(n):
        a = np.ones(nbytes // 8)  # every page touched
        del a
    return (resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - f0) / n


class MallocProbe(asip.Operator):
    """Measures `faults_per_allocation` in its first step, on its operator thread, and stops
    once every peer says it has measured too (a STOP ends the whole gang: one partition
    stopping at once could end the stage before a peer's first step)."""

    def setup(self, ctx, partition):
        self.faults = None
        self.heard = 0

    def step(self, ctx):
        if self.faults is None:
            self.faults = faults_per_allocation()
            ctx.push({"measured": 1})
        self.heard += len(ctx.poll(0.01))
        return asip.STOP if self.heard >= ctx.n_partitions - 1 else None

    def result(self, ctx):
        return {"faults": self.faults}
