"""Convergence plot from ``trace_``: relative suboptimality over time, one line per solver.

Every fitted asip estimator keeps ``trace_``: (seconds since the fit started,
objective) pairs, dense early. Against the certified optimum f* of the same problem
(`asip.algorithms.reference_optimum`) they become the usual convergence curves.
Saves a PNG (matplotlib, no display needed).

Run:  python examples/convergence_plot.py [--out convergence.png] [--max-time 2]
      [--solvers asip-sgd,asip-admm,gd]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")  # files only; no display
import matplotlib.pyplot as plt  # noqa: E402

import asip  # noqa: E402
from asip.algorithms import (AsipClassifier, Objective, get_loss, get_penalty,  # noqa: E402
                             make_logistic, reference_optimum, relative_suboptimality)

SOLVERS = ("asip-sgd", "asip-admm", "gd")


def main(out: str = "convergence.png", max_time: float = 2.0, solvers=SOLVERS) -> None:
    data = make_logistic(n_samples=20_000, n_features=50)
    alpha = 1e-3
    objective = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
    f_star = reference_optimum(objective, data.X, data.y).f_star
    fig, ax = plt.subplots(figsize=(7, 4.5))
    with asip.connect(n_workers=2) as client:
        for solver in solvers:
            model = AsipClassifier(alpha=alpha, solver=solver, max_time=max_time,
                                   fit_intercept=False, random_state=0).fit(data.X, data.y)
            t, f = model.trace_[:, 0], model.trace_[:, 1]
            gap = relative_suboptimality(f, f_star).clip(min=1e-12)
            ax.semilogy(t, gap, marker=".", label=f"{solver} ({model.stopped_by_})")
            print(f"{solver:>10}: {len(t)} trace points, final relative suboptimality "
                  f"{gap[-1]:.2e}")
        workers = len(client.nthreads())
    ax.set_xlabel("seconds since fit() started")
    ax.set_ylabel("(f(w) - f*) / |f*|")
    ax.set_title(f"{data.name}: log_loss + l2 (alpha={alpha}), {workers} workers")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"saved {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="convergence.png", help="PNG file to write")
    parser.add_argument("--max-time", type=float, default=2.0, help="seconds per solver")
    parser.add_argument("--solvers", default=",".join(SOLVERS), help="comma-separated")
    args = parser.parse_args()
    main(args.out, args.max_time, args.solvers.split(","))
