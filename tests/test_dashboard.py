"""The /asip dashboard page: served by asip.connect() and by a `dask scheduler` CLI cluster
with ``--preload asip.dashboard``; live operators, kills and metrics; clear empty states;
and a real headless Chromium that sees the rows and a worker kill appear."""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client

import asip
from asip.dashboard import StageMonitor, page_link
from asip.faults import KillWorker

from _browser import Chromium, find_chromium
from dashboard_operators import GossipUntil

pytestmark = pytest.mark.timeout(150)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module", autouse=True)
def _patient_silence():
    """These tests watch the page, not hung-worker detection: on a machine loaded many
    times over, a busy worker must not be taken for a hung one and killed."""
    with dask.config.set({"asip.stage.peer-silence-timeout": "60s"}):
        yield


@pytest.fixture(scope="module")
def dash_client():
    """asip.connect() as a user calls it: embedded cluster, dashboard on by default."""
    with asip.connect(n_workers=2, silence_logs=40) as client:
        client.wait_for_workers(2, timeout=60)
        yield client


def _data(n_partitions: int = 2):
    return da.from_array(np.arange(400.0).reshape(200, 2), chunks=(200 // n_partitions, 2))


class _Background:
    """A stage running on a thread of the test process, so the page can be read meanwhile;
    `join` stops it (operators stop once the stop file exists) and waits for its result."""

    def __init__(self, client: Client, max_time: float = 60.0, **kwargs):
        self.result = self.error = None
        folder = tempfile.mkdtemp(prefix="asip-dash-")
        self.stop_file = os.path.join(folder, "stop")
        self.kill_file = os.path.join(folder, "kill")  # see `kill`
        operator = GossipUntil(self.stop_file, self.kill_file, poll_timeout=0.005)
        self.thread = threading.Thread(target=self._run, args=(client, operator, max_time,
                                                               kwargs), daemon=True)
        self.thread.start()

    def _run(self, client: Client, operator, max_time: float, kwargs: dict) -> None:
        try:
            self.result = asip.Stage(operator, _data(), client=client, max_time=max_time,
                                     **kwargs).run()
        except BaseException as exc:  # re-raised by join()
            self.error = exc

    def kill(self) -> None:
        """Partition 1's operator raises `InjectedFault` at its next step."""
        open(self.kill_file, "w").close()

    def join(self, timeout: float = 60.0):
        open(self.stop_file, "w").close()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the stage did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=20) as response:
        assert response.status == 200
        return response.read().decode()


def _summary(body: str) -> str:
    """The server-rendered part of the page (what a plain GET shows without scripts)."""
    match = re.search(r'<div id="asip-summary"[^>]*>(.*?)</div>', body, re.S)
    assert match, "the page has no asip summary"
    return match.group(1)


def _wait_for(url: str, predicate, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    summary = ""
    while time.monotonic() < deadline:
        summary = _summary(_get(url))
        if predicate(summary):
            return summary
        time.sleep(1.0)  # each GET builds a page on the scheduler's event loop
    raise AssertionError(f"the page never showed what was expected; last: {summary}")


def _rows(summary: str) -> dict[int, list[str]]:
    """Operator rows of the summary table: partition -> [worker, incarnation, state, restarts]."""
    rows = re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td><td>(\d+)</td><td>(\w+)</td>"
                      r"<td>(\d+)</td></tr>", summary)
    return {int(r[0]): list(r[1:]) for r in rows}


def test_connect_serves_the_page_and_empty_states(dash_client):
    link = page_link(dash_client.dashboard_link)
    assert link and link.endswith("/asip")
    assert "No asip stage is running" in _summary(_get(link))
    missing = _summary(_get(link + "?stage=deadbeef0000"))
    assert "No stage deadbeef0000" in missing and "never existed" in missing
    # the page is linked from the dashboard's navigation bar
    assert 'href="asip"' in _get(dash_client.dashboard_link)


def test_page_shows_operators_rates_metrics_and_a_kill(dash_client):
    link = page_link(dash_client.dashboard_link)
    # the kill comes once the running stage has been checked: a KillOperator at a stage time
    # (2 s) came before the page had shown incarnation 0 running, on a loaded machine
    stage = _Background(dash_client)
    summary = _wait_for(link, lambda s: [r[2] for r in _rows(s).values()] == ["running"] * 2)
    assert all(r[0].startswith("tcp://") and r[1] == "0" for r in _rows(summary).values())

    async def sample(dask_scheduler):  # what the page's widgets show, from the same monitor
        monitor = StageMonitor.of(dask_scheduler)
        monitor.refreshed_at = 0.0
        await monitor.refresh()
        view = monitor.current()
        return None if view is None else {
            "rows": {i: (r.steps_per_s, r.msgs_in_per_s, r.msgs_out_per_s, r.bytes_in_per_s)
                     for i, r in view.rows.items()},
            "metrics": {k: sorted(v) for k, v in view.metrics.items()}}

    def all_moving(seen) -> bool:
        return seen is not None and len(seen["rows"]) == 2 and all(
            min(rates) > 0 for rates in seen["rows"].values())

    deadline = time.monotonic() + 45  # rates are differences of two samples (a busy machine
    seen = dash_client.run_on_scheduler(sample)  # may miss a worker's reply for one sample)
    while not all_moving(seen) and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = dash_client.run_on_scheduler(sample)
    assert all_moving(seen), seen  # steps/s, msgs in/out per s, bytes/s from the workers
    assert seen["metrics"]["steps"] == [0, 1]  # Gossip's ctx.report(steps=...) is plotted

    stage.kill()
    summary = _wait_for(link, lambda s: "restarted as incarnation 1" in s)
    rows = _rows(summary)
    assert rows[1][1] == "1" and rows[1][3] == "1"  # partition 1: incarnation 1, one restart
    assert rows[0][1] == "0" and "InjectedFault" in summary
    res = stage.join()
    assert len(res.restarts) == 1
    # run() returns with the summary; the stage's plugins go right after (the page says
    # "stopping" until then)
    ended = _wait_for(link, lambda s: "No asip stage is running" in s, timeout=30)
    assert "1 restarts" in ended
    run_id = re.search(r"Ended: stage (\w+)", ended).group(1)
    assert "has ended" in _summary(_get(link + f"?stage={run_id}"))


@pytest.mark.skipif(find_chromium() is None,
                    reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run does)")
def test_browser_sees_rows_and_a_worker_kill(dash_client):
    link = page_link(dash_client.dashboard_link)
    with Chromium(link) as browser:
        # the page is open before the stage starts and must pick it up by itself
        assert "No asip stage is running" in browser.wait_for_text(
            lambda t: "No asip stage" in t)
        stage = _Background(dash_client, faults=[KillWorker(1, at=1.5)])
        text = browser.wait_for_text(lambda t: "restarted as incarnation 1" in t
                                     and t.count("tcp://") >= 2 and "steps/s" in t,
                                     timeout=45)
        browser.screenshot(str(ARTIFACTS / "asip-dashboard.png"))
        assert "restarted as incarnation 1" in text, text[-2000:]
        assert "msgs in/s" in text and "msg age ms" in text and "restarts" in text
        stage.join()
        text = browser.wait_for_text(lambda t: "No asip stage is running" in t, timeout=20)
        assert "Ended: stage" in text
    assert (ARTIFACTS / "asip-dashboard.png").stat().st_size > 10_000


def _example(name: str):
    """A module of ``examples/`` (its helpers are what a user copies)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"asip_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cli_cluster():
    """A cluster started with the `dask scheduler` / `dask worker` CLIs, page by preload
    (the copy-me helper of ``examples/cli_cluster.py``)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    with _example("cli_cluster").cli_cluster(2, timeout=120, env=env) as address, \
            Client(address) as client:  # a plain Client: no asip.connect
        client.wait_for_workers(2, timeout=60)
        yield client


def test_cli_scheduler_with_preload_serves_the_page(cli_cluster):
    link = page_link(cli_cluster.dashboard_link)
    assert "No asip stage is running" in _summary(_get(link))
    stage = _Background(cli_cluster)
    summary = _wait_for(link, lambda s: sum(r[2] == "running" for r in _rows(s).values()) == 2)
    listed = {r[0] for r in _rows(summary).values()}
    assert len(listed) == 2 and listed <= _known_workers(cli_cluster, listed)
    stage.join()


def _known_workers(client: Client, expected: set, timeout: float = 30.0) -> set:
    """The client's view of the cluster's workers, read until it holds ``expected`` or the
    deadline passes. One read is not enough: ``scheduler_info()`` fetches every worker, but
    the client's periodic refresh (every 2 s, without per-worker entries) can overwrite its
    answer before it returns -- seen as no workers at all at a load of 10."""
    deadline = time.monotonic() + timeout
    known = set(client.scheduler_info()["workers"])
    while not expected <= known and time.monotonic() < deadline:
        time.sleep(0.5)
        known = set(client.scheduler_info()["workers"])
    return known


def test_plugin_mounts_the_page_on_a_running_dashboard(monkeypatch):
    """A scheduler started before asip.dashboard was imported (no preload) gets the page
    from the scheduler plugin that asip.connect(address) registers; installing twice is
    harmless, and a scheduler without a dashboard is left alone."""
    import asyncio

    from distributed import Scheduler
    from distributed.dashboard import scheduler as distributed_pages
    from tornado.httpclient import AsyncHTTPClient

    from asip import dashboard

    monkeypatch.delitem(distributed_pages.applications, dashboard.PATH)

    async def go() -> str:
        async with Scheduler(host="127.0.0.1", port=0, dashboard_address="127.0.0.1:0") as s:
            assert not dashboard._served(s)
            await dashboard.DashboardPlugin().start(s)  # what register_plugin runs
            n_apps = len(s.http_application.applications)
            assert dashboard.install(s) and len(s.http_application.applications) == n_apps
            reply = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{s.http_server.port}/asip")
        async with Scheduler(host="127.0.0.1", port=0, dashboard=False) as bare:
            assert not dashboard.install(bare)
        return reply.body.decode()

    assert "No asip stage is running" in _summary(asyncio.run(go()))
