"""Wait until a cluster's workers are back *and* have loaded asip, before a test's budget runs."""

from __future__ import annotations

import importlib

#: addresses of worker processes known to have loaded asip (a restarted worker is a new address)
_LOADED: set = set()


def ready(client, n_workers: int = 2, timeout: float = 60.0):
    """``client`` once ``n_workers`` workers are registered and each has imported
    ``asip.algorithms``: a worker that a nanny restarted after a kill (or a ``restart``)
    registers before its imports, which then cost ~2 s of a core (14 s of wall time at a
    load average of 10) inside the next fit's time budget."""
    client.wait_for_workers(n_workers, timeout=timeout)
    workers = set(client.scheduler_info()["workers"])
    if not workers <= _LOADED:  # (the import check on every worker: 15-40 ms at a load of 15)

        def load_asip() -> None:  # nested: pickled by value (no tests module on the workers)
            importlib.import_module("asip.algorithms")

        client.run(load_asip)
        _LOADED.update(workers)
    return client
