"""Test-only operators for the algorithm-level fault tests (importable by the workers)."""

from __future__ import annotations

import numpy as np

from asip._channel import MessageSchema
from asip.algorithms import SolverOperator, get_algorithm


def poisoned_variants(payload: dict) -> list[dict]:
    """Hostile copies of an honest payload: NaN/inf, wrong shape or dtype, bad types and keys.

    Counters (ints) are made huge, so that a copy which got through would supersede the
    sender's honest messages instead of being overwritten by the next one.
    """
    honest = {k: (v + 10**9 if isinstance(v, int) and not isinstance(v, bool) else v)
              for k, v in payload.items()}
    out: list[dict] = []
    for key, value in payload.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size:
            for bad in (np.nan, np.inf, -np.inf):
                v = np.array(value, dtype=np.float64)
                v.flat[v.size // 2] = bad
                out.append({**honest, key: v})
            out.append({**honest, key: np.append(value.ravel(), 0.0)})  # one entry too many
            out.append({**honest, key: np.asarray(value, dtype=np.float32)})  # wrong dtype
            out.append({**honest, key: np.asarray(value).reshape(1, -1)})  # wrong rank
        elif isinstance(value, float):
            out.append({**honest, key: float("nan")})
            out.append({**honest, key: float("inf")})
        elif isinstance(value, int) and not isinstance(value, bool):
            out.append({**honest, key: 1.5})  # a counter that is not an int
            out.append({**honest, key: "1"})
    out.append({k: v for k, v in list(honest.items())[1:]})  # a required key missing
    out.append({**honest, "evil": 1})  # a key nobody expects
    return out


class _Poisoner:
    """The operator's context, except that every ``every``-th push also pushes poison."""

    def __init__(self, ctx, op: PoisoningSolver):
        self._ctx = ctx
        self._op = op

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def push(self, payload: dict, to: int | None = None) -> None:
        self._ctx.push(payload, to=to)
        op = self._op
        op.honest += 1
        if op.honest % op.every or op.poisoned >= op.limit:
            return
        copies = self._ctx.n_partitions - 1 if to is None else 1
        for bad in poisoned_variants(payload):
            if op.schema.violation(bad) is None:
                # another valid kind (a stream's fields without their seq, say): harmless to
                # the algorithm by its own checks (tests/algorithms/test_sparse_exchange.py)
                continue
            self._ctx.push(bad, to=to)
            op.poisoned += copies


class PoisoningSolver(SolverOperator):
    """`SolverOperator` whose partition 0 pushes hostile copies alongside its real updates
    (``limit`` copies at most, so every copy can arrive before a time stop)."""

    def __init__(self, *args, every: int = 5, limit: int = 10**9, **kwargs):
        super().__init__(*args, **kwargs)
        self.every = every
        self.limit = limit  # stop poisoning after this many copies (then push honestly)

    def setup(self, ctx, partition) -> None:
        super().setup(ctx, partition)
        self.honest = 0
        self.poisoned = 0
        self.schema = MessageSchema(*get_algorithm(self.solver).schema(self.problem))

    def step(self, ctx):
        return super().step(_Poisoner(ctx, self) if ctx.index == 0 else ctx)

    def result(self, ctx) -> dict:
        out = super().result(ctx)
        out["poisoned"] = self.poisoned
        return out
