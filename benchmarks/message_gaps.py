"""Where an operator goes quiet: the longest gaps between pushes, arrivals and polls.

Fault-free asip-cocoa fits (the local Newton) on the kill benchmark's dense problem
(500k x 100 logistic, alpha 1e-6, 2 workers; ``--rows`` to change it), a warm-up fit
and ``--fits`` more. Per fit: time to 1e-6 (from the trace), and per worker the longest
gap, from the gang's start to 1e-6, between two pushes of its operator (``submit``),
two messages reaching its mailbox (``put``) and two polls that returned messages, with
the event loop's stalls over 20 ms and each certificate pass (``certificate_parts``:
start, seconds, whether the partition's ``X`` was aligned). Then the medians.

A gap in arrivals that matches the peer's gap in pushes is the peer's operator busy (not
the channel); a gap in polls with arrivals inside it is the own operator busy (the
messages wait in its mailbox); a loop stall is the channel's.

Measured 2026-11-30 22:31-22:34 UTC (load 3.2-7.0), main 02c76e1 against the aligned
scatter (`asip._aligned`), 3 runs x 5-6 fits each, alternating: to 1e-6 main median 0.87 s
(0.27-1.90, p90 1.26), aligned 0.59 s (0.42-0.92, p90 0.82); longest poll gap per
operator main median 0.33 s, p90 0.82, max 1.15; aligned 0.22, 0.40, 0.55; longest
certificate pass per fit main median 0.24 s, max 1.12 (``X`` unaligned in every fit),
aligned 0.08 s, max 0.25.

Run:  python benchmarks/message_gaps.py [--fits 6] [--rows 500000] [--json out.json]

Instrumentation: the workers' `Mailbox.put`/`poll`, `DataPlane.submit`, the ``go``
control message and asip-cocoa's ``certificate_parts`` are wrapped by ``client.run``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np


def _install(dask_worker=None):
    """Wrap the channel's and the certificate's entry points on this worker; a loop probe."""
    import asyncio

    import asip._channel as ch
    import asip._dataplane as dp
    import asip._worker_plugin as wp
    import asip.algorithms._cocoa as co

    ch._gaps = {"put": [], "poll": [], "submit": [], "go": [], "lag": [], "cert": []}
    if not getattr(ch.Mailbox, "_gaps_wrapped", False):
        ch.Mailbox._gaps_wrapped = True
        put, poll, submit = ch.Mailbox.put, ch.Mailbox.poll, dp.DataPlane.submit
        control, cert = wp.ChannelPlugin._handle_control, co.certificate_parts

        def put_(self, message, nbytes, now=None, notify=True):
            ch._gaps["put"].append(time.time())
            return put(self, message, nbytes, now, notify)

        def poll_(self, timeout=0.0):
            out = poll(self, timeout)
            if out:
                ch._gaps["poll"].append(time.time())
            return out

        def submit_(self, ep, encoded, targets):
            ch._gaps["submit"].append(time.time())
            return submit(self, ep, encoded, targets)

        def control_(self, kind, *args, **kwargs):
            if kind == "go":
                ch._gaps["go"].append(time.time())
            return control(self, kind, *args, **kwargs)

        def cert_(X, *args, **kwargs):
            t = time.time()
            out = cert(X, *args, **kwargs)
            if getattr(X, "shape", (0,))[0] > 1000:  # not the warm-up's few rows
                ch._gaps["cert"].append((t, time.time() - t, bool(X.flags.aligned)))
            return out

        ch.Mailbox.put, ch.Mailbox.poll, dp.DataPlane.submit = put_, poll_, submit_
        wp.ChannelPlugin._handle_control, co.certificate_parts = control_, cert_

    async def lag():
        last = time.time()
        while True:
            await asyncio.sleep(0.002)
            now = time.time()
            if now - last > 0.02:
                ch._gaps["lag"].append((last, now - last))
            last = now

    dask_worker._gaps_lag = asyncio.ensure_future(lag())
    return os.getpid()


def _take(dask_worker=None):
    import asip._channel as ch

    out = {k: list(v) for k, v in ch._gaps.items()}
    for v in ch._gaps.values():
        v.clear()
    return out


def _longest_gap(times, start, end) -> tuple[float, float]:
    """The longest gap (s) between ``start``, the ``times`` in between, and ``end``; where
    it began (s after ``start``)."""
    ts = [start] + sorted(t for t in times if start <= t <= end) + [end]
    d = np.diff(ts)
    i = int(np.argmax(d))
    return float(d[i]), ts[i] - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fits", type=int, default=6)
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--json", help="write every fit's records here")
    args = ap.parse_args()
    import asip
    from asip.algorithms import (AsipClassifier, Objective, get_loss, get_penalty,
                                 make_logistic, reference_optimum, relative_suboptimality)

    client = asip.connect(n_workers=2)
    client.run(_install)
    ds = make_logistic(args.rows, 100, random_state=1)
    alpha = 1e-6
    obj = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
    ref = reference_optimum(obj, ds.X, ds.y)
    print(f"{args.rows} x 100, asip from {asip.__file__}; load {os.getloadavg()}", flush=True)
    t6s, polls, certs, records = [], [], [], []
    for k in range(args.fits + 1):
        est = AsipClassifier(alpha=alpha, fit_intercept=False, tol=1e-7, max_time=20,
                             random_state=0, solver="asip-cocoa", callback=lambda s, w: None)
        est.fit(ds.X, ds.y)
        t6 = next((t for t, f in est.trace_ if math.isfinite(f)
                   and relative_suboptimality(f, ref.f_star) <= 1e-6), math.inf)
        recs = client.run(_take)
        print(f"fit {k}{' (warm-up)' if k == 0 else ''}: to 1e-6 {t6:.3f} s; load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        longest_cert = 0.0
        for addr, r in recs.items():
            if not r["go"]:
                continue
            go = r["go"][-1]
            end = go + (t6 if math.isfinite(t6) else 3.0)
            g = {name: _longest_gap(r[name], go, end) for name in ("submit", "put", "poll")}
            lags = sorted(((d, a - go) for a, d in r["lag"] if go <= a <= end), reverse=True)
            cert = [(round(t - go, 3), round(d, 3), al) for t, d, al in r["cert"]
                    if go - 1 <= t <= end]
            longest_cert = max([longest_cert] + [d for _, d, _ in cert])
            print(f"  {addr}: longest gap (s, at s) "
                  + "; ".join(f"{n} {d:.3f} at {a:.3f}" for n, (d, a) in g.items())
                  + "; loop stalls " + (", ".join(f"{d:.3f} at {a:.3f}" for d, a in lags[:3])
                                        or "none")
                  + f"; certificate passes (at, s, aligned) {cert}", flush=True)
            if k:
                polls.append(g["poll"][0])
        if k:
            t6s.append(t6)
            certs.append(longest_cert)
        records.append({"t6": t6, "workers": recs})
    print(f"to 1e-6 (s): {[round(float(t), 3) for t in t6s]}, median {np.median(t6s):.3f}; longest "
          f"poll gap per operator: median {np.median(polls):.3f}, max {max(polls):.3f} s; "
          f"longest certificate pass per fit (s): {[round(c, 3) for c in certs]}; "
          f"load {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f)


if __name__ == "__main__":
    main()
