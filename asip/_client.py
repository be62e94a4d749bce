"""`connect()`: an embedded LocalCluster on a laptop, or a real cluster given its address."""

from __future__ import annotations

import os
from typing import Any

from distributed import Client

__all__ = ["connect"]


def connect(address: str | None = None, *, n_workers: int | None = None,
            threads_per_worker: int = 1, **kwargs: Any) -> Client:
    """A `distributed.Client` for asip stages.

    With no ``address``, start an embedded ``LocalCluster(processes=True)`` owned by
    the client (closing the client closes it): one worker process per core by default
    (at most 8), one thread each, each with a nanny so a killed worker comes back, and
    no dashboard. With an address (``"tcp://host:8786"``), connect to that scheduler.
    Extra keyword arguments go to `Client` (and from there to `LocalCluster`), e.g.
    ``security=``.

    >>> with asip.connect() as client:  # doctest: +SKIP
    ...     asip.Stage(MyOp, X, client=client).run()
    """
    if address is not None:
        return Client(address, **kwargs)
    if n_workers is None:
        n_workers = max(1, min(os.cpu_count() or 1, 8))
    options = {"dashboard_address": None, "processes": True, **kwargs}
    return Client(n_workers=n_workers, threads_per_worker=threads_per_worker, **options)
