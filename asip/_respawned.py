"""`wait_for_respawns`: a stage that lost workers returns once their new processes are up and warm.

A nanny starts a new worker process when its worker dies: at once, or when the stage ends
if `asip._respawn` held it. The new process registers with the scheduler and then, on its
first operator task, imports what the operator needs (numpy, scipy, numba, asip.algorithms:
~2 s of a core, 14 s of wall time at a load average of 10). A fit started meanwhile runs
beside those imports, on a worker fewer or a core short: a budgeted fit right after a
killed one ended 20x further from f*. So a stage that lost workers, after its clock has
stopped (its trace, ``elapsed`` and budget are untouched), waits until each lost worker's
nanny has a worker registered again and that worker has imported the stage's operator's
module by name (its imports done; nothing is unpickled), at most ``asip.stage.respawn-wait``
s. A nanny that does not answer (gone with its host) is not waited for. The wait is in ``StageResult.timings["respawn_wait"]``.

Opt-in: the user then waits for the whole respawn. Dense lbfgs, KillWorker at 30%, 2
cores, load 3-8 (`benchmarks/kill_defaults.py`, held respawn, arms alternating, 3 runs):
the next fit's time to 1e-6 0.35-0.82x, but the killed fit's ``fit()`` 2.7-3.5x (3-9 s of
wait), the two fits' wall times together up to twice as long.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time

__all__ = ["operator_modules", "wait_for_respawns"]

logger = logging.getLogger(__name__)

POLL = 0.05  # seconds between looks at the scheduler's workers
PING = 2.0  # seconds a lost worker's nanny has to answer before it is not waited for


def operator_modules(operator) -> tuple[str, ...]:
    """The modules a new worker imports for ``operator`` (an Operator subclass or instance):
    asip's runtime, and the operator's own module unless it lives in the driver's script."""
    cls = operator if isinstance(operator, type) else type(operator)
    return ("asip",) + ((cls.__module__,) if cls.__module__ != "__main__" else ())


def wait_for_respawns(client, nannies: list[str], modules: tuple[str, ...],
                      limit: float) -> float:
    """Wait (at most ``limit`` s) until every answering nanny of ``nannies`` has a worker
    registered that has imported ``modules`` (`operator_modules`); the seconds waited."""
    t0 = time.monotonic()
    if not nannies or limit <= 0:
        return 0.0
    try:
        client.sync(_respawned, client, nannies, modules, callback_timeout=limit)
    except Exception as exc:  # (a timeout included) the next stage places on what is there
        logger.warning("asip: the lost workers' new processes were not up and warm within "
                       "%.1f s (asip.stage.respawn-wait): %r", limit, exc)
    return time.monotonic() - t0


async def _respawned(client, nannies: list[str], modules: tuple[str, ...]) -> None:
    """On the client's loop (where the client's methods hand back coroutines): the
    answering nannies' new workers, registered, then warmed."""
    answers = await asyncio.gather(*(_answers(client, n) for n in nannies))
    waiting = {n for n, ok in zip(nannies, answers) if ok}
    workers: list[str] = []
    while waiting:
        by_nanny = await client.run_on_scheduler(_workers_by_nanny)
        workers += [by_nanny[n] for n in waiting if n in by_nanny]
        waiting -= set(by_nanny)
        if waiting:
            await asyncio.sleep(POLL)
    if workers:
        await client.run(_load, modules, workers=workers, on_error="return")


async def _answers(client, nanny: str) -> bool:
    """Whether ``nanny`` answers within `PING` s (a nanny gone with its host does not)."""
    try:
        await asyncio.wait_for(client.rpc(nanny).identity(), PING)
        return True
    except Exception:
        return False


def _workers_by_nanny(dask_scheduler=None) -> dict:
    """Run on the scheduler: nanny address -> its registered worker's address."""
    return {ws.nanny: addr for addr, ws in dask_scheduler.workers.items() if ws.nanny}


def _load(modules: tuple[str, ...]) -> None:
    """Run on a new worker: import what the stage's operator needs."""
    for name in modules:
        importlib.import_module(name)
