"""`RespawnHold`: while a stage runs, a nanny whose worker died starts its new process later.

A nanny respawns its worker the moment the process dies. The stage has already restarted
the lost operators on the survivors (its partitions reloaded there), so the new process
serves no operator of this stage; but its start -- Python, numpy, distributed, asip
imported -- takes a core for ~2 s, the core the survivors need for the recovery and
the rest of the fit. On 2 cores (dense 500k x 100 logistic, ``lbfgs``, KillWorker at 30%,
load 5-6, `benchmarks/kill_respawn.py`, arms alternating) the held respawn made the time to
1e-6 with the kill 0.66x and 0.77x (paired medians, n = 10 twice) of the respawn at once:
the 200 MB reload 0.23 -> 0.14 s, ready -> 1e-6 0.48 -> 0.32 s; ratio to fault-free
2.4x -> 1.7-1.9x.

So each stage installs this nanny plugin (``asip.stage.respawn-hold``, on by default): on
the nannies it holds a respawn until the stage ends, ``hold`` seconds at most, and only
while other workers are alive (the last worker's respawn is where the lost operators must
go). With ``asip.stage.respawn-wait`` (opt-in) the stage then waits, off its clock, for the
new process to be up and warm (`asip._respawned`), so the next stage never runs beside
its start. The stage's end: its plugin removed
from the nanny (the scheduler sends that only to nannies with a live worker) or, for the
held nanny, its directory's handlers gone from the scheduler (`asip._directory`), asked
every `POLL` s.
"""

from __future__ import annotations

import asyncio
import logging
import time

from distributed.core import Status
from distributed.diagnostics.plugin import NannyPlugin
from distributed.protocol.pickle import dumps

from asip._directory import op_name

__all__ = ["RespawnHold", "hold_name"]

logger = logging.getLogger(__name__)

POLL = 0.1  # seconds between looks at whether the stages still run


def hold_name(run_id: str) -> str:
    """The nanny plugin's name for stage ``run_id`` (one per stage: stages may overlap)."""
    return f"asip-respawn-hold-{run_id}"


class RespawnHold(NannyPlugin):
    """Installed on every nanny for one stage: a respawn waits for its removal (at most
    ``hold`` s) while other workers are alive."""

    restart = False  # (a NannyPlugin that says True restarts the worker when added)
    idempotent = False

    def __init__(self, run_id: str, hold: float):
        self.name = hold_name(run_id)
        self.run_id = run_id
        self.hold = float(hold)

    def setup(self, nanny) -> None:
        _holds(nanny)[self.name] = (self.hold, self.run_id)

    def teardown(self, nanny) -> None:
        _holds(nanny).pop(self.name, None)


def _holds(nanny) -> dict:
    """The nanny's active holds (name -> (seconds, run id)), its respawn path wrapped on
    first use."""
    holds = getattr(nanny, "_asip_holds", None)
    if holds is None:
        holds = nanny._asip_holds = {}
        _wrap(nanny, holds)
    return holds


def _wrap(nanny, holds: dict) -> None:
    """Make the nanny's restart after its worker's exit (`Nanny._on_worker_exit`, which
    then calls ``instantiate``) wait in `_hold`; a first start or a requested restart
    (``client.restart``) calls ``instantiate`` without it and is never held. And let a
    stage's hold be removed from a nanny that never got it: one whose worker was down
    while the stage installed it (the scheduler sends the removal to every nanny with a
    live worker, and distributed logs a KeyError traceback for a plugin it lacks)."""
    on_exit, instantiate = nanny._on_worker_exit, nanny.instantiate
    plugin_remove = nanny.handlers["plugin_remove"]

    async def _plugin_remove(name: str):
        if name.startswith(hold_name("")) and name not in nanny.plugins:
            return {"status": "OK"}
        return await plugin_remove(name=name)
    exiting = {"now": False}

    async def _on_worker_exit(exitcode):
        exiting["now"] = True
        try:
            return await on_exit(exitcode)
        finally:
            exiting["now"] = False

    async def _instantiate():
        if exiting["now"] and holds:
            await _hold(nanny, holds)
            if nanny.status != Status.running:  # closed meanwhile: no new process
                return nanny.status
        return await instantiate()

    nanny._on_worker_exit, nanny.instantiate = _on_worker_exit, _instantiate
    nanny.handlers["plugin_remove"] = _plugin_remove


async def _hold(nanny, holds: dict) -> None:
    """Wait while a stage's hold is installed (at most its ``hold`` s), if another worker
    is alive to take the lost operators."""
    deadline = time.monotonic() + max(h for h, _ in holds.values())
    try:
        others = await nanny.scheduler.ncores()  # (the dead worker is unregistered by now)
    except Exception:  # no answer: respawn as distributed would
        return
    if not others:
        return
    logger.info("asip: %s holds its worker's respawn while a stage runs (at most %.1f s)",
                nanny.address, deadline - time.monotonic())
    while holds and time.monotonic() < deadline and nanny.status == Status.running:
        await asyncio.sleep(POLL)
        for name, (_, run_id) in list(holds.items()):
            if not await _running(nanny, run_id):
                holds.pop(name, None)


async def _running(nanny, run_id: str) -> bool:
    """Whether the stage ``run_id`` still runs: its directory's handlers are on the
    scheduler (asked as ``run_on_scheduler`` does: calling a handler that is gone would
    log a traceback there)."""
    try:
        reply = await asyncio.wait_for(nanny.scheduler.run_function(
            function=dumps(_has_handler), args=dumps((op_name("poll", run_id),)),
            kwargs=dumps({}), wait=True), 2.0)
    except Exception:  # no answer: as over
        return False
    return reply.get("status") == "OK" and reply.get("result") is True


def _has_handler(name: str, dask_scheduler=None) -> bool:
    """Run on the scheduler: whether it has the handler ``name``."""
    return name in dask_scheduler.handlers
