"""Datasets for tests, examples and benchmarks: the shared LIBSVM sets and synthetic problems.

Real data is read from the shared data directory -- ``$ASIP_DATA_DIR`` when set,
else ``../shared/data`` next to the repository root -- and is optional: every
loader raises `DataUnavailable` (a `FileNotFoundError`) naming the path it
looked in when a file is missing, so callers can skip. Synthetic generators
need nothing and use a fixed seed by default.

Labels of binary sets are mapped to {-1, +1} (the larger label becomes +1), as
every classification objective in `asip.algorithms` expects.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

__all__ = [
    "LIBSVM_SETS",
    "DataUnavailable",
    "Dataset",
    "data_dir",
    "load_libsvm",
    "make_logistic",
    "make_power_law_logistic",
    "make_regression",
    "make_sparse_logistic",
]

logger = logging.getLogger(__name__)

#: file name and task of each shared LIBSVM set (see the data directory's README.md)
LIBSVM_SETS: dict[str, tuple[str, str, int | None]] = {
    # name: (file, task, n_features to load with)
    "a9a": ("a9a.bz2", "classification", 123),
    "a9a.t": ("a9a.t.bz2", "classification", 123),
    "ijcnn1": ("ijcnn1.bz2", "classification", 22),
    "ijcnn1.t": ("ijcnn1.t.bz2", "classification", 22),
    "skin_nonskin": ("skin_nonskin.bz2", "classification", 3),
    "reuters": ("reuters.bz2", "classification", 8315),
    "reuters.t": ("reuters.t.bz2", "classification", 8315),
    "abalone": ("abalone_scale.bz2", "regression", 8),
}


class DataUnavailable(FileNotFoundError):
    """A shared dataset file is not present (tests skip on it)."""


class Dataset(NamedTuple):
    """A design matrix, targets, and where they came from."""

    X: np.ndarray | sp.csr_matrix
    y: np.ndarray
    name: str
    task: str  # "classification" (y in {-1, +1}) or "regression"


def data_dir() -> Path:
    """The shared data directory: ``$ASIP_DATA_DIR``, else ``<repo root>/../shared/data``."""
    env = os.environ.get("ASIP_DATA_DIR")
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parents[1]
    return repo_root.parent / "shared" / "data"


@functools.lru_cache(maxsize=8)
def _read(path: str, n_features: int | None):
    from sklearn.datasets import load_svmlight_file

    X, y = load_svmlight_file(path, n_features=n_features, dtype=np.float64)
    return X.tocsr(), y


def load_libsvm(name: str, n_samples: int | None = None, random_state: int = 0,
                dense: bool = False) -> Dataset:
    """Load a shared LIBSVM set, optionally a random row subsample.

    Parameters
    ----------
    name : str
        One of `LIBSVM_SETS` (``"a9a"``, ``"abalone"``, ``"reuters"``, ...).
    n_samples : int, optional
        Keep this many rows, drawn without replacement with ``random_state``
        (all rows when None or larger than the set).
    random_state : int
        Seed of the subsample.
    dense : bool
        Return a dense array instead of CSR.

    Raises
    ------
    ValueError
        For an unknown name (the valid ones are listed).
    DataUnavailable
        When the file is not in `data_dir`.
    """
    if name not in LIBSVM_SETS:
        raise ValueError(f"unknown dataset {name!r}; valid names are {sorted(LIBSVM_SETS)}")
    fname, task, n_features = LIBSVM_SETS[name]
    path = data_dir() / fname
    if not path.is_file():
        raise DataUnavailable(
            f"dataset {name!r} not found at {path}; set ASIP_DATA_DIR to the directory "
            f"holding {fname}"
        )
    X, y = _read(str(path), n_features)
    if n_samples is not None and n_samples < X.shape[0]:
        rows = np.sort(np.random.default_rng(random_state).choice(X.shape[0], n_samples,
                                                                  replace=False))
        X, y = X[rows], y[rows]
    else:
        X, y = X.copy(), y.copy()
    if task == "classification":
        labels = np.unique(y)
        if len(labels) != 2:
            raise ValueError(f"{name}: expected 2 labels, found {labels}")
        y = np.where(y == labels[1], 1.0, -1.0)
    X.sort_indices()
    return Dataset(X.toarray() if dense else X, np.asarray(y, dtype=np.float64), name, task)


def make_regression(n_samples: int = 10_000, n_features: int = 100, n_zero: int = 10,
                    noise: float = 2.0, random_state: int = 0) -> Dataset:
    """Dense least-squares data, the classic Dask async-ADMM demo (Rocklin & White 2017).

    ``X`` is standard Gaussian, the true coefficients are uniform on [0, 1] with
    ``n_zero`` of them (at most half) set to zero, and ``y = X beta + noise * N(0, 1)``.
    """
    rng = np.random.default_rng(random_state)
    X = rng.standard_normal((n_samples, n_features))
    beta = rng.uniform(0.0, 1.0, n_features)
    beta[rng.choice(n_features, min(n_zero, n_features // 2), replace=False)] = 0.0
    y = X @ beta + noise * rng.standard_normal(n_samples)
    return Dataset(X, y, f"synthetic-regression-{n_samples}x{n_features}", "regression")


def make_logistic(n_samples: int = 10_000, n_features: int = 100, n_zero: int = 10,
                  random_state: int = 0) -> Dataset:
    """Dense logistic-model data: Gaussian ``X``, labels drawn from ``sigmoid(X beta)``.

    ``beta`` is uniform on [-1, 1] scaled by ``2 / sqrt(n_features)`` (margins of
    order 2, so classes overlap and the problem is not separable), with
    ``n_zero`` entries (at most half) set to zero; labels are in {-1, +1}.
    """
    rng = np.random.default_rng(random_state)
    X = rng.standard_normal((n_samples, n_features))
    beta = rng.uniform(-1.0, 1.0, n_features) * (2.0 / np.sqrt(n_features))
    beta[rng.choice(n_features, min(n_zero, n_features // 2), replace=False)] = 0.0
    p = 1.0 / (1.0 + np.exp(-(X @ beta)))
    y = np.where(rng.uniform(size=n_samples) < p, 1.0, -1.0)
    return Dataset(X, y, f"synthetic-logistic-{n_samples}x{n_features}", "classification")


def make_sparse_logistic(n_samples: int = 100_000, n_features: int = 1_000_000,
                         nnz_per_row: int = 30, active: int | None = None,
                         random_state: int = 0) -> Dataset:
    """Sparse (CSR) logistic-model data: ``nnz_per_row`` Gaussian entries a row, wide.

    Each row's columns are drawn uniformly from the first ``active`` columns (all by
    default; fewer leaves the rest empty, so ``d`` can grow at a fixed number of
    nonzeros), its values are ``N(0, 1/nnz_per_row)`` (so ``||a_i||^2 ~ 1``), and
    labels in {-1, +1} are drawn from ``sigmoid(X beta)`` with ``beta ~ N(0, 4)``
    on the active columns (margins of order 2: classes overlap). Memory is
    ``12 * n_samples * nnz_per_row`` bytes plus the labels, whatever ``n_features``.
    """
    active = n_features if active is None else int(active)
    if not 0 < active <= n_features:
        raise ValueError(f"active must be in [1, n_features={n_features}], got {active}")
    if not 0 < nnz_per_row <= active:
        raise ValueError(f"nnz_per_row must be in [1, active={active}], got {nnz_per_row}")
    rng = np.random.default_rng(random_state)
    cols = rng.integers(0, active, size=(n_samples, nnz_per_row), dtype=np.int64)
    cols.sort(axis=1)
    vals = rng.standard_normal((n_samples, nnz_per_row)) / np.sqrt(nnz_per_row)
    indptr = np.arange(0, n_samples * nnz_per_row + 1, nnz_per_row, dtype=np.int64)
    X = sp.csr_matrix((vals.ravel(), cols.ravel().astype(np.int32), indptr),
                      shape=(n_samples, n_features))
    X.sum_duplicates()  # a column drawn twice in a row becomes one entry
    beta = 2.0 * rng.standard_normal(active)
    margin = X @ np.concatenate([beta, np.zeros(n_features - active)])  # no column slice copy
    prob = 1.0 / (1.0 + np.exp(-margin))
    y = np.where(rng.uniform(size=n_samples) < prob, 1.0, -1.0)
    return Dataset(X, y, f"synthetic-sparse-logistic-{n_samples}x{n_features}x{nnz_per_row}",
                   "classification")


def make_power_law_logistic(n_samples: int = 20_000, n_features: int = 300,
                            nnz_per_row: int = 8, power: float = 1.5, sort_by_label: bool = False,
                            random_state: int = 0) -> Dataset:
    """Sparse (CSR) binary rows whose columns follow a power law, labels from a logistic model.

    Each row has ``nnz_per_row`` draws of a column with probability ``~ 1/k^power`` (a
    column drawn twice in a row is one entry of 1), so the last columns appear in a handful
    of rows: with many partitions some lack features their peers have (the blind spot of
    a local solver's curvature). Labels in {-1, +1} from ``sigmoid(X beta - mean)``,
    ``beta ~ N(0, 1)``; ``sort_by_label`` orders the rows by label (partitions that differ).
    """
    rng = np.random.default_rng(random_state)
    prob = 1.0 / np.arange(1, n_features + 1) ** power
    cols = np.sort(rng.choice(n_features, size=(n_samples, nnz_per_row), p=prob / prob.sum()),
                   axis=1)
    X = sp.csr_matrix((np.ones(n_samples * nnz_per_row), cols.ravel(),
                       np.arange(0, n_samples * nnz_per_row + 1, nnz_per_row)),
                      shape=(n_samples, n_features))
    X.sum_duplicates()
    X.data[:] = 1.0
    m = X @ rng.standard_normal(n_features)
    y = np.where(rng.uniform(size=n_samples) < 1.0 / (1.0 + np.exp(-(m - m.mean()))), 1.0, -1.0)
    if sort_by_label:
        order = np.argsort(y, kind="stable")
        X, y = X[order], y[order]
    return Dataset(X, y, f"synthetic-power-law-logistic-{n_samples}x{n_features}x{nnz_per_row}",
                   "classification")
