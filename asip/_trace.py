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
    """Trace entries (anything with ``time`` and ``partition``) with their byte sizes."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.series: dict[Any, list[tuple[Any, int]]] = {}
        self.nbytes = 0
        self.thinned = 0  # entries dropped by thinning

    def __len__(self) -> int:
        return sum(len(s) for s in self.series.values())

    def add(self, entry: Any, nbytes: int) -> None:
        size = int(nbytes) + _ENTRY_OVERHEAD
        self.series.setdefault(entry.partition, []).append((entry, size))
        self.nbytes += size
        while self.nbytes > self.max_bytes and (self._thin_largest(_HEAD, _TAIL)
                                                 or self._thin_largest(1, 1)):
            pass

    def _thin_largest(self, n_head: int, n_tail: int) -> bool:
        """Halve the middle of the largest series; False when nothing is left to thin."""
        key = max(self.series, key=lambda k: len(self.series[k]))
        points = sorted(self.series[key], key=lambda p: p[0].time)
        if len(points) <= n_head + n_tail + 1:
            return False
        head, middle, tail = points[:n_head], points[n_head:-n_tail], points[-n_tail:]
        kept, dropped = middle[::2], middle[1::2]
        self.nbytes -= sum(size for _, size in dropped)
        self.thinned += len(dropped)
        self.series[key] = head + kept + tail
        return True

    def entries(self) -> list:
        """Every kept entry, in time order."""
        return sorted(e for s in self.series.values() for e, _ in s)

    def contains(self, entry: Any) -> bool:
        return any(e.time == entry.time and e.incarnation == entry.incarnation
                   for e, _ in self.series.get(entry.partition, ())[-4:])
