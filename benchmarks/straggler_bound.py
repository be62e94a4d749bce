"""What a solver can reach before the straggler's first step: the straggler target's floor.

Under the paper's straggler, partition 0 sleeps 2 s before its first gradient step, so until
then no solver has touched partition 0's rows. This prints, per dataset, task and number of
partitions (split as `asip bench` splits: contiguous rows), the relative suboptimality on the
whole objective of the optimum of the other partitions' rows (same alpha): what an
asynchronous solver that converged on the rows it can see would hold at 2 s. Where that is
above 1e-3, no solver reaches 1e-3 before the straggler wakes, so "3x sooner to 1e-3 than a
synchronous solver that waits for it" is out of reach for that split.

Run: ``python benchmarks/straggler_bound.py [--datasets a9a,ijcnn1,synthetic-logistic:20000]
[--tasks log_loss-l2-1/n,log_loss-l2@1e-4] [--partitions 2,4,8,16]``
(ASIP_DATA_DIR points at the LIBSVM files; missing sets are skipped).
"""

from __future__ import annotations

import argparse

import numpy as np

from asip.algorithms._reference import reference_optimum
from asip_bench.data import DataUnavailable, load_dataset, parse_task


def floor_without_partition0(X, y, task, n_partitions: int, f_star: float) -> float:
    """Relative suboptimality on all rows of the optimum fitted without partition 0's rows."""
    n = X.shape[0]
    objective = task.objective(n)  # alpha from the whole problem, as the benchmark sets it
    cut = np.linspace(0, n, n_partitions + 1).astype(int)[1]
    w_rest = reference_optimum(objective, X[cut:], y[cut:], cache=False).w
    return (objective.value(w_rest, X, y) - f_star) / abs(f_star)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="a9a,ijcnn1,synthetic-logistic:20000")
    p.add_argument("--tasks", default="log_loss-l2-1/n,log_loss-l2@1e-4")
    p.add_argument("--partitions", default="2,4,8,16")
    args = p.parse_args(argv)
    parts = [int(k) for k in args.partitions.split(",")]
    print(f"{'dataset / task':44s}" + "".join(f"{f'N={k}':>10s}" for k in parts))
    for spec in args.datasets.split(","):
        try:
            data = load_dataset(spec)
        except DataUnavailable as exc:
            print(f"{spec}: skipped ({exc})")
            continue
        for task in map(parse_task, args.tasks.split(",")):
            objective = task.objective(data.n)
            f_star = reference_optimum(objective, data.X, data.y).f_star
            row = [floor_without_partition0(data.X, data.y, task, k, f_star) for k in parts]
            print(f"{spec + ' / ' + task.key:44s}" + "".join(f"{v:10.1e}" for v in row))


if __name__ == "__main__":
    main()
