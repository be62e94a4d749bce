"""The stage's directory on the scheduler: who runs where, the start barrier, stop, reports,
liveness and the stage's lease on its driver.

Control only, off the data path: operators register once per incarnation, workers beat
a few times a second (reports, readiness, progress). Directory changes go to workers as
versioned deltas, batched; what the driver needs (start, restarts, lost or hung
operators, reports) is pushed to its client as events, so nobody polls. Liveness is the
worker's own heartbeat to the scheduler; a worker that misses it is judged by its
nanny's view of the process (stopped or idle: hung; using CPU: busy, left alone).
Handler names carry the run id, so concurrent stages never see each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from time import time
from typing import Any

import dask
from dask.utils import parse_timedelta
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.protocol.pickle import dumps
from distributed.protocol.serialize import Serialized, deserialize

from asip._batched import flush_workers
from asip._events import EVENT_TOPIC

try:  # the interval the scheduler asks of its workers (not public API in distributed 2026.8)
    from distributed.scheduler import heartbeat_interval
except ImportError:  # pragma: no cover - another distributed: 2026.8's schedule
    def heartbeat_interval(n: int) -> float:
        """Seconds between a worker's heartbeats with ``n`` workers (distributed 2026.8)."""
        return 0.5 if n <= 10 else 1.0 if n < 50 else 2.0 if n < 200 else n / 200 + 1

logger = logging.getLogger(__name__)

__all__ = ["DirectoryPlugin", "op_name"]

_RECENT_BYTES = 4 << 20  # recent reports kept for the dashboard page

_HANDLERS = ("register", "ready", "report", "poll", "stop", "close", "failed", "summary",
             "finish", "result")


#: finished stages still removing their worker plugins (`DirectoryPlugin._h_finish` with
#: ``background``), in the scheduler's process
_FINISHING: set[asyncio.Future] = set()


async def _settle_finishing(timeout: float) -> None:
    """Wait (``timeout`` s at most) until the stages that finished before this one have
    removed their worker plugins: a stage launches on workers without another's leftovers."""
    if _FINISHING:
        await asyncio.wait(list(_FINISHING), timeout=timeout)


def op_name(kind: str, run_id: str) -> str:
    """The handler name for ``kind`` in run ``run_id`` (scheduler and workers alike)."""
    return f"asip_{kind}_{run_id}"


def process_sample(dask_worker: Any) -> dict | None:
    """Run in a nanny: its worker process's state and CPU seconds (None without one)."""
    import psutil

    pid = getattr(dask_worker, "pid", None)
    if not pid:
        return None
    proc = psutil.Process(pid)
    with proc.oneshot():
        cpu = proc.cpu_times()
        return {"status": proc.status(), "cpu": cpu.user + cpu.system}


class DirectoryPlugin(SchedulerPlugin):
    """Per-stage scheduler plugin: registrations, incarnations, start barrier, stop, liveness.

    Parameters
    ----------
    run_id, n_partitions
        The stage.
    client_id : str, optional
        The driver's client: events go to it, and when it disconnects the stage stops
        and removes itself from the cluster (a lease).
    worker_plugin : str, optional
        Name of the stage's worker plugin, removed when the driver is lost.
    respawn_hold : float
        While the stage runs, a nanny whose worker died respawns it at most this many
        seconds later (`asip._respawn` asks every directory; 0 = at once).
    silence_timeout, kill_timeout : float
        A worker whose heartbeat is this late is judged (0 = never); a hung one gets
        ``kill_timeout`` s to close before its nanny SIGKILLs it.
    control_timeout : float
        A nanny that does not answer within this long (``asip.stage.control-timeout``)
        is unreachable: its worker is removed from the scheduler at once, so Dask
        recomputes its partitions and their operators restart elsewhere.
    """

    idempotent = False  # one per run: registering it again is an error

    def __init__(self, run_id: str, n_partitions: int, client_id: str | None = None,
                 worker_plugin: str | None = None, silence_timeout: float = 5.0,
                 kill_timeout: float = 0.5, control_timeout: float = 30.0,
                 respawn_hold: float = 0.0):
        self.run_id = run_id
        self.n_partitions = n_partitions
        self.client_id = client_id
        self.worker_plugin = worker_plugin
        self.respawn_hold = respawn_hold
        self.silence_timeout = silence_timeout
        self.kill_timeout = kill_timeout
        self.control_timeout = control_timeout
        self.name = f"asip-directory-{run_id}"

    async def start(self, scheduler: Any) -> None:
        await _settle_finishing(self.control_timeout / 2)
        self.scheduler = scheduler
        self.entries: dict[int, tuple[str, int]] = {}  # index -> (worker address, incarnation)
        self.nannies: dict[str, str] = {}  # worker address -> its nanny's (operators' workers)
        self.respawning: set[str] = set()  # nannies whose operators' worker was removed
        self.deltas: list[list] = []  # [index, address, incarnation]; version = position + 1
        self._unsent = 0  # deltas[-_unsent:] not broadcast yet
        self.ready: set[tuple[int, int]] = set()  # (index, incarnation) that finished setup
        self._ready_indices: set[int] = set()  # partitions with a ready incarnation
        self.go_time: float | None = None
        self.phases: dict[str, float] = {}  # launch milestones (scheduler wall clock)
        self.stopped: str | None = None
        self.closed = False
        self.restarts: list[list] = []  # [index, incarnation, cause, time since go]
        self.ended: dict[tuple[int, int], str] = {}  # (index, incarnation) -> why it ended
        self.lost: set[int] = set()  # partitions whose last incarnation ended, until re-registered
        self.progress: dict[tuple[int, int], list] = {}  # (index, inc) -> [steps, stats]
        self.suspects: set[str] = set()  # worker addresses being judged or found busy
        self.hung_kills = 0
        self.busy: dict[str, int] = {}  # address -> times found busy (late heartbeat, using CPU)
        self.recent: deque = deque()  # (report, bytes): the dashboard's window, <= _RECENT_BYTES
        self.recent_bytes = 0
        self.report_count = 0
        self._background: set[asyncio.Task] = set()
        for kind in _HANDLERS:
            scheduler.handlers[op_name(kind, self.run_id)] = getattr(self, f"_h_{kind}")
        if self.silence_timeout > 0:
            self._spawn(self._watch_heartbeats())
        if self.respawn_hold > 0:  # (imported here: asip._respawn reads directories)
            from asip._respawn import install

            install(scheduler)

    async def close(self) -> None:
        self._h_close()

    def update_graph(self, scheduler: Any, *, client: Any = None, tasks: Any = (),
                     **kwargs: Any) -> None:
        """The stage's operator tasks came in: once the scheduler has queued their
        ``compute-task``, send it to the workers now, not at the end of the stream's
        5 ms batching interval (`asip._batched`). Other clients' graphs are not read."""
        if self.client_id is not None and client != self.client_id:
            return
        prefix = f"asip-{self.run_id}-op"
        ours = [k for k in tasks if isinstance(k, str) and k.startswith(prefix)]
        if ours:  # runs after this update's transitions: the scheduler does them synchronously
            scheduler.loop.add_callback(flush_workers, scheduler, ours)

    def _remove_handlers(self) -> None:
        for kind in _HANDLERS:
            self.scheduler.handlers.pop(op_name(kind, self.run_id), None)

    # ------------------------------------------------------------------ helpers
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _elapsed(self) -> float | None:
        return None if self.go_time is None else time() - self.go_time

    def _directory(self) -> list[list]:
        return [[i, addr, inc] for i, (addr, inc) in sorted(self.entries.items())]

    def _since(self, version: int) -> list[list]:
        """What a worker that has applied ``version`` deltas is missing (a snapshot if shorter)."""
        missing = len(self.deltas) - max(0, min(int(version), len(self.deltas)))
        return self._directory() if missing > len(self.entries) else self.deltas[len(self.deltas) - missing:]

    def _emit(self, kind: str, *fields: Any) -> None:
        """Push one event to the driver's client, tagged with the run (`asip._events`
        routes it). Sent as the scheduler sends a topic's events to its subscribers, but to
        this client only and kept nowhere: ``Scheduler.log_event`` would keep every report
        in the scheduler's event log and send it to every client running a stage."""
        if self.client_id is None or self.closed:
            return
        self.scheduler.report({"op": "event", "topic": EVENT_TOPIC,
                               "event": (time(), [self.run_id, kind, *fields])},
                              client=self.client_id)

    def _end(self, index: int, incarnation: int, cause: str) -> None:
        """The first cause recorded for an incarnation's end is the one kept."""
        self.ended.setdefault((index, incarnation), cause)

    def _broadcast(self, kind: str, on_reply: Any = None, **fields: Any) -> None:
        """Tell every worker's channel plugin (fire and forget, off the handler);
        ``on_reply(reply)`` for each worker's answer."""
        if self.closed:
            return
        control = op_name("control", self.run_id)

        async def send(addr: str) -> None:
            try:
                reply = await getattr(self.scheduler.rpc(addr), control)(kind=kind, **fields)
            except Exception as exc:
                logger.debug("asip: control %s to %s failed: %s", kind, addr, exc)
                return
            if on_reply is not None:
                on_reply(reply)

        for addr in list(self.scheduler.workers):
            self._spawn(send(addr))

    def _publish(self, delta: list) -> None:
        """Record a directory change; changes within a few ms go out as one broadcast.

        Before the gang starts nobody pushes, so nothing is broadcast: the start
        carries the whole directory, once per worker (W·n entries at launch, not W·n²).
        """
        self.deltas.append(delta)
        if self.go_time is None:
            return
        self._unsent += 1
        if self._unsent == 1:
            asyncio.get_running_loop().call_later(0.005, self._send_deltas)

    def _send_deltas(self) -> None:
        if not self._unsent:
            return
        start = len(self.deltas) - self._unsent
        self._broadcast("directory", entries=self.deltas[start:], start=start)
        self._unsent = 0

    # ------------------------------------------------------------------ handlers
    def _h_register(self, indices: list, address: str, version: int = 0,
                    began: list | None = None) -> dict:
        """Operator incarnations start on ``address`` (one worker's batch): assign each its
        incarnation number. Before the start the reply carries no directory (the start
        brings it whole, once per worker); after it, the changes since ``version``.
        ``began``: when the batch's first and last tasks began (launch timings)."""
        if began and self.go_time is None:
            self.phases["first_task"] = min(self.phases.get("first_task", began[0]), began[0])
            self.phases["last_task"] = max(self.phases.get("last_task", began[1]), began[1])
        operators = [{"incarnation": self._register_one(int(i), address)} for i in indices]
        started = self.go_time is not None
        return {
            "operators": operators,
            "elapsed": self._elapsed(),
            "stopped": self.stopped,
            "directory": self._since(version) if started else [],
            "version": len(self.deltas) if started else version,
        }

    def _register_one(self, index: int, address: str) -> int:
        previous = self.entries.get(index)
        incarnation = 0 if previous is None else previous[1] + 1
        self.entries[index] = (address, incarnation)
        ws = self.scheduler.workers.get(address)
        if ws is not None and ws.nanny:
            self.nannies[address] = ws.nanny
        if self.go_time is None:
            self.phases.setdefault("first_register", time())
            if len(self.entries) == self.n_partitions:
                self.phases.setdefault("all_registered", time())
        self.lost.discard(index)
        if incarnation > 0:
            self._end(index, incarnation - 1, f"retried by dask after {previous[0]} failed")
            cause = self.ended[(index, incarnation - 1)]
            self.restarts.append([index, incarnation, cause, self._elapsed() or 0.0])
            self._emit("restart", index, incarnation, cause, self._elapsed() or 0.0, address)
            logger.info("asip %s: partition %d restarted (incarnation %d): %s",
                        self.run_id, index, incarnation, cause)
        self._publish([index, address, incarnation])
        return incarnation

    def _h_ready(self, items: list) -> None:
        """Operator incarnations ``[[index, incarnation], ...]`` finished their setup; the
        last one of the gang starts it (the whole directory goes with the start)."""
        for index, incarnation in items:
            if (index, incarnation) in self.ready:
                continue
            self.ready.add((index, incarnation))
            self._ready_indices.add(index)
            if incarnation > 0 and self.go_time is not None:  # a restart's setup is done
                self._emit("ready", index, incarnation, self._elapsed())
        if self.go_time is None and len(self._ready_indices) == self.n_partitions:
            self.go_time = self.phases["go"] = time()
            # the workers first: the driver's max_time backstop runs from when it hears
            # the start, so it never cuts short an operator that heard it late
            self._broadcast("go", on_reply=self._heard_go, entries=self._directory(),
                            version=len(self.deltas))
            self._emit("go", self.go_time)

    def _heard_go(self, at: Any) -> None:
        """A worker's answer to the start: when it got it (launch phases ``first_started``
        and ``all_started``: the start reached the first and the last worker)."""
        if isinstance(at, (int, float)):
            self.phases["first_started"] = min(self.phases.get("first_started", at), at)
            self.phases["all_started"] = max(self.phases.get("all_started", at), at)

    def _h_report(self, reports: list, alive: list = (), ready: list = (),
                  progress: list = (), version: int = 0) -> dict:
        """A worker's beat: reports ([elapsed, index, incarnation, packed]), setups done
        (re-sent until the start, so a lost ``ready`` costs one beat), and progress.

        The reply carries the directory changes the worker missed and the start and stop
        state, so a worker that missed a broadcast catches up within one beat.
        """
        if ready:
            self._h_ready(ready)
        for index, incarnation, steps, stats in progress:
            known = self.progress.get((index, incarnation))
            self.progress[(index, incarnation)] = [
                steps, stats if stats is not None or known is None else known[1]]
        if reports:
            self._emit("reports", reports)
            for entry in reports:
                size = len(entry[3]) + 64
                self.recent.append((entry, size))
                self.recent_bytes += size
                self.report_count += 1
            while self.recent_bytes > _RECENT_BYTES and self.recent:
                self.recent_bytes -= self.recent.popleft()[1]
        started = self.go_time is not None  # before the start, the directory is not needed
        return {"directory": self._since(version) if started else [],
                "version": len(self.deltas) if started else version,
                "started": started, "stopped": self.stopped}

    def _h_result(self, index: int, incarnation: int, summary: bytes) -> None:
        """An incarnation returned: its (small) summary goes on to the driver at once."""
        self._emit("result", index, incarnation, summary)

    def _h_failed(self, index: int, cause: str) -> None:
        """The driver saw an incarnation fail (its error): recorded unless a cause is known."""
        if index in self.entries:
            self._end(index, self.entries[index][1], cause)

    def _h_poll(self, cursor: int = 0) -> dict:
        """The whole state (diagnostics: the gang's start timeout names who is missing)."""
        return {
            "registered": self._directory(),
            "ready": sorted(self.ready),
            "elapsed": self._elapsed(),
            "restarts": self.restarts,
            "lost": sorted(self.lost),
        }

    def _h_summary(self) -> dict:
        """At the end: every incarnation's last known steps and channel statistics, and why
        each one that ended early ended."""
        return {
            "progress": [[i, inc, steps, stats] for (i, inc), (steps, stats) in sorted(self.progress.items())],
            "ended": [[i, inc, cause] for (i, inc), cause in sorted(self.ended.items())],
            "restarts": self.restarts,
            "hung_kills": self.hung_kills,
            "busy": dict(self.busy),
            "phases": dict(self.phases),
            "respawning": sorted(self.respawning),
        }

    def dashboard_state(self, cursor: int = 0) -> dict:
        """Read-only view for the ``/asip`` dashboard page (on the scheduler's event loop):
        the directory's state, the recent reports after ``cursor`` (a small byte-bounded
        window: the trace itself goes to the driver), heartbeat ages, size and stop state."""
        now = time()
        first = self.report_count - len(self.recent)
        reports = [e for k, (e, _) in enumerate(self.recent) if first + k >= cursor]
        silence = []
        for index, (addr, _) in self.entries.items():
            ws = self.scheduler.workers.get(addr)
            silence.append([index, now - ws.last_seen if ws is not None else 0.0])
        return {**self._h_poll(), "reports": reports, "cursor": self.report_count,
                "silence": silence, "n_partitions": self.n_partitions,
                "stopped": self.stopped, "closed": self.closed}

    def _h_stop(self, reason: str) -> None:
        if self.stopped is None:
            self.stopped = reason
            self._broadcast("stop", reason=reason)

    async def _h_finish(self, worker_timeout: float = 4.0, background: bool = False) -> dict:
        """The stage is over, in one round trip from the driver (not four): its summary,
        then its worker plugin removed from every worker (waited for at most
        ``worker_timeout`` s: a hung worker never holds the driver), this run's handlers
        and this plugin removed from the scheduler.

        ``background`` (every operator has returned): the summary goes back at once and
        the removal goes on here; the next stage's directory waits for it before it
        starts (`_settle_finishing`), so no stage launches beside another's leftovers."""
        summary = self._h_summary()
        if background:
            task = asyncio.ensure_future(self._clean_up(worker_timeout))
            _FINISHING.add(task)
            task.add_done_callback(_FINISHING.discard)
            return summary
        await self._clean_up(worker_timeout)
        return summary

    async def _clean_up(self, worker_timeout: float) -> None:
        """Remove the worker plugin from every worker, then this run's handlers and plugin."""
        if self.worker_plugin is not None and self.worker_plugin in self.scheduler.worker_plugins:
            removal = asyncio.ensure_future(
                self.scheduler.unregister_worker_plugin(None, name=self.worker_plugin))
            try:  # shielded: past the timeout the removal goes on in the background
                await asyncio.wait_for(asyncio.shield(removal), worker_timeout)
            except Exception as exc:  # noqa: BLE001 - a hung or unreachable worker
                logger.warning("asip %s: removing worker plugin %s: %r", self.run_id,
                               self.worker_plugin, exc)
        self._h_close()
        try:
            self.scheduler.remove_plugin(name=self.name)
        except ValueError:  # already removed
            pass

    def _h_close(self) -> None:
        """The stage is over: stop broadcasting and remove this run's handlers.

        (``unregister_scheduler_plugin`` does not call ``close``, so the driver calls this.)
        """
        self.closed = True
        self._remove_handlers()
        for task in list(self._background):
            task.cancel()

    # ------------------------------------------------------------------ cluster events
    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        self.suspects.discard(worker)
        if worker in self.nannies:  # its nanny starts a new process (`asip._respawned`)
            self.respawning.add(self.nannies.pop(worker))
        for index, (address, incarnation) in self.entries.items():
            if address == worker and index not in self.lost:
                self._end(index, incarnation, f"worker {worker} lost")
                self.lost.add(index)
                self._emit("lost", index, self.ended[(index, incarnation)], self._elapsed())

    def add_worker(self, scheduler: Any, worker: str) -> None:
        """A worker joined while the stage runs (a nanny's new process): the driver's timeline."""
        if self.go_time is not None and self.stopped is None:
            self._emit("joined", worker, self._elapsed())

    def remove_client(self, scheduler: Any, client: str) -> None:
        """The driver's client is gone: stop the stage and take it off the cluster."""
        if client != self.client_id or self.closed:
            return
        logger.warning("asip %s: the driver's client %s disconnected; stopping the stage and "
                       "removing it from the cluster", self.run_id, client)
        self._h_stop(f"driver lost (client {client} disconnected)")
        self._spawn(self._orphaned())

    async def _orphaned(self) -> None:
        await asyncio.sleep(0.5)  # let operators see the stop and return between steps
        if self.worker_plugin is not None:
            try:
                await self.scheduler.unregister_worker_plugin(None, name=self.worker_plugin)
            except Exception as exc:  # already gone
                logger.debug("asip: removing %s: %r", self.worker_plugin, exc)
        self.client_id = None
        self._h_close()
        try:
            self.scheduler.remove_plugin(name=self.name)
        except ValueError:
            pass

    # ------------------------------------------------------------------ liveness
    async def _watch_heartbeats(self) -> None:
        """Judge any worker of this stage whose heartbeat to the scheduler is late: one
        running its operators, or one sent operator tasks that never registered (a worker
        frozen before its share of the gang registers would otherwise hold the start
        until ``asip.gang.start-timeout``; killed, its tasks go elsewhere and it starts)."""
        while not self.closed:
            await asyncio.sleep(min(0.5, self.silence_timeout / 4))
            if self.stopped is not None:
                continue
            now = time()
            limit = self.silence_limit(len(self.scheduler.workers))
            registered = {a for a, _ in self.entries.values()}
            for addr, ws in list(self.scheduler.workers.items()):
                if addr in self.suspects or now - ws.last_seen < limit:
                    continue
                if addr in registered or self._has_operator_tasks(ws):
                    self.suspects.add(addr)
                    self._emit("silent", addr, self._partitions_on(addr), now - ws.last_seen)
                    self._spawn(self._judge(addr, now - ws.last_seen))

    def silence_limit(self, n_workers: int) -> float:
        """How late a heartbeat may be before its worker is judged: the configured timeout,
        but never under three of the heartbeat intervals distributed asks of ``n_workers``
        workers (n/200 + 1 s past 200 workers), so a big cluster's on-time beats never look late."""
        return max(self.silence_timeout, 3.0 * heartbeat_interval(n_workers))

    def _has_operator_tasks(self, ws: Any) -> bool:
        """Whether the scheduler sent this stage's operator tasks to worker ``ws``."""
        prefix = f"asip-{self.run_id}-op"
        return any(isinstance(ts.key, str) and ts.key.startswith(prefix) for ts in ws.processing)

    def _partitions_on(self, addr: str) -> list[int]:
        """The partitions whose current incarnation runs on ``addr`` (and is not lost)."""
        return sorted(i for i, (a, _) in self.entries.items() if a == addr and i not in self.lost)

    async def _nanny_sample(self, addr: str) -> dict | None:
        """The nanny's look at its worker process (`process_sample`), or an error within
        distributed's connect timeout: a pooled connection to the nanny (the stage's nanny
        plugins were sent over one) hangs on a link that drops packets instead of failing
        to connect, and a sample takes milliseconds when the nanny is there."""
        ws = self.scheduler.workers.get(addr)
        if ws is None or not ws.nanny:
            return None
        connect = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s")
        reply = await asyncio.wait_for(
            self.scheduler.rpc(ws.nanny).run(function=dumps(process_sample)),
            min(self.control_timeout, connect))
        result = reply.get("result") if isinstance(reply, dict) else None
        if isinstance(result, Serialized):  # the scheduler's RPCs leave results serialized
            result = deserialize(result.header, result.frames)
        return result

    async def _judge(self, addr: str, quiet: float) -> None:
        """Busy (its process uses CPU: a flood, a GIL-holding task) or hung (stopped, idle,
        unreachable)? Busy workers are left alone and judged again later."""
        verdict, reachable = "no nanny to ask", True
        try:
            first = await self._nanny_sample(addr)
            await asyncio.sleep(0.5)
            second = await self._nanny_sample(addr)
            if first is not None and second is not None:
                used = second["cpu"] - first["cpu"]
                if second["status"] not in ("stopped", "zombie", "dead") and used > 0.005:
                    self.busy[addr] = self.busy.get(addr, 0) + 1
                    logger.info("asip %s: worker %s missed heartbeats for %.1f s but is busy "
                                "(%.2f CPU s in 0.5 s); not restarting it",
                                self.run_id, addr, quiet, used)
                    self._emit("busy", addr, self._partitions_on(addr), quiet)
                    await asyncio.sleep(self.silence_timeout)
                    self.suspects.discard(addr)
                    return
                verdict = f"process {second['status']}, {used:.3f} CPU s in 0.5 s"
        except Exception as exc:  # nanny unreachable (a cut link) or gone
            verdict, reachable = f"nanny unreachable: {exc!r}", False
        if self.closed or self.stopped is not None or addr not in self.scheduler.workers:
            self.suspects.discard(addr)
            return
        cause = f"worker {addr} silent for {quiet:.1f} s and hung ({verdict}); restarted"
        logger.warning("asip %s: %s", self.run_id, cause)
        for index, (address, incarnation) in self.entries.items():
            if address == addr and index not in self.lost:
                self._end(index, incarnation, cause)
                self.lost.add(index)
                self._emit("lost", index, self.ended[(index, incarnation)], self._elapsed())
        self.hung_kills += 1
        self._emit("hung", addr, cause)
        await self._kill(addr, via_nanny=reachable)

    async def _kill(self, addr: str, via_nanny: bool = True) -> None:
        """Have the hung worker's nanny SIGKILL it after ``kill_timeout`` (a frozen process
        never closes by itself); without a reachable nanny (``via_nanny`` False: it did not
        answer already), remove it from the scheduler at once so Dask recomputes its
        partitions and its operators restart elsewhere."""
        stimulus_id = f"asip-hung-worker-{time()}"
        if not via_nanny:
            if addr in self.scheduler.workers:
                await self.scheduler.remove_worker(addr, stimulus_id=stimulus_id)
            return
        try:
            replies = await asyncio.wait_for(self.scheduler.broadcast(
                workers=[addr], nanny=True, on_error="return",
                msg={"op": "kill", "timeout": self.kill_timeout, "reason": stimulus_id},
            ), self.control_timeout)
        except asyncio.TimeoutError:
            replies = {addr: "timed out"}
        except Exception as exc:
            replies = {addr: repr(exc)}
        if replies and all(r is None for r in replies.values()):  # Nanny.kill returns None
            return
        if addr in self.scheduler.workers:
            await self.scheduler.remove_worker(addr, stimulus_id=stimulus_id)
