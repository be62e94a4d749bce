"""The live ASIP page at ``/asip`` on the scheduler's Bokeh dashboard.

It shows the running stage(s): per operator its worker, incarnation, steps/s,
messages and bytes in/out per second, message age, drops and rejections, the
restarts (a kill shows at once), and every scalar metric operators ``ctx.report``
plotted over time. Nothing is sampled while nobody watches: each open page polls
once a second.

Three ways in, all ending in `install`:

- ``dask scheduler --preload asip.dashboard`` (or ``distributed.scheduler.preload``):
  importing this module adds ``/asip`` to distributed's ``applications`` dict before
  the scheduler's HTTP server starts, and ``dask_setup`` adds the navigation link;
- ``asip.connect()`` (embedded cluster or an address) registers `DashboardPlugin`;
- a scheduler plugin registered later still mounts the page on the running server.
"""

from __future__ import annotations

import asyncio
import html
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

logger = logging.getLogger(__name__)

__all__ = ["DashboardPlugin", "StageMonitor", "dask_setup", "install", "page_link"]

PATH = "/asip"
_REFRESH_EVERY = 0.5  # s: the monitor samples at most this often, however many pages are open
_WORKER_TIMEOUT = 5.0  # s: a hung worker must not stall the page for longer
_MAX_POINTS = 2000  # per metric and partition; older points are thinned out
_ENDED_KEPT = 10  # ended stages remembered for their empty-state line
_SILENT_AFTER = 1.0  # s without a beat from its worker: shown as "silent" (hung?)

try:  # the dashboard needs bokeh (distributed's own optional dependency)
    from distributed.dashboard import scheduler as _dashboard
except ImportError:  # pragma: no cover - exercised only without bokeh
    _dashboard = None


# ---------------------------------------------------------------------- worker side
class _StatsPlugin(WorkerPlugin):
    """Answers ``asip_dashboard_stats``: the channel counters of this worker's operators."""

    name = "asip-dashboard-stats"
    idempotent = True

    def setup(self, worker: Any) -> None:
        def asip_dashboard_stats() -> dict:
            return _channel_counters(worker)

        worker.handlers["asip_dashboard_stats"] = asip_dashboard_stats

    def teardown(self, worker: Any) -> None:
        worker.handlers.pop("asip_dashboard_stats", None)


def _channel_counters(worker: Any) -> dict:
    """``{run_id: [[index, counters], ...]}`` for every asip channel plugin on ``worker``."""
    out: dict[str, list] = {}
    for name, plugin in list(worker.plugins.items()):
        if not name.startswith("asip-channel-"):
            continue
        stats = getattr(plugin, "stats", None) or {}
        out[plugin.run_id] = [[index, s.as_dict()] for index, s in list(stats.items())]
    return out


# ---------------------------------------------------------------------- the model
@dataclass
class OperatorRow:
    """What the page shows for one partition."""

    partition: int
    worker: str = ""
    incarnation: int = 0
    state: str = "starting"
    steps_per_s: float = 0.0
    msgs_out_per_s: float = 0.0
    msgs_in_per_s: float = 0.0
    bytes_out_per_s: float = 0.0
    bytes_in_per_s: float = 0.0
    age_ms: float = math.nan  # mean age of the messages polled since the last sample
    age_max_ms: float = math.nan
    dropped: int = 0
    rejected: int = 0
    restarts: int = 0
    silent_s: float = 0.0


@dataclass
class StageView:
    """One stage as the page knows it: operator rows, restarts and metric series."""

    run_id: str
    n_partitions: int
    state: str = "launching"  # launching, running, stopping, ended
    stopped: str | None = None
    elapsed: float = 0.0
    rows: dict[int, OperatorRow] = field(default_factory=dict)
    restarts: list[tuple] = field(default_factory=list)  # (partition, incarnation, cause, time)
    metrics: dict[str, dict[int, tuple[list, list]]] = field(default_factory=dict)
    cursor: int = 0
    counters: dict[int, tuple] = field(default_factory=dict)  # index -> (t, incarnation, dict)
    ended_at: float | None = None

    def add_reports(self, reports: list) -> None:
        """Fold ``[time, index, incarnation, packed]`` reports into the scalar series."""
        from asip._wire import unpack_payload

        for t, index, _, packed in reports:
            try:
                metrics = unpack_payload(packed)
            except Exception:  # a report the page cannot read is not worth a traceback
                continue
            for key, value in metrics.items():
                value = _scalar(value)
                if value is None:
                    continue
                xs, ys = self.metrics.setdefault(key, {}).setdefault(index, ([], []))
                xs.append(float(t))
                ys.append(value)
                if len(xs) > _MAX_POINTS:  # keep the whole run, at half the resolution
                    del xs[1::2], ys[1::2]


def _scalar(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    shape = getattr(value, "shape", None)
    if shape == () or shape == (1,):  # numpy scalars and length-1 arrays
        try:
            return float(value.reshape(()))
        except (TypeError, ValueError):
            return None
    return None


def _directories(scheduler: Any) -> dict[str, Any]:
    """The live per-stage directory plugins on this scheduler, by run id."""
    from asip._directory import DirectoryPlugin

    return {p.run_id: p for p in list(scheduler.plugins.values())
            if isinstance(p, DirectoryPlugin)}


class StageMonitor:
    """Per scheduler: the stages the page shows, refreshed from the directory and workers.

    The directory (on the scheduler) gives placement, incarnations, restarts and
    reports; the channel counters come from the workers, one small RPC each with a
    short timeout. Rates are differences between two samples of the same incarnation.
    """

    def __init__(self, scheduler: Any):
        self.scheduler = scheduler
        self.views: dict[str, StageView] = {}
        self.ended: list[str] = []
        self.refreshed_at = 0.0
        self._plugin_installed = False
        self._lock = asyncio.Lock()

    @classmethod
    def of(cls, scheduler: Any) -> StageMonitor:
        monitor = scheduler.extensions.get("asip-dashboard")
        if monitor is None:
            monitor = scheduler.extensions["asip-dashboard"] = cls(scheduler)
        return monitor

    # -------------------------------------------------------------- reading
    def running(self) -> list[str]:
        return [r for r, v in self.views.items() if v.state != "ended"]

    def current(self) -> StageView | None:
        """The newest running stage, else None."""
        running = self.running()
        return self.views[running[-1]] if running else None

    # -------------------------------------------------------------- sampling
    def update_directory(self) -> None:
        """Synchronous part (event loop): placement, restarts, reports, liveness."""
        live = _directories(self.scheduler)
        now = time.time()
        for run_id, plugin in live.items():
            try:
                state = plugin.dashboard_state(self.views[run_id].cursor
                                               if run_id in self.views else 0)
            except Exception:  # a plugin not started yet, or being torn down
                logger.debug("asip dashboard: no state from stage %s", run_id, exc_info=True)
                continue
            view = self.views.get(run_id)
            if view is None:
                view = self.views[run_id] = StageView(run_id, state["n_partitions"])
            self._apply(view, state)
        for run_id, view in self.views.items():
            closed = run_id not in live or getattr(live[run_id], "closed", False)
            if closed and view.state != "ended":
                view.state, view.ended_at = "ended", now
                for row in view.rows.values():
                    row.state = "ended"
                self.ended.append(run_id)
        while len(self.ended) > _ENDED_KEPT:
            self.views.pop(self.ended.pop(0), None)

    def _apply(self, view: StageView, state: dict) -> None:
        view.cursor = state["cursor"]
        view.add_reports(state["reports"])
        view.elapsed = state["elapsed"] or 0.0
        view.stopped = state["stopped"]
        ready = {(i, inc) for i, inc in state["ready"]}
        lost = set(state["lost"])
        silence = dict(state["silence"])
        view.state = ("stopping" if state["stopped"] else
                      "running" if state["elapsed"] is not None else "launching")
        view.restarts = [tuple(r) for r in state["restarts"]]
        restarts_of: dict[int, int] = {}
        for r in view.restarts:
            restarts_of[r[0]] = restarts_of.get(r[0], 0) + 1
        for index, address, incarnation in state["registered"]:
            row = view.rows.setdefault(index, OperatorRow(index))
            row.worker, row.incarnation = address, incarnation
            row.restarts = restarts_of.get(index, 0)
            row.silent_s = float(silence.get(index, 0.0))
            row.state = ("lost" if index in lost else
                         view.state if view.state == "stopping" else
                         "starting" if (index, incarnation) not in ready else
                         "silent" if row.silent_s >= _SILENT_AFTER else "running")

    async def _ensure_worker_plugin(self) -> None:
        if self._plugin_installed:
            return
        from distributed.protocol.pickle import dumps

        self._plugin_installed = True  # the scheduler keeps it for every worker from now on
        try:
            await self.scheduler.register_worker_plugin(
                None, dumps(_StatsPlugin()), name=_StatsPlugin.name, idempotent=True)
        except Exception as exc:  # a worker that died meanwhile; its successor gets it
            logger.debug("asip dashboard: stats plugin not on every worker: %r", exc)

    async def _counters(self) -> dict[str, dict[int, dict]]:
        """Channel counters of every running operator, from all workers at once."""
        await self._ensure_worker_plugin()

        async def one(addr: str) -> dict:
            try:
                return await asyncio.wait_for(
                    self.scheduler.rpc(addr).asip_dashboard_stats(), _WORKER_TIMEOUT)
            except Exception as exc:  # dead, hung or still starting: no counters this time
                logger.debug("asip dashboard: no counters from %s: %r", addr, exc)
                return {}

        out: dict[str, dict[int, dict]] = {}
        for reply in await asyncio.gather(*(one(a) for a in list(self.scheduler.workers))):
            for run_id, entries in (reply or {}).items():
                for index, counters in entries:
                    out.setdefault(run_id, {})[index] = counters
        return out

    def _apply_counters(self, view: StageView, counters: dict[int, dict], now: float) -> None:
        for index in view.rows.keys() - counters.keys():  # no reply from its worker in time:
            row = view.rows[index]  # keep the last rates (see "silent s"), unless it is gone
            if row.state == "lost":
                row.steps_per_s = row.msgs_out_per_s = row.msgs_in_per_s = 0.0
                row.bytes_out_per_s = row.bytes_in_per_s = 0.0
        for index, c in counters.items():
            row = view.rows.get(index)
            if row is None:
                continue
            before = view.counters.get(index)
            view.counters[index] = (now, row.incarnation, c)
            row.dropped = (c.get("dropped_no_route", 0) + c.get("dropped_overflow", 0)
                           + c.get("dropped_injected", 0))
            row.rejected = c.get("rejected", 0) + c.get("malformed", 0) + c.get("refused", 0)
            if before is None or before[1] != row.incarnation or now <= before[0]:
                continue
            dt, old = now - before[0], before[2]

            def rate(key: str) -> float:
                return max(0, c.get(key, 0) - old.get(key, 0)) / dt

            row.steps_per_s = rate("steps")
            row.msgs_out_per_s = rate("sent")
            row.msgs_in_per_s = rate("delivered")
            row.bytes_out_per_s = rate("pushed_bytes")
            row.bytes_in_per_s = rate("delivered_bytes")
            consumed = c.get("consumed", 0) - old.get("consumed", 0)
            if consumed > 0:
                row.age_ms = (c.get("age_us_total", 0) - old.get("age_us_total", 0)) / consumed / 1e3
            row.age_max_ms = c.get("age_us_max", 0) / 1e3

    async def refresh(self) -> None:
        """Sample directory and workers, at most every ``_REFRESH_EVERY`` s."""
        async with self._lock:
            if time.monotonic() - self.refreshed_at < _REFRESH_EVERY:
                return
            self.refreshed_at = time.monotonic()
            self.update_directory()
            if not self.running():
                return
            counters = await self._counters()
            now = time.monotonic()
            for run_id in self.running():
                self._apply_counters(self.views[run_id], counters.get(run_id, {}), now)


# ---------------------------------------------------------------------- the page
_COLUMNS = [
    ("partition", "partition"), ("worker", "worker"), ("incarnation", "incarnation"),
    ("state", "state"), ("steps_per_s", "steps/s"), ("msgs_out_per_s", "msgs out/s"),
    ("msgs_in_per_s", "msgs in/s"), ("bytes_out_per_s", "bytes out/s"),
    ("bytes_in_per_s", "bytes in/s"), ("age_ms", "msg age ms"), ("age_max_ms", "max age ms"),
    ("dropped", "dropped"), ("rejected", "rejected"), ("restarts", "restarts"),
    ("silent_s", "silent s"),
]

_TEMPLATE = """{% extends "base.html" %}
{% block content %}
<noscript><div id="asip-summary" style="margin: 8px 16px">{{ asip_summary }}</div></noscript>
{{ plot_div }}
{{ plot_script }}
{% endblock %}
"""


def _template() -> Any:
    import os

    import distributed
    from jinja2 import ChoiceLoader, DictLoader, Environment, FileSystemLoader

    templates = os.path.join(os.path.dirname(distributed.__file__), "http", "templates")
    env = Environment(loader=ChoiceLoader([DictLoader({"asip.html": _TEMPLATE}),
                                           FileSystemLoader(templates)]))
    return env.get_template("asip.html")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:,.1f}" if abs(value) < 1e6 else f"{value:.3g}"
    return str(value)


def _empty_text(monitor: StageMonitor, wanted: str | None) -> str:
    lines = []
    if wanted:
        view = monitor.views.get(wanted)
        if view is not None and view.state == "ended":
            lines.append(f"Stage {wanted} has ended ({view.stopped or 'finished'}); "
                         "its results are in the StageResult on the driver.")
        else:
            lines.append(f"No stage {wanted} on this scheduler: it ended before this page "
                         "saw it, or never existed.")
        running = monitor.running()
        if running:
            lines.append("Running now: " + ", ".join(
                f'<a href="?stage={r}">{r}</a>' for r in running))
    else:
        lines.append("No asip stage is running on this scheduler. Run an asip.Stage or fit an "
                     "asip estimator: this page picks it up by itself.")
        for run_id in reversed(monitor.ended[-3:]):
            view = monitor.views.get(run_id)
            if view is not None:
                lines.append(f"Ended: stage {run_id}, {view.n_partitions} operators, "
                             f"{len(view.restarts)} restarts ({view.stopped or 'finished'}).")
    return "".join(f"<p>{line}</p>" for line in lines)


def _header(view: StageView) -> str:
    return (f"<h3>ASIP stage {html.escape(view.run_id)}: {view.state}</h3>"
            f"<p>{view.n_partitions} operators, {len(view.rows)} registered, "
            f"{view.elapsed:.1f} s since the gang started, {len(view.restarts)} restarts"
            + (f", stopping: {html.escape(view.stopped)}" if view.stopped else "") + "</p>")


def _restarts_html(view: StageView) -> str:
    if not view.restarts:
        return "<p>Restarts and kills: none.</p>"
    items = "".join(
        f"<li>{t:.2f} s: partition {p} restarted as incarnation {inc} ({html.escape(str(cause))})</li>"
        for p, inc, cause, t in view.restarts[-20:])
    return f"<p>Restarts and kills:</p><ul>{items}</ul>"


def summary_html(monitor: StageMonitor, wanted: str | None) -> str:
    """The page's server-rendered part (plain HTML, no script needed): stage and operators."""
    view = monitor.views.get(wanted) if wanted else monitor.current()
    if view is None or view.state == "ended":
        return _empty_text(monitor, wanted)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(getattr(r, k)))}</td>" for k in
                         ("partition", "worker", "incarnation", "state", "restarts")) + "</tr>"
        for r in sorted(view.rows.values(), key=lambda r: r.partition))
    head = "".join(f"<th>{h}</th>" for h in ("partition", "worker", "incarnation", "state",
                                             "restarts"))
    return (_header(view) + f'<table class="asip-operators"><tr>{head}</tr>{rows}</table>'
            + _restarts_html(view))


_STYLE = """<style>
table.asip-live {border-collapse: collapse; font-size: 13px; width: 100%}
table.asip-live th, table.asip-live td {border-bottom: 1px solid #ddd; padding: 3px 8px;
  text-align: right; white-space: nowrap}
table.asip-live th:nth-child(-n+4), table.asip-live td:nth-child(-n+4) {text-align: left}
table.asip-live tr.lost td, table.asip-live tr.restarted td:nth-child(3) {color: #c0392b;
  font-weight: bold}
</style>"""


def _live_table(view: StageView) -> str:
    """Every operator with its rates and counters (lost ones and restarts in red)."""
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in _COLUMNS)
    body = []
    for row in sorted(view.rows.values(), key=lambda r: r.partition):
        cls = ("lost" if row.state in ("lost", "silent") else
               "restarted" if row.incarnation else "")
        cells = "".join(f"<td>{html.escape(_fmt(getattr(row, k)))}</td>" for k, _ in _COLUMNS)
        body.append(f'<tr class="{cls}">{cells}</tr>')
    return f'{_STYLE}<table class="asip-live"><tr>{head}</tr>{"".join(body)}</table>'


class AsipPage:
    """The Bokeh widgets of one open page, refreshed from the shared `StageMonitor`."""

    def __init__(self, monitor: StageMonitor, wanted: str | None, doc: Any = None):
        from bokeh.layouts import column
        from bokeh.models import Div

        self.monitor = monitor
        self.wanted = wanted
        self.doc = doc
        self.shown: str | None = None
        self.header = Div(text="", sizing_mode="stretch_width")
        self.table = Div(text="", sizing_mode="stretch_width")
        self.faults = Div(text="", sizing_mode="stretch_width")
        self.plots = column(sizing_mode="stretch_width")
        self.lines: dict[tuple[str, int], Any] = {}
        self.figures: dict[str, Any] = {}
        self.root = column(self.header, self.table, self.faults, self.plots,
                           sizing_mode="stretch_width")

    def _view(self) -> StageView | None:
        view = self.monitor.views.get(self.wanted) if self.wanted else self.monitor.current()
        return None if view is None or view.state == "ended" else view

    def update(self) -> None:
        """Redraw from the monitor's latest sample (called with the document lock held)."""
        view = self._view()
        if view is None:
            self.header.text = _empty_text(self.monitor, self.wanted)
            self.table.visible = self.faults.visible = self.plots.visible = False
            return
        if view.run_id != self.shown:  # a new stage: start its plots afresh
            self.shown = view.run_id
            self.plots.children = []
            self.lines.clear()
            self.figures.clear()
        self.table.visible = self.faults.visible = self.plots.visible = True
        self.header.text = _header(view)
        self.table.text = _live_table(view)
        self.faults.text = _restarts_html(view)
        self._update_plots(view)

    def _update_plots(self, view: StageView) -> None:
        from bokeh.palettes import Category10_10
        from bokeh.plotting import figure

        for key in sorted(view.metrics):
            fig = self.figures.get(key)
            if fig is None:
                fig = self.figures[key] = figure(
                    title=f"ctx.report: {key}", height=220, sizing_mode="stretch_width",
                    x_axis_label="stage time (s)", tools="pan,wheel_zoom,box_zoom,reset,save")
                self.plots.children = [*self.plots.children, fig]
            for index, (xs, ys) in view.metrics[key].items():
                line = self.lines.get((key, index))
                if line is None:
                    line = self.lines[(key, index)] = fig.line(
                        [], [], color=Category10_10[index % 10], line_width=2,
                        legend_label=f"partition {index}")
                    fig.legend.location = "top_right"
                    fig.legend.click_policy = "hide"
                line.data_source.data = {"x": list(xs), "y": list(ys)}

    async def tick(self) -> None:
        if not _watched(self.doc):  # a session nobody has connected to (a plain GET)
            return
        await self.monitor.refresh()
        self.update()


def _watched(doc: Any) -> bool:
    """Whether a browser is connected to this document's session (Bokeh keeps sessions
    of plain GETs alive for a while; their periodic callbacks should cost nothing)."""
    session = getattr(getattr(doc, "session_context", None), "_session", None)
    return session is None or getattr(session, "connection_count", 1) > 0


def asip_doc(scheduler: Any, extra: dict, doc: Any) -> None:
    """Bokeh document function for ``/asip`` (``?stage=<run id>`` picks a stage)."""
    args = doc.session_context.request.arguments if doc.session_context else {}
    wanted = args.get("stage", [b""])[0]
    wanted = wanted.decode() if isinstance(wanted, bytes) else wanted
    monitor = StageMonitor.of(scheduler)
    monitor.update_directory()
    page = AsipPage(monitor, wanted or None, doc)
    page.update()
    doc.title = "Dask: ASIP"
    doc.add_root(page.root)
    doc.template = _template()
    doc.template_variables.update(extra)
    doc.template_variables["asip_summary"] = summary_html(monitor, wanted or None)
    doc.add_periodic_callback(page.tick, 1000)


# ---------------------------------------------------------------------- installing
def _served(scheduler: Any) -> bool:
    app = getattr(scheduler, "http_application", None)
    for sub in getattr(app, "applications", ()):
        paths = getattr(sub, "app_paths", ())
        if any(p.rstrip("/").endswith(PATH) for p in paths):
            return True
    return False


def install(scheduler: Any) -> bool:
    """Serve ``/asip`` on this scheduler's dashboard (if it has one) and link it in the
    navigation bar. Idempotent; returns whether the page is served."""
    if _dashboard is None or getattr(scheduler, "http_application", None) is None:
        return False
    if not _served(scheduler):
        try:
            _mount(scheduler)
        except Exception:
            logger.warning("asip: could not add the /asip dashboard page", exc_info=True)
            return False
    try:
        pages = _dashboard.template_variables(scheduler)["pages"]
        if "asip" not in pages:
            pages.append("asip")
    except Exception:  # the navigation link is a nicety
        logger.debug("asip: no navigation link", exc_info=True)
    return _served(scheduler)


def _mount(scheduler: Any) -> None:
    """Mount a Bokeh server with just ``/asip`` on the scheduler's running HTTP server
    (what distributed's own ``dashboard.scheduler.connect`` does for its pages)."""
    from tornado.ioloop import IOLoop

    from distributed.dashboard.core import BokehApplication

    bokeh_apps = [a for a in scheduler.http_application.applications if hasattr(a, "app_paths")]
    if not bokeh_apps:
        return  # the dashboard is off (no Bokeh server on this scheduler)
    prefix = bokeh_apps[0].prefix  # the same prefix as distributed's own pages
    app = BokehApplication({PATH: asip_doc}, scheduler, prefix=prefix,
                           template_variables=_dashboard.template_variables(scheduler))
    scheduler.http_application.add_application(app)
    app.initialize(IOLoop.current())
    app.start()


def page_link(dashboard_link: str | None) -> str | None:
    """The ``/asip`` URL next to a client's ``dashboard_link`` (which ends in ``/status``)."""
    if not dashboard_link:
        return None
    base = dashboard_link.rsplit("/", 1)[0] if dashboard_link.endswith("/status") else \
        dashboard_link.rstrip("/")
    return base + PATH


class DashboardPlugin(SchedulerPlugin):
    """Adds the ``/asip`` page to a running scheduler's dashboard (see `install`)."""

    name = "asip-dashboard"
    idempotent = True

    async def start(self, scheduler: Any) -> None:
        install(scheduler)


def dask_setup(scheduler: Any) -> None:
    """Preload hook (``dask scheduler --preload asip.dashboard``)."""
    if hasattr(scheduler, "http_application"):  # a scheduler, not a worker
        install(scheduler)


if _dashboard is not None:  # the idiomatic hook: before the scheduler's HTTP server starts
    _dashboard.applications.setdefault(PATH, asip_doc)
