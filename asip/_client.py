"""`connect()`: an embedded LocalCluster on a laptop, or a real cluster given its address."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import weakref
from typing import Any

from distributed import Client

from asip import _driver_gc
from asip._config import flag

logger = logging.getLogger(__name__)

__all__ = ["connect"]

#: seconds the exit gives each embedded client still open to close (its cluster included)
EXIT_CLOSE_TIMEOUT = 10.0

_open_embedded: weakref.WeakSet = weakref.WeakSet()  # embedded clients, closed at exit


def connect(address: str | None = None, *, n_workers: int | None = None,
            threads_per_worker: int = 1, dashboard: bool = True, **kwargs: Any) -> Client:
    """A `distributed.Client` for asip stages, with the live ``/asip`` dashboard page.

    With no ``address``, start an embedded ``LocalCluster(processes=True)`` owned by
    the client (closing the client closes it): one worker process per core by default
    (at most 8), one thread each, each with a nanny so a killed worker comes back, and
    the Dask dashboard on a free port (``dashboard_address=":0"``; pass another
    ``dashboard_address`` to choose). ``dashboard=False`` starts no Bokeh dashboard
    (nor imports Bokeh, ~0.5 s of a first fit): the scheduler keeps only its plain HTTP
    endpoints, on a free port. With an address (``"tcp://host:8786"``), connect
    to that scheduler. Either way, with ``dashboard=True`` the scheduler's dashboard gets
    the ``/asip`` page (`asip.dashboard`; the scheduler needs bokeh) and its link is
    logged, and printed when stderr is a terminal. Extra keyword arguments go to
    `Client` (and from there to `LocalCluster`), e.g. ``security=``.

    ``processes=False`` runs the workers as threads of this process instead: in-memory
    input then stays where it is (a partition is a view of the caller's array, placed
    without a copy), and the kernels, which release the GIL, still run in parallel. Their
    workers get no memory limit unless one is passed (``memory_limit=``): distributed's
    monitor would read this whole process's memory, the caller's arrays included, and
    pause the workers or spill partitions that are only views. Faults that signal a
    worker process (`asip.faults.KillWorker`, `asip.faults.HangWorker`) are refused there.

    The embedded cluster's scheduler runs in this process: once it is up, ``connect``
    collects and `gc.freeze()`-s the objects alive then (imports, the scheduler's startup
    state), so a later full collection no longer stalls a small fit for ~150 ms; closing
    the client unfreezes them (`asip._driver_gc`; ``asip.driver.gc-freeze: false`` to
    turn it off). Nothing is frozen for a scheduler given by address, for an
    ``asynchronous=True`` client, or when the application already froze objects itself.

    >>> with asip.connect() as client:  # doctest: +SKIP
    ...     asip.Stage(MyOp, X, client=client).run()
    """
    if not isinstance(dashboard, bool):
        raise TypeError(f"dashboard must be True or False, got {dashboard!r}")
    if address is not None:
        client = Client(address, **kwargs)
    else:
        if n_workers is None:
            n_workers = max(1, min(os.cpu_count() or 1, 8))
        if dashboard:
            import asip.dashboard  # noqa: F401  (adds /asip before the scheduler starts)
            options = {"dashboard_address": ":0", "processes": True, **kwargs}
        else:
            options = {"processes": True, **_without_dashboard(kwargs)}
        if not options["processes"]:  # the monitor would see the driver's RSS (see above)
            options.setdefault("memory_limit", 0)
        client = _EmbeddedClient(n_workers=n_workers, threads_per_worker=threads_per_worker,
                                 **options)
        _open_embedded.add(client)
    if dashboard:
        _add_dashboard_page(client)
    if address is None and not client.asynchronous and flag("driver.gc-freeze"):
        client._asip_gc_hold = _driver_gc.freeze()  # last: the dashboard's bokeh objects too
    return client


def _without_dashboard(kwargs: dict) -> dict:
    """`LocalCluster` options for a scheduler without the Bokeh dashboard: its plain HTTP
    endpoints (health, metrics) on a free port, not distributed's default 8787, whose
    clash with another cluster warns; an explicit ``dashboard_address`` is kept."""
    if "dashboard_address" in kwargs:
        return kwargs
    scheduler_kwargs = {"dashboard_address": ":0", **kwargs.get("scheduler_kwargs", {})}
    return {**kwargs, "dashboard_address": None, "scheduler_kwargs": scheduler_kwargs}


class _EmbeddedClient(Client):
    """The client of `connect`'s embedded cluster: its close also releases the driver's gc freeze."""

    _asip_gc_hold = False

    async def _close(self, fast: bool = False) -> None:
        try:
            await super()._close(fast=fast)
        finally:
            if self._asip_gc_hold:
                self._asip_gc_hold = False
                _driver_gc.release()


def _close_embedded_clients() -> None:
    """At exit: close each embedded client still open, the client before its cluster.

    Registered after distributed's own exit hooks (this module imports distributed first),
    so it runs before them: distributed's closed the cluster first, removing its workers
    while the client still held tasks on them -- warned as lost computed tasks, logged as
    an ERROR for lost scattered data. Closing the client first lets the scheduler forget
    them; a close that hangs is given up after `EXIT_CLOSE_TIMEOUT` s. The driver's gc
    freeze is kept: unfrozen, the interpreter's last collections walked the ~240k objects
    (the exit took ~1 s longer)."""
    for client in list(_open_embedded):
        if client.asynchronous:  # its close is a coroutine for its own loop to run
            continue
        client._asip_gc_hold = False  # its close leaves the freeze alone
        try:
            client.close(timeout=EXIT_CLOSE_TIMEOUT)
        except Exception as exc:  # exiting anyway: distributed's hooks still close the rest
            logger.debug("asip: closing the embedded client at exit: %r", exc)


atexit.register(_close_embedded_clients)


# shown as distributed's own: its repr, and the client id it builds from the class name
_EmbeddedClient.__name__ = _EmbeddedClient.__qualname__ = "Client"


def _add_dashboard_page(client: Client) -> None:
    """Register the page's scheduler plugin and tell the user where it is."""
    from asip.dashboard import DashboardPlugin, page_link

    try:
        client.register_plugin(DashboardPlugin())
    except Exception as exc:  # e.g. a scheduler without asip or bokeh: stages still run
        logger.warning("asip: no /asip dashboard page on this scheduler: %r", exc)
        return
    link = page_link(_dashboard_link(client))
    if link is None:
        return
    logger.info("asip dashboard: %s", link)
    if sys.stderr.isatty():
        print(f"asip dashboard: {link}", file=sys.stderr)


def _dashboard_link(client: Client) -> str | None:
    try:
        info = client.scheduler_info()
    except Exception:
        return None
    if "dashboard" not in info.get("services", {}):
        return None
    return client.dashboard_link
