"""The nogil CSR products (`_kernels.NOGIL_SPARSE`) against scipy's, on worker processes and threads, in one run.

Two embedded clusters of ``--workers`` (2) one-thread workers live at once (worker
processes and threads of this process, `inproc.two_clusters`). Four arms, each a fit as a
user times it: ``processes-old`` / ``threads-old`` with ``asip.algorithms._kernels.NOGIL_SPARSE
= 0`` (asip-cocoa's Newton products and the certificate answers' sums by scipy and numpy,
which hold the GIL) and ``processes`` / ``threads`` with the knob at 1 (the nogil kernels).
The knob is set on every worker (``client.run``) before each fit and read when an operator
builds its solver, so each cluster serves both of its arms. Per case: one warm-up fit on
each arm, then ``--pairs`` rounds of the four arms, the order rotated every round; time to
1e-6 relative suboptimality from the fit's trace (``fit(tol=1e-6, max_time=--budget)``; inf
when not reached), on ``--datasets`` (LIBSVM sets under ``ASIP_DATA_DIR``) x log_loss-l2
(alpha 1e-4) and hinge-l2 (alpha 0.1), no intercept. Prints each round, the medians, the
medians of the paired ratios ``old / new`` on each cluster kind (above 1: the kernels are
sooner) and ``processes / threads`` (above 1: threads are sooner), and the load average.

``--round-cpu``: the mean thread CPU of asip-cocoa's Newton rounds instead (`round_cpu`).

Run:  python benchmarks/nogil_ab.py --datasets reuters --solvers asip-cocoa --pairs 8
      python benchmarks/nogil_ab.py --round-cpu --pairs 10
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from handover_ab import _medians, _ratio, rotated, run
from inproc import _load

ARMS = ("processes-old", "processes", "threads-old", "threads")


def _set_knob(value: float) -> None:
    """Set `_kernels.NOGIL_SPARSE` in this process (run on every worker by ``client.run``)."""
    from asip.algorithms import _kernels

    _kernels.NOGIL_SPARSE = value


def case(label: str, clients: dict, pairs: int, measure) -> None:
    """``measure(client) -> seconds`` on the four arms, rotated each round; prints rounds,
    medians and paired ratios."""
    def on(arm: str) -> float:
        client = clients[arm.split("-")[0]]
        client.run(_set_knob, 0.0 if arm.endswith("-old") else 1.0)
        return measure(client)

    times = rotated(label, ARMS, pairs, on)
    print(f"{label}: median {_medians(times)}; paired old/new processes "
          f"{_ratio(times['processes-old'], times['processes'])}, threads "
          f"{_ratio(times['threads-old'], times['threads'])}; processes/threads old "
          f"{_ratio(times['processes-old'], times['threads-old'])}, new "
          f"{_ratio(times['processes'], times['threads'])}; load {_load()}", flush=True)


def round_cpu(est) -> float:
    """round CPU: asip-cocoa's Newton rounds' mean thread CPU (s) over its operators (their
    snapshots' ``round_cpu_s``), the fit's own compute with no waits or starvation in it."""
    snaps = [s for s in est._warm.snapshots if s is not None and s.get("rounds")]
    rounds = sum(s["rounds"] for s in snaps)
    return sum(s["round_cpu_s"] * s["rounds"] for s in snaps) / rounds if rounds else math.nan


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--round-cpu", action="store_true", help="measure `round_cpu`, not the "
                    "time to 1e-6")
    known, rest = ap.parse_known_args(argv)
    run(rest, case, __doc__, metric=round_cpu if known.round_cpu else None,
        datasets=["reuters"], tasks=["log_loss-l2"])


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
