"""A `SolverOperator` the report tests run on real clusters (importable by the workers)."""

from __future__ import annotations

from asip.algorithms._operator import SolverOperator


class CountingSolver(SolverOperator):
    """A `SolverOperator` that counts the reports it builds and returns the count."""

    def _report(self, snap: dict) -> dict:
        self.built = getattr(self, "built", 0) + 1
        return super()._report(snap)

    def result(self, ctx) -> dict:
        return dict(super().result(ctx), built=getattr(self, "built", 0))
