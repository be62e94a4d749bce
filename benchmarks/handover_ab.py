"""In-process workers with and without the same-process hand-over, and worker processes, in one run.

Two embedded clusters of ``--workers`` (2) one-thread workers live at once: worker
processes and threads of this process. Three arms, each a fit as a user times it:
``processes``; ``threads-loop``, in-process workers with every push through the event
loop (``asip.channel.in-process-handover: false``, as before the hand-over); and
``threads``, in-process workers whose pushes to workers of this process are put into the
receivers' mailboxes by the pushing thread (`asip._handover`). The knob is read when a
stage starts, so both thread arms share one cluster. Per case: one warm-up fit on each
arm, then ``--pairs`` rounds of the three arms, the order rotated every round; time to
1e-6 relative suboptimality (asip-sgd: 1e-3) from the fit's trace
(``fit(tol=target, max_time=--budget)``; inf when not reached), on ``--datasets``
(LIBSVM sets under ``ASIP_DATA_DIR``) x log_loss-l2 (alpha 1e-4) and hinge-l2 (alpha 0.1),
no intercept. Prints each round, the medians, the medians of the paired ratios
``threads-loop / threads`` (above 1: the hand-over is sooner) and ``processes /
threads`` (above 1: threads are sooner), and the load average beside them.

Run:  python benchmarks/handover_ab.py --datasets a9a ijcnn1 --solvers asip-cocoa --pairs 6
"""

from __future__ import annotations

import argparse
import math
import statistics

import dask
import numpy as np

from inproc import TASKS, _load, async_cases, two_clusters

ARMS = ("processes", "threads-loop", "threads")


def _ratio(a: list, b: list) -> str:
    ratios = [x / y for x, y in zip(a, b) if y > 0 and math.isfinite(x) and math.isfinite(y)]
    if not ratios:
        return "n/a"
    return (f"{statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}, "
            f"n={len(ratios)})")


def rotated(label: str, arms: tuple, pairs: int, on) -> dict:
    """One warm-up ``on(arm)`` each (imports and compiled kernels, not timed), then ``pairs``
    rounds of ``on(arm) -> seconds`` on every arm, the order rotated each round; prints each
    round. Returns each arm's seconds."""
    for arm in arms:
        on(arm)
    times: dict[str, list] = {arm: [] for arm in arms}
    for k in range(pairs):
        for arm in arms[k % len(arms):] + arms[:k % len(arms)]:
            times[arm].append(on(arm))
        print(f"  {label} round {k}: " + ", ".join(f"{a} {times[a][-1]:.4f} s" for a in arms)
              + f"; load {_load()}", flush=True)
    return times


def _medians(times: dict) -> str:
    return ", ".join(f"{a} {statistics.median(t):.4f} s" for a, t in times.items())


def case(label: str, clients: dict, pairs: int, measure) -> None:
    """``measure(client) -> seconds`` on the three arms, rotated each round; prints rounds
    and medians."""
    def on(arm: str) -> float:
        client = clients["processes" if arm == "processes" else "threads"]
        with dask.config.set({"asip.channel.in-process-handover": arm != "threads-loop"}):
            return measure(client)

    times = rotated(label, ARMS, pairs, on)
    print(f"{label}: median {_medians(times)}; paired threads-loop/threads "
          f"{_ratio(times['threads-loop'], times['threads'])}; processes/threads "
          f"{_ratio(times['processes'], times['threads'])}; load {_load()}", flush=True)


def run(argv, case_fn, doc: str, metric=None, **defaults) -> None:
    """The options these A/B scripts share (``defaults`` override their defaults), then
    ``case_fn(label, clients, pairs, measure)`` on every async case, both clusters up
    (``metric``: see `inproc.async_cases`)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2, help="one-thread workers a cluster")
    ap.add_argument("--datasets", nargs="+", default=["a9a", "ijcnn1"])
    ap.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    ap.add_argument("--solvers", nargs="+", default=["asip-cocoa"])
    ap.add_argument("--budget", type=float, default=10.0, help="max_time of a fit")
    ap.set_defaults(**defaults)
    args = ap.parse_args(argv)
    print(f"# {ap.prog}; load {_load()}", flush=True)
    with two_clusters(args.workers) as clients:
        for label, measure in async_cases(args.datasets, args.tasks, args.solvers, args.budget,
                                          metric):
            try:
                case_fn(label, clients, args.pairs, measure)
            except ValueError as exc:  # e.g. asip-svrg on hinge: not this solver's task
                print(f"{label}: not run ({exc})", flush=True)
    print(f"load at the end: {_load()}")


def main(argv=None) -> None:
    run(argv, case, __doc__)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
