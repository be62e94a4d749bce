"""Test-only operators for the kill tests (importable by the workers)."""

from __future__ import annotations

import threading

from runtime_operators import Gossip


class LongFirstStep(Gossip):
    """Gossip, except that partition 1's first incarnation spends ``long`` s in its first
    step (a Newton round on big data, say): a kill at a step boundary would wait for it."""

    def __init__(self, long: float = 60.0, **kwargs):
        super().__init__(**kwargs)
        self.long = long

    def step(self, ctx):
        if ctx.index == 1 and ctx.incarnation == 0 and self.steps == 0:
            threading.Event().wait(self.long)  # busy with the step; the kill lands in it
        super().step(ctx)
