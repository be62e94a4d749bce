"""PageRank by asynchronous power iteration: a custom operator that is not an optimizer.

The adjacency matrix of a random directed graph is a row-chunked dask array: each
operator holds the out-links of a block of source nodes and owns those nodes' ranks.
Each step it sends its block's contribution to every node's rank (one vector, its
*latest state*, so a lost or late message costs nothing) and recomputes its own
nodes' ranks from the newest contribution of every block; no barrier. This is
asynchronous Jacobi iteration, which converges for PageRank because the update is a
contraction (factor = damping). Every operator also sends how much its ranks still
move; when every block's last change is below ``tol``, any operator may stop the stage.

Run:  python examples/pagerank.py
"""

from __future__ import annotations

import dask.array as da
import numpy as np

import asip

DAMPING = 0.85


class PageRank(asip.Operator):
    """Owns the ranks of the source nodes in its row block of the adjacency matrix."""

    def __init__(self, offsets: list[int], tol: float = 1e-10):
        self.offsets = offsets  # first node of each block (and the total at the end)
        self.tol = tol

    def setup(self, ctx, partition):
        self.n = self.offsets[-1]
        self.lo, self.hi = self.offsets[ctx.index], self.offsets[ctx.index + 1]
        out_degree = partition.sum(axis=1)
        self.links = partition / out_degree[:, None]  # row-stochastic block
        self.rank = np.full(self.hi - self.lo, 1.0 / self.n)
        self.contrib = {}  # block -> its latest contribution vector (length n)
        self.change = {}  # block -> its latest rank change (max abs)

    def step(self, ctx):
        for msg in ctx.poll(timeout=0.005):
            self.contrib[msg.sender] = msg.payload["contrib"]
            self.change[msg.sender] = msg.payload["change"]
        change = np.inf
        if len(self.contrib) == ctx.n_partitions:  # heard from every block: update
            total = sum(self.contrib.values())
            new = (1.0 - DAMPING) / self.n + DAMPING * total[self.lo:self.hi]
            change = float(np.abs(new - self.rank).max())
            self.rank = new
            self.change[ctx.index] = change
            ctx.report(change=change)
        self.contrib[ctx.index] = self.rank @ self.links
        ctx.push({"contrib": self.contrib[ctx.index], "change": change})
        if len(self.change) == ctx.n_partitions and max(self.change.values()) < self.tol:
            return asip.STOP  # every block's ranks have stopped moving
        return None

    def result(self, ctx):
        return {"rank": self.rank}


def random_graph(n: int, seed: int = 0) -> np.ndarray:
    """A random directed graph with a few hubs; every node has at least one out-link."""
    rng = np.random.default_rng(seed)
    popularity = rng.pareto(1.5, n) + 1.0
    p = np.minimum(1.0, 8.0 * popularity / popularity.sum())
    adjacency = (rng.random((n, n)) < p[None, :]).astype(np.float64)
    np.fill_diagonal(adjacency, 0.0)
    lonely = adjacency.sum(axis=1) == 0
    adjacency[lonely, rng.integers(0, n, lonely.sum())] = 1.0
    return adjacency


def power_iteration(adjacency: np.ndarray, tol: float = 1e-13) -> np.ndarray:
    """The reference: synchronous power iteration on one machine."""
    links = adjacency / adjacency.sum(axis=1, keepdims=True)
    rank = np.full(len(adjacency), 1.0 / len(adjacency))
    while True:
        new = (1.0 - DAMPING) / len(rank) + DAMPING * (rank @ links)
        if np.abs(new - rank).max() < tol:
            return new
        rank = new


def main(n_nodes: int = 1_000, n_partitions: int = 2) -> None:
    adjacency = random_graph(n_nodes)
    A = da.from_array(adjacency, chunks=(-(-n_nodes // n_partitions), n_nodes))
    offsets = [0, *np.cumsum(A.chunks[0]).tolist()]
    with asip.connect(n_workers=n_partitions) as client:
        res = asip.Stage(PageRank(offsets), A, client=client, max_time=15.0).run()
    rank = np.concatenate([r["rank"] for r in res.results])
    truth = power_iteration(adjacency)
    error = np.abs(rank - truth).max() / truth.max()
    print(f"{n_nodes} nodes in {n_partitions} blocks: stopped by {res.stopped_by} after "
          f"{res.elapsed:.2f} s, {sum(res.steps)} steps, "
          f"{res.stats['total']['delivered']} messages")
    print(f"top 5 nodes: {np.argsort(-rank)[:5].tolist()} (single-machine power iteration: "
          f"{np.argsort(-truth)[:5].tolist()})")
    print(f"max relative difference to power iteration: {error:.1e}")
    assert error < 1e-6, "asynchronous PageRank did not match power iteration"


if __name__ == "__main__":
    main()
