"""An operator for the dashboard tests (importable by the workers)."""

from __future__ import annotations

import os

import asip
from asip.faults import InjectedFault

from runtime_operators import Gossip


class GossipUntil(Gossip):
    """`Gossip` that stops the stage once the file ``stop_file`` exists, so a test can run
    a stage for as long as its checks take (on a busy machine) and no longer; and whose
    partition 1 raises `InjectedFault` once ``kill_file`` exists, so a test kills it after
    its checks of the running stage, not at a stage time its checks may not have reached."""

    def __init__(self, stop_file: str, kill_file: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.stop_file = stop_file
        self.kill_file = kill_file

    def step(self, ctx):
        if (ctx.index == 1 and ctx.incarnation == 0 and self.kill_file is not None
                and os.path.exists(self.kill_file)):
            raise InjectedFault(f"the test's kill file appeared (at {ctx.elapsed:.2f} s)")
        super().step(ctx)
        if ctx.index == 0 and ctx.elapsed > 0.5 and os.path.exists(self.stop_file):
            return asip.STOP
        return None
