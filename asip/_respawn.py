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

So a stage with a hold (``asip.stage.respawn-hold``, on by default) has its directory put
this nanny plugin on every nanny that lacks it (`install`, on the scheduler): once per
nanny, not a broadcast to every nanny at each stage's install and removal (~2 ms of a
small stage's ~25), and a nanny whose worker was down then gets it at a later stage.
Between stages it is inert.
When a worker dies, its nanny asks the scheduler which stages run with a hold (their
directories, `asip._directory`, carry it) and holds the respawn while any of them runs,
their longest hold at most, and only while other workers are alive (the last worker's
respawn is where the lost operators must go); it asks every `POLL` s whether they still
run (their directory's handlers on the scheduler). With ``asip.stage.respawn-wait``
(opt-in) the stage then waits, off its clock, for the new process to be up and warm
(`asip._respawned`), so the next stage never runs beside its start.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

from distributed.core import Status
from distributed.diagnostics.plugin import NannyPlugin
from distributed.protocol.pickle import dumps

from asip._directory import DirectoryPlugin, op_name

__all__ = ["HOLD_NAME", "RespawnHold", "install"]

logger = logging.getLogger(__name__)

HOLD_NAME = "asip-respawn-hold"  # one per cluster, whatever stages run
POLL = 0.1  # seconds between looks at whether the stages still run
ASK_TIMEOUT = 2.0  # seconds the scheduler has to answer a nanny (no answer: respawn at once)

# on the scheduler: scheduler -> the nannies the hold was sent to (and not failed)
_ON_NANNIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SENDING: set = set()  # the sends in flight (asyncio holds only weak references to tasks)


class RespawnHold(NannyPlugin):
    """Installed once on every nanny: a respawn after its worker's death waits while a
    stage with a hold runs (at most that hold's seconds) and other workers are alive."""

    name = HOLD_NAME
    restart = False  # (a NannyPlugin that says True restarts the worker when added)

    def setup(self, nanny) -> None:
        _wrap(nanny)
        nanny._asip_hold = True

    def teardown(self, nanny) -> None:
        nanny._asip_hold = False


def install(scheduler: Any) -> None:
    """On the scheduler, as a stage with a hold starts: `RespawnHold` among distributed's
    nanny plugins (a nanny that starts later gets it from there) and sent to each live
    worker's nanny that has not had it (distributed's register reaches only those, once);
    the sends are not waited for (the stage needs the hold only if a worker dies)."""
    sent = _ON_NANNIES.setdefault(scheduler, set())
    if HOLD_NAME not in scheduler.nanny_plugins:  # the first stage, or a user removed it
        sent.clear()
        scheduler.nanny_plugins[HOLD_NAME] = dumps(RespawnHold())
    missing = sorted({ws.nanny for ws in scheduler.workers.values() if ws.nanny} - sent)
    if missing:
        sent.update(missing)
        task = asyncio.ensure_future(_send(scheduler, missing, sent))
        _SENDING.add(task)
        task.add_done_callback(_SENDING.discard)


async def _send(scheduler: Any, nannies: list[str], sent: set) -> None:
    """Add the hold to ``nannies``; one that fails is sent again by a later stage."""
    plugin = scheduler.nanny_plugins.get(HOLD_NAME)
    replies = await asyncio.gather(
        *(scheduler.rpc(addr).plugin_add(plugin=plugin, name=HOLD_NAME) for addr in nannies),
        return_exceptions=True)
    for addr, reply in zip(nannies, replies):
        if isinstance(reply, BaseException) or reply.get("status") != "OK":
            sent.discard(addr)
            logger.warning("asip: the respawn hold did not reach nanny %s: %r", addr, reply)


def _wrap(nanny) -> None:
    """Make the nanny's restart after its worker's exit (`Nanny._on_worker_exit`, which
    then calls ``instantiate``) wait in `_hold`, once per nanny; a first start or a
    requested restart (``client.restart``) calls ``instantiate`` without it and is never
    held."""
    if getattr(nanny, "_asip_hold", None) is not None:
        return
    on_exit, instantiate = nanny._on_worker_exit, nanny.instantiate
    exiting = {"now": False}

    async def _on_worker_exit(exitcode):
        exiting["now"] = True
        try:
            return await on_exit(exitcode)
        finally:
            exiting["now"] = False

    async def _instantiate():
        if exiting["now"] and nanny._asip_hold:
            await _hold(nanny)
            if nanny.status != Status.running:  # closed meanwhile: no new process
                return nanny.status
        return await instantiate()

    nanny._on_worker_exit, nanny.instantiate = _on_worker_exit, _instantiate


async def _hold(nanny) -> None:
    """Wait while a stage with a hold runs (at most its hold's seconds from now), if
    another worker is alive to take the lost operators."""
    start = time.monotonic()
    try:  # (the dead worker is unregistered by now)
        others, stages = await _ask(nanny, _held_stages)
    except Exception:  # no answer: respawn as distributed would
        return
    if not others or not stages:
        return
    deadline = start + max(hold for _, hold in stages)
    running = {run_id for run_id, _ in stages}
    logger.info("asip: %s holds its worker's respawn while a stage runs (at most %.1f s)",
                nanny.address, deadline - time.monotonic())
    while running and time.monotonic() < deadline and nanny.status == Status.running:
        await asyncio.sleep(POLL)
        for run_id in list(running):
            if not await _running(nanny, run_id):
                running.discard(run_id)


async def _ask(nanny, function: Any, *args: Any) -> Any:
    """``function(*args)`` run on the scheduler, as ``run_on_scheduler`` does (calling a
    handler that is gone would log a traceback there); `ASK_TIMEOUT` s at most."""
    reply = await asyncio.wait_for(nanny.scheduler.run_function(
        function=dumps(function), args=dumps(args), kwargs=dumps({}), wait=True), ASK_TIMEOUT)
    if reply.get("status") != "OK":
        raise RuntimeError(f"the scheduler answered {reply.get('status')!r}")
    return reply["result"]


async def _running(nanny, run_id: str) -> bool:
    """Whether the stage ``run_id`` still runs: its directory's handlers are on the scheduler."""
    try:
        return await _ask(nanny, _has_handler, op_name("poll", run_id)) is True
    except Exception:  # no answer: as over
        return False


def _has_handler(name: str, dask_scheduler=None) -> bool:
    """Run on the scheduler: whether it has the handler ``name``."""
    return name in dask_scheduler.handlers


def _held_stages(dask_scheduler=None) -> tuple[int, list[tuple[str, float]]]:
    """Run on the scheduler: how many workers are alive, and (run id, hold s) of each
    stage that runs with a respawn hold."""
    stages = [(p.run_id, p.respawn_hold) for p in dask_scheduler.plugins.values()
              if isinstance(p, DirectoryPlugin) and p.respawn_hold > 0
              and op_name("poll", p.run_id) in dask_scheduler.handlers]
    return len(dask_scheduler.workers), stages
