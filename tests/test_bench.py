"""``asip bench``: peers solve asip's very problem, trace readings, the quick profile end to end."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from asip.algorithms import make_logistic, make_regression
from asip.bench import config, peers_sklearn
from asip.bench.data import BenchData, compute_reference, parse_task
from asip.bench.records import Run


def _rel(task, data, coef, ref):
    f = task.objective(data.n).value(np.asarray(coef, dtype=np.float64).ravel(), data.X, data.y)
    return (f - ref["f_star"]) / abs(ref["f_star"])


@pytest.fixture(scope="module")
def small_logistic():
    ds = make_logistic(400, 8, random_state=3)
    return BenchData("small-logistic", ds.X, ds.y, False)


@pytest.mark.parametrize("task_key", ["log_loss-l2", "log_loss-l1", "log_loss-l2-1/n",
                                      "hinge-l2"])
def test_sklearn_peers_minimize_asips_objective(small_logistic, task_key):
    """C = 1/(n alpha) etc.: every exact scikit-learn candidate lands on asip's f*."""
    task = parse_task(task_key)
    ref = compute_reference(small_logistic, task)
    for name in peers_sklearn.candidates_for(task):
        if name == "SGDClassifier":
            continue  # stochastic: not exact
        est = peers_sklearn._make(name, task, small_logistic.n, 5000).fit(small_logistic.X,
                                                                         small_logistic.y)
        assert _rel(task, small_logistic, est.coef_, ref) < 1e-6, name


def test_lasso_peer_minimizes_asips_objective():
    ds = make_regression(400, 8, random_state=3)
    data = BenchData("small-regression", ds.X, ds.y, True)
    task = parse_task("squared-l1@0.05")
    ref = compute_reference(data, task)
    est = peers_sklearn._make("Lasso", task, data.n, 5000).fit(data.X, data.y)
    assert _rel(task, data, est.coef_, ref) < 1e-8


@pytest.mark.parametrize("task_key", ["log_loss-l2", "log_loss-l1"])
def test_dask_glm_rescaled_regularizer_gives_asips_problem(small_logistic, task_key):
    """dask-glm minimizes sum-losses: lamduh = n alpha makes its optimum asip's."""
    A = pytest.importorskip("dask_glm.algorithms", reason="dask-glm is in asip[bench]")
    from dask_glm.families import Logistic

    task = parse_task(task_key)
    ref = compute_reference(small_logistic, task)
    beta = A.admm(small_logistic.X, (small_logistic.y > 0).astype(float),
                  regularizer=task.penalty, lamduh=small_logistic.n * task.alpha_for(400),
                  family=Logistic, normalize=False, max_iter=500, abstol=1e-12, reltol=1e-12)
    assert _rel(task, small_logistic, beta, ref) < 1e-8


def test_reference_in_a_child_process_with_a_time_limit(small_logistic):
    from asip.bench.data import ReferenceTimeout

    task = parse_task("hinge-l2")
    inline = compute_reference(small_logistic, task)
    child = compute_reference(small_logistic, task, timeout=120)
    assert child["f_star"] == pytest.approx(inline["f_star"], rel=1e-12)
    with pytest.raises(ReferenceTimeout, match="took over"):
        compute_reference(small_logistic, task, timeout=0.01)


def test_run_readings():
    run = Run("d", "t", "s", "asip", f_star=1.0, trace=[[0.5, 2.0], [1.5, 1.1], [3.0, 1.001]])
    assert math.isnan(run.rel_at(0.1))
    assert run.rel_at(2.0) == pytest.approx(0.1)
    assert run.time_to(1e-2) == 3.0 and run.time_to(1e-4) == math.inf
    fits = Run("d", "t", "s", "sklearn", f_star=1.0, independent=True,
               trace=[[0.1, 1.5], [0.2, 1.2], [0.4, 1.3]])
    assert fits.rel_at(1.0) == pytest.approx(0.2)  # the best fit that finished in time


def test_paper_ratio_and_time_to_target():
    from asip.bench.analysis import paper_ratios, time_to_target

    def run(ds, solver, family, rel_end, t_end=10.0):
        return Run(ds, "hinge-l2", solver, family, budget=10.0, f_star=1.0,
                   trace=[[1.0, 2.0], [t_end, 1.0 + rel_end]])

    runs = [run("a", "asip-sgd", "asip", 1e-4, 2.0), run("a", "gd", "asip", 1e-2),
            run("b", "asip-sgd", "asip", 1e-3), run("b", "gd", "asip", 1e-3),
            run("a", "dask-glm:admm", "dask-glm", 1e-2)]
    sgd_gd = paper_ratios(runs, [2.0, 10.0], 10.0)[0]
    assert sgd_gd["n_pairs"] == 2 and sgd_gd["measured"] == pytest.approx(10.0)
    assert sgd_gd["met"] is False and sgd_gd["shortfall"] == pytest.approx(7.4)
    row = next(r for r in time_to_target(runs) if r["dataset"] == "a")
    cell = row["targets"][1e-3]
    assert cell["asip"]["seconds"] == 2.0
    assert cell["ratio dask-glm"] == {"value": 5.0, "at_least": True}  # never got there in 10 s


def test_options():
    assert config.expand_solvers(["dask-glm", "asip-sgd"])[-1] == "asip-sgd"
    with pytest.raises(ValueError, match="valid names"):
        config.expand_solvers(["nope"])
    with pytest.raises(ValueError, match="valid tasks"):
        parse_task("hinge-l3")
    assert parse_task("squared-l1@0.01").alpha_for(10) == 0.01
    assert parse_task("log_loss-l2-1/n").alpha_for(50) == pytest.approx(0.02)


@pytest.mark.timeout(240)
def test_quick_profile_end_to_end(tmp_path):
    """``asip bench --quick`` on a real LocalCluster: every solver traced, JSON and PNGs written."""
    for module in ("rich", "matplotlib", "dask_glm"):
        pytest.importorskip(module, reason="the benchmark's dependencies are asip[bench]")
    from asip.bench import main

    out = tmp_path / "bench"
    assert main(["--quick", "--out", str(out), "--no-progress"]) == 0
    payload = json.loads((out / "results.json").read_text())
    assert payload["complete"]
    runs = payload["runs"]
    # a peer call that never returns is cut off and recorded, not waited for (asip's never)
    hung = [r for r in runs if r["status"] == "hung"]
    assert all(r["family"] == "dask-glm" for r in hung), hung
    traced = {r["solver"] for r in runs if r["status"] in ("ok", "hung") and r["trace"]}
    for solver in payload["config"]["solvers"]:
        if solver == "sklearn":
            assert any(s.startswith("sklearn:") for s in traced)
        else:
            assert solver in traced, f"no trace for {solver}"
    assert not [r for r in runs if r["status"] == "error"]
    kinds = {r["kind"] for r in runs}
    assert {"matrix", "straggler", "kill", "crossover", "scaling"} <= kinds
    summary = payload["summary"]
    for key in ("subopt", "paper_ratios", "time_to_target", "targets", "crossover",
                "fixed_cost", "scaling", "channel"):
        assert summary.get(key), key
    pngs = sorted(out.glob("*.png"))
    names = {p.name for p in pngs}
    assert {"scaling.png", "crossover.png"} <= names
    assert any(n.startswith("subopt-") for n in names) and any(n.startswith("faults-")
                                                               for n in names)
    assert all(p.stat().st_size > 1000 for p in pngs)
    assert {str(p) for p in pngs} == set(summary["plots"])


def test_cli_dispatch(capsys):
    from asip.cli import main

    assert main(["--help"]) == 0
    assert "bench" in capsys.readouterr().out
    assert main(["nope"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0


def test_a_peer_call_that_never_returns_is_cut_off():
    from asip.bench.peers_daskglm import _call_with_watchdog

    assert _call_with_watchdog(lambda: 42, 5.0) == {"value": 42}
    err = _call_with_watchdog(lambda: 1 / 0, 5.0)["error"]
    assert isinstance(err, ZeroDivisionError)
    t0 = time.monotonic()
    assert _call_with_watchdog(lambda: time.sleep(3.0), 0.2) == {"hung": True}
    assert time.monotonic() - t0 < 2.0
