"""Gang scheduling: count slots, place each operator next to its partition, wait for all to start."""

from __future__ import annotations

import time
from typing import Any

from asip._exceptions import GangSchedulingError

__all__ = ["check_slots", "plan_placement", "wait_for_gang"]


def check_slots(n_operators: int, nthreads: dict[str, int], oversubscribe: bool) -> None:
    """Fail at once, with the numbers, if the cluster cannot run the whole gang at the same time."""
    if not nthreads:
        raise GangSchedulingError("the cluster has no workers: start some, or wait for them")
    slots = sum(nthreads.values())
    if n_operators > slots and not oversubscribe:
        raise GangSchedulingError(
            f"the stage needs {n_operators} operator slots (one worker thread each) but the "
            f"cluster has {slots} threads on {len(nthreads)} workers; add workers, use fewer "
            "partitions, or pass oversubscribe=True to let operators share cores"
        )


def plan_placement(
    holders: list[list[str]], nthreads: dict[str, int], oversubscribe: bool,
    running: dict[str, int] | None = None,
) -> list[str]:
    """A worker for each partition: a holder of its data with a free slot, else the emptiest.

    Without ``oversubscribe`` no worker gets more operators than it has threads, so
    a partition whose holders are full moves (once) to a worker with a free thread.
    ``running``: operators already on each worker (a restart placed beside its gang).
    """
    load = {w: (running or {}).get(w, 0) for w in nthreads}

    def has_room(w: str) -> bool:
        return oversubscribe or load[w] < nthreads[w]

    def emptiest(candidates: list[str]) -> str:
        return min(candidates, key=lambda w: (load[w] / max(nthreads[w], 1), w))

    placement: list[str | None] = [None] * len(holders)
    order = sorted(range(len(holders)), key=lambda i: len(holders[i]))  # scarce holders first
    for i in order:
        local = [w for w in holders[i] if w in load and has_room(w)]
        if local:
            placement[i] = w = emptiest(local)
            load[w] += 1
    for i in order:
        if placement[i] is None:
            room = [w for w in load if has_room(w)] or list(load)
            placement[i] = w = emptiest(room)
            load[w] += 1
    return placement  # type: ignore[return-value]


def wait_for_gang(
    wait_started: Any, state: Any, futures: dict[int, Any], n: int, timeout: float, describe: Any
) -> None:
    """Wait until every operator finished setup; raise `GangSchedulingError` naming the missing.

    ``wait_started(seconds)`` waits (woken by the directory's events and by operator
    tasks that end) and says whether the gang started; ``state()`` is the directory's
    full state, fetched only to name the missing. An operator that fails before the
    gang starts raises its own error here (a setup bug is not retried).
    """
    deadline = time.monotonic() + timeout
    while not wait_started(max(0.0, min(0.5, deadline - time.monotonic()))):
        for index, future in futures.items():
            if future.status in ("error", "cancelled"):
                error = future.exception() if future.status == "error" else None
                why = repr(error) if error is not None else (
                    "its task was cancelled (did the client lose its scheduler connection?)")
                raise GangSchedulingError(
                    f"operator {index} failed before the gang started: {why}"
                ) from error
        if time.monotonic() > deadline:
            snapshot = state()
            ready = {i for i, _ in snapshot["ready"]}
            registered = {i for i, _, _ in snapshot["registered"]}
            missing = [i for i in range(n) if i not in ready]
            never = [i for i in missing if i not in registered]
            raise GangSchedulingError(
                f"only {len(ready)} of {n} operators started within {timeout:g} s "
                f"(asip.gang.start-timeout). Never started: {never}; started but still in "
                f"setup: {sorted(set(missing) - set(never))}. Task states: {describe(missing)}"
            )
