"""Fan-out helpers: every topology names valid peers, never the sender, and covers everyone."""

from __future__ import annotations

import random

import pytest

from asip import _topology as topo


@pytest.mark.parametrize("n", [2, 3, 8, 65])
def test_ring_and_peers(n):
    for i in range(n):
        assert topo.peers(i, n) == [j for j in range(n) if j != i]
        assert topo.ring(i, n) == [(i + 1) % n]
        both = topo.ring(i, n, k=2, both=True)
        assert i not in both and len(both) == len(set(both)) == min(4, n - 1)
    # one step around the ring from everyone reaches everyone exactly once
    assert sorted(topo.ring(i, n)[0] for i in range(n)) == list(range(n))


@pytest.mark.parametrize("n, arity", [(1, 2), (7, 2), (10, 3), (128, 4)])
def test_tree_parent_and_children_agree_and_span_everyone(n, arity):
    assert topo.tree_parent(0, arity) is None
    reached = {0}
    frontier = [0]
    while frontier:
        node = frontier.pop()
        for c in topo.tree_children(node, n, arity):
            assert topo.tree_parent(c, arity) == node and c not in reached
            reached.add(c)
            frontier.append(c)
    assert reached == set(range(n))


def test_gossip_draws_distinct_peers_and_varies():
    rng = random.Random(0)
    draws = [tuple(topo.gossip(3, 16, 4, rng)) for _ in range(50)]
    assert all(len(set(d)) == 4 and 3 not in d and all(0 <= j < 16 for j in d) for d in draws)
    assert len(set(draws)) > 10
    assert topo.gossip(0, 3, 5) == [1, 2]  # k past n-1: everyone


@pytest.mark.parametrize("call", [lambda: topo.ring(0, 4, k=0), lambda: topo.gossip(0, 4, 0),
                                  lambda: topo.tree_parent(1, 1), lambda: topo.tree_children(0, 4, 1)])
def test_bad_parameters_are_value_errors(call):
    with pytest.raises(ValueError):
        call()
