"""Fan-out topologies for ``ctx.push(to=...)``: who an operator talks to, as partition lists.

All-to-all costs N-1 copies per push; these cost O(1) or O(log N) and are what an
algorithm picks when N grows (see the README's cost model). Pure functions of
``(index, n)``, so every operator computes the same graph without coordination.
"""

from __future__ import annotations

import random

__all__ = ["gossip", "peers", "ring", "tree_children", "tree_parent"]


def peers(index: int, n: int) -> list[int]:
    """Every other partition."""
    return [j for j in range(n) if j != index]


def ring(index: int, n: int, k: int = 1, both: bool = False) -> list[int]:
    """The ``k`` next partitions on the ring (and the ``k`` previous with ``both``)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k!r}")
    out: list[int] = []
    for step in range(1, k + 1):
        for j in ((index + step) % n, (index - step) % n) if both else ((index + step) % n,):
            if j != index and j not in out:
                out.append(j)
    return out


def gossip(index: int, n: int, k: int, rng: random.Random | None = None) -> list[int]:
    """``k`` distinct random peers (all of them when ``k >= n - 1``), fresh on every call."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k!r}")
    others = peers(index, n)
    if k >= len(others):
        return others
    return sorted((rng or random).sample(others, k))


def tree_parent(index: int, arity: int = 2) -> int | None:
    """The parent in the ``arity``-ary heap layout rooted at partition 0 (None at the root)."""
    if arity < 2:
        raise ValueError(f"arity must be at least 2, got {arity!r}")
    return None if index == 0 else (index - 1) // arity


def tree_children(index: int, n: int, arity: int = 2) -> list[int]:
    """The children in the ``arity``-ary heap layout (an empty list at a leaf)."""
    if arity < 2:
        raise ValueError(f"arity must be at least 2, got {arity!r}")
    first = index * arity + 1
    return list(range(first, min(first + arity, n)))
