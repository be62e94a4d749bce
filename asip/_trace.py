"""The driver's trace: every report, bounded in bytes by thinning, never by stopping.

Past ``asip.trace.max-bytes`` each partition's series keeps its first and most recent
points and drops every other point in between, so a long stage keeps the shape of its
whole convergence curve (dense early, dense recent) in bounded memory.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BoundedTrace"]

_ENTRY_OVERHEAD = 200  # bytes of Python objects around one entry's metrics
_HEAD, _TAIL = 16, 64  # points kept untouched at the start and the end of each series


class BoundedTrace:
    """Trace entries (anything with ``time`` and ``partition``) with their byte sizes.

    Each partition's series numbers its entries as they arrive; thinning doubles the
    series' stride and keeps, between the first and the most recent points, only the
    entries whose number is a multiple of it: the kept points stay evenly spread.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.series: dict[Any, list[tuple[int, Any, int]]] = {}  # key -> [(seq, entry, size)]
        self.stride: dict[Any, int] = {}
        self.count: dict[Any, int] = {}
        self.nbytes = 0
        self.thinned = 0  # entries dropped by thinning

    def __len__(self) -> int:
        return sum(len(s) for s in self.series.values())

    def add(self, entry: Any, nbytes: int) -> bool:
        """Keep ``entry`` (False if it is already here: a report can arrive twice)."""
        if self.contains(entry):
            return False
        key = entry.partition
        size = int(nbytes) + _ENTRY_OVERHEAD
        seq = self.count.get(key, 0)
        self.count[key] = seq + 1
        self.series.setdefault(key, []).append((seq, entry, size))
        self.nbytes += size
        while self.nbytes > self.max_bytes and (self._thin_largest(_HEAD, _TAIL)
                                                 or self._thin_largest(1, 1)):
            pass
        return True

    def _thin_largest(self, n_head: int, n_tail: int) -> bool:
        """Double the stride of the largest series; False when nothing is left to thin."""
        key = max(self.series, key=lambda k: len(self.series[k]))
        points = self.series[key]
        if len(points) <= n_head + n_tail + 1:
            return False
        stride = self.stride[key] = self.stride.get(key, 1) * 2
        middle = points[n_head:-n_tail]
        kept = [p for p in middle if p[0] % stride == 0]
        if len(kept) == len(middle):
            return self._thin_largest(n_head, n_tail) if len(middle) > 1 else False
        self.nbytes -= sum(p[2] for p in middle) - sum(p[2] for p in kept)
        self.thinned += len(middle) - len(kept)
        self.series[key] = points[:n_head] + kept + points[-n_tail:]
        return True

    def entries(self) -> list:
        """Every kept entry, in time order."""
        return sorted((e for s in self.series.values() for _, e, _ in s),
                      key=lambda e: (e.time, e.partition, e.incarnation))

    def contains(self, entry: Any) -> bool:
        return any(e.time == entry.time and e.incarnation == entry.incarnation
                   for _, e, _ in self.series.get(entry.partition, ())[-8:])
