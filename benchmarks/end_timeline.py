"""The end of a certified fit, hop by hop: the leader's STOP -> the peers' stop -> each
operator's last step and result() -> its result event at the driver -> the finish -> return.

Wraps (monkeypatching, this process and the workers by ``client.run``) the solver operator's
step/result, the worker plugin's stop and result hooks, the directory's stop and result
handlers, the scheduler's and the client's "task in memory", and the driver's event, collect
and teardown; every mark is ``time.time()`` (one host: one clock), printed in ms from the
leader's STOP step end. Medians over ``--repeats``. ``--ab`` alternates two result paths in
one run (reuters: summaries of 200-270 kB, over the 64 KiB result-event limit: gathered).
Full (generation 2) garbage collections of this process, which hosts the LocalCluster's
scheduler, are printed with the fit they fall in.

Run:  python benchmarks/end_timeline.py [--data reuters] [--solver asip-cocoa] [--repeats 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

LOG: list = []


def _mark(kind, index=None, t=None):
    LOG.append((kind, index, time.time() if t is None else t))


def _wrap(cls, name, before=None, after=None):
    orig = getattr(cls, name)
    if getattr(orig, "_end_wrapped", False):
        return

    def wrapped(self, *a, **k):
        if before:
            before(self, a, k)
        out = orig(self, *a, **k)
        if after:
            after(self, a, k, out)
        return out

    wrapped._end_wrapped = True
    setattr(cls, name, wrapped)


def _install_worker(dask_worker=None):
    import time as _t

    import asip
    from asip import _worker_plugin as WP
    from asip.algorithms import _operator as O

    log = getattr(WP, "_END_LOG", None)
    if log is None:
        log = WP._END_LOG = []
    log.clear()
    m = lambda kind, i=None: log.append((kind, i, _t.time()))  # noqa: E731

    def step_after(self, a, k, out):
        if out is asip.STOP:
            m("stop_step_end", a[0].index)
        elif a[0].stopping:
            m("step_end_stopping", a[0].index)
    _wrap(O.SolverOperator, "step", after=step_after)
    _wrap(O.SolverOperator, "result", before=lambda s, a, k: m("result_start", a[0].index),
          after=lambda s, a, k, o: m("result_end", a[0].index))
    _wrap(WP.ChannelPlugin, "_set_stopped", before=lambda s, a, k: m("peer_stop_heard"))
    _wrap(WP.ChannelPlugin, "unregister", before=lambda s, a, k: m("unregister", a[0]))
    _wrap(WP.ChannelPlugin, "send_result", before=lambda s, a, k: m("send_result", a[0]))


def _fetch_worker(dask_worker=None):
    from asip import _worker_plugin as WP

    out = list(getattr(WP, "_END_LOG", []))
    WP._END_LOG.clear()
    return out


def _install_scheduler(dask_scheduler=None):
    import time as _t

    from asip import _directory as D

    log = getattr(D, "_END_LOG", None)
    if log is None:
        log = D._END_LOG = []
    log.clear()
    _wrap(D.DirectoryPlugin, "_h_stop", before=lambda s, a, k: log.append(("dir_stop", None, _t.time())))
    _wrap(D.DirectoryPlugin, "_h_result",
          before=lambda s, a, k: log.append(("dir_result", k.get("index"), _t.time())))
    from distributed.diagnostics.plugin import SchedulerPlugin

    class _Transitions(SchedulerPlugin):
        name = "end-timeline"

        def transition(self, key, start, finish, *a, **k):
            if finish == "memory" and str(key).startswith("asip-") and "-op" in str(key):
                log.append(("sched_task_memory", int(str(key).split("-op")[1].split("-")[0]),
                            _t.time()))

    if "end-timeline" not in dask_scheduler.plugins:
        dask_scheduler.add_plugin(_Transitions())
    _wrap(D.DirectoryPlugin, "_h_finish", before=lambda s, a, k: log.append(("dir_finish", None, _t.time())))


def _fetch_scheduler(dask_scheduler=None):
    from asip import _directory as D

    out = list(getattr(D, "_END_LOG", []))
    D._END_LOG.clear()
    return out


def _install_driver():
    from asip import _stage as S

    def on_event(self, a, k):
        ev = a[0][1]
        if ev[0] == "result":
            _mark("drv_result_event", ev[1])
    _wrap(S._Run, "_on_event", before=on_event)
    _wrap(S._Run, "_collect_finished", before=lambda s, a, k: _mark("drv_check") if any(
        f.status == "finished" for f in s.futures.values()) else None)
    _wrap(S._Run, "_stop", before=lambda s, a, k: _mark("drv_stop"))
    _wrap(S._Run, "_collect", before=lambda s, a, k: _mark("drv_collect", a[0]))
    _wrap(S._Run, "_teardown", before=lambda s, a, k: _mark("drv_teardown_start"),
          after=lambda s, a, k, o: _mark("drv_teardown_end"))
    _wrap(S.Stage, "run", after=lambda s, a, k, o: _mark("stage_return"))


def _set_event_bytes(n, dask_worker=None):
    from asip import _worker_plugin as WP

    WP.RESULT_EVENT_BYTES = n


def _direct_gather(client, direct):
    orig = type(client).gather

    def gather(futures, *a, **k):
        if direct:
            k.setdefault("direct", True)
        return orig(client, futures, *a, **k)
    return gather


ORDER = ["stop_step_end", "dir_stop", "drv_stop", "peer_stop_heard", "step_end_stopping",
         "result_start", "result_end", "unregister", "send_result", "dir_result",
         "drv_result_event", "drv_collect", "drv_teardown_start", "dir_finish",
         "drv_teardown_end", "stage_return", "fit_return"]


GC_PAUSES: list = []  # (start, seconds) of this process's full (generation 2) collections


def _gc_callback(phase, info, _started=[0.0]):
    if info.get("generation") != 2:
        return
    if phase == "start":
        _started[0] = time.time()
    else:
        GC_PAUSES.append((_started[0], time.time() - _started[0]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="reuters")
    ap.add_argument("--solver", default="asip-cocoa")
    ap.add_argument("--task", default="log_loss-l2")
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--ab", choices=["event", "direct"], help="alternate fits: as is (A) and "
                    "B: results up to 8 MiB as events (event) or gathered from the workers "
                    "directly (direct)")
    args = ap.parse_args(argv)

    from distributed import Client, LocalCluster

    from asip.algorithms import AsipClassifier
    from asip_bench.data import ClusterData, load_dataset, parse_task
    from fit_timeline import warm_up_solvers

    task = parse_task(args.task)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    rows = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as lc, Client(lc) as client:
        client.wait_for_workers(2)
        warm_up_solvers([f"{args.data}:{args.solver}"])
        data = load_dataset(args.data)
        cdata = ClusterData(client, data, 2)
        X, y = cdata.asip_input()
        client.run(_install_worker)
        client.run_on_scheduler(_install_scheduler)
        _install_driver()
        handlers = client._stream_handlers
        in_memory = handlers["key-in-memory"]

        def key_in_memory(key=None, **k):
            if str(key).startswith("asip-") and "-op" in str(key):
                _mark("client_key_in_memory", int(str(key).split("-op")[1].split("-")[0]))
            return in_memory(key=key, **k)
        handlers["key-in-memory"] = key_in_memory
        import gc

        gc.callbacks.append(_gc_callback)  # the scheduler runs in this process (LocalCluster)
        for rep in range(args.repeats + 1):
            GC_PAUSES.clear()
            client.run(_fetch_worker)
            client.run_on_scheduler(_fetch_scheduler)
            LOG.clear()
            arm = "B" if args.ab and rep % 2 else "A"
            if args.ab == "event":
                client.run(_set_event_bytes, (8 << 20) if arm == "B" else (64 << 10))
            elif args.ab == "direct":
                client.gather = _direct_gather(client, arm == "B")
            est = AsipClassifier(solver=args.solver, loss=task.loss, penalty=task.penalty,
                                 alpha=task.alpha_for(data.n), fit_intercept=False,
                                 n_partitions=2, max_time=10.0)
            t0 = time.time()
            est.fit(X, y)
            _mark("fit_return")
            time.sleep(0.05)  # the background removal of the stage's plugins ends
            marks = [e for w in client.run(_fetch_worker).values() for e in w]
            marks += client.run_on_scheduler(_fetch_scheduler) + LOG
            stops = [e for e in marks if e[0] == "stop_step_end"]
            if not stops:
                print(f"#{rep}: no STOP step ({est.stopped_by_})")
                continue
            leader = stops[0][1]
            origin = min(e[2] for e in stops)
            rel = {}
            for kind, i, t in marks:  # the first of each, but the peer's last step
                tag = kind if i is None else f"{kind}[{'L' if i == leader else 'P'}]"
                if tag not in rel or kind.startswith("step_end"):
                    rel[tag] = 1e3 * (t - origin)
            rel["fit_total"] = 1e3 * (time.time() - t0) - 50.0  # less the sleep above
            last = max(v for k, v in rel.items() if k.startswith("send_result"))
            rel["z_return_after_last_op_return"] = rel["fit_return"] - last
            rel["arm"] = arm
            for at, secs in GC_PAUSES:
                print(f"   full gc in the driver/scheduler process at {1e3 * (at - t0):.1f} ms "
                      f"from the fit's call, {1e3 * secs:.1f} ms long")
            print(f"#{rep} {arm} fit {1e3 * sum(est.fit_timings_.values()):.1f} ms, "
                  f"{ {k: round(1e3 * v, 1) for k, v in est.fit_timings_.items()} } "
                  f"stopped_by {est.stopped_by_}", flush=True)
            print("   " + "  ".join(f"{k} {v:.1f}" for k, v in
                                    sorted(rel.items(), key=lambda kv: kv[1] if kv[0] != "arm" else 0)
                                    if k not in ("fit_total", "arm")),
                  flush=True)
            if rep:
                rows.append(rel)
        cdata.close()
    print(f"load average at end: {os.getloadavg()}")
    for arm in sorted({r["arm"] for r in rows}):
        sub = [r for r in rows if r["arm"] == arm]
        keys = sorted({k for r in sub for k in r if k != "arm"},
                      key=lambda k: statistics.median([r[k] for r in sub if k in r]))
        print(f"\narm {arm}: median ms after the leader's STOP step ended (min..max):")
        for k in keys:
            vals = [r[k] for r in sub if k in r]
            print(f"  {k:26s} {statistics.median(vals):7.1f}  ({min(vals):.1f}..{max(vals):.1f})"
                  f"  n={len(vals)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
