"""An operator for the dashboard tests (importable by the workers)."""

from __future__ import annotations

import os

import asip

from runtime_operators import Gossip


class GossipUntil(Gossip):
    """`Gossip` that stops the stage once the file ``stop_file`` exists, so a test can run
    a stage for as long as its checks take (on a busy machine) and no longer."""

    def __init__(self, stop_file: str, **kwargs):
        super().__init__(**kwargs)
        self.stop_file = stop_file

    def step(self, ctx):
        super().step(ctx)
        if ctx.index == 0 and ctx.elapsed > 0.5 and os.path.exists(self.stop_file):
            return asip.STOP
        return None
