"""Fit a logistic regression asynchronously with ASIP-SGD and ASIP-ADMM, against the optimum.

Uses the shared a9a data set when it is there (``$ASIP_DATA_DIR`` or ``../shared/data``),
else synthetic data. Each solver gets the same 3-second budget on an embedded
LocalCluster; accuracy is the relative suboptimality ``(f(w) - f*) / |f*|`` against a
certified scipy/scikit-learn optimum.

Run:  python examples/fit_classifier.py
"""

from __future__ import annotations

import numpy as np

import asip
from asip.algorithms import (AsipClassifier, DataUnavailable, Objective, get_loss, get_penalty,
                             load_libsvm, make_logistic, reference_optimum,
                             relative_suboptimality)


def main() -> None:
    try:
        data = load_libsvm("a9a")
    except DataUnavailable:
        data = make_logistic(n_samples=50_000, n_features=100)
    X, y = data.X, data.y
    alpha = 1e-3
    objective = Objective(get_loss("log_loss"), get_penalty("l2", alpha), False)
    f_star = reference_optimum(objective, X, y).f_star
    print(f"{data.name}: {X.shape[0]} rows x {X.shape[1]} features, log_loss + l2 "
          f"(alpha={alpha}), f* = {f_star:.6f}")
    with asip.connect() as client:
        print(f"cluster: {len(client.nthreads())} worker processes")
        for solver in ("asip-sgd", "asip-admm", "gd"):
            model = AsipClassifier(loss="log_loss", penalty="l2", alpha=alpha, solver=solver,
                                   max_time=3.0, random_state=0, fit_intercept=False).fit(X, y)
            w = model.coef_.ravel()
            gap = relative_suboptimality(objective.value(w, X, y), f_star)
            print(f"{solver:>10}: relative suboptimality {gap:.2e}, training accuracy "
                  f"{model.score(X, y):.3f}, {len(model.trace_)} trace points, "
                  f"stopped by {model.stopped_by_}")
    print("coefficients (first 5):", np.round(w[:5], 4))


if __name__ == "__main__":
    main()
