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
    """Measures `faults_per_allocation` in its first step, on its operator thread."""

    def setup(self, ctx, partition):
        self.faults = None

    def step(self, ctx):
        self.faults = faults_per_allocation()
        return asip.STOP

    def result(self, ctx):
        return {"faults": self.faults}
