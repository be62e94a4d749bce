"""The quick examples run as written (each a subprocess, as a user runs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.timeout(300)  # each starts its own cluster; slow on a busy machine


def run_example(name: str, *args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=280,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_pagerank_matches_power_iteration():
    out = run_example("pagerank.py")
    assert "stopped by STOP from partition" in out  # converged, not out of time
    assert "max relative difference to power iteration" in out


def test_convergence_plot_saves_a_png(tmp_path):
    out = run_example("convergence_plot.py", "--out", "conv.png", "--max-time", "0.7",
                      "--solvers", "asip-sgd,gd", cwd=tmp_path)
    png = (tmp_path / "conv.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert all(f"{s:>10}:" in out for s in ("asip-sgd", "gd"))


def test_cli_cluster_with_tls():
    pytest.importorskip("cryptography")
    out = run_example("cli_cluster.py", "--tls", "--max-time", "1")
    assert "cluster at tls://" in out and "/asip" in out
    for solver in ("asip-sgd", "asip-admm"):
        line = next(line for line in out.splitlines() if line.strip().startswith(solver))
        accuracy = float(line.split("training accuracy ")[1].split(",")[0])
        assert accuracy > 0.6, line  # make_logistic's labels are noisy: sklearn gets 0.66
        messages = int(line.split(", ")[-1].split()[0])
        assert messages > 0, line  # operators talked over TLS
