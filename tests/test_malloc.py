"""glibc malloc's thresholds on a worker while a stage runs (asip._malloc)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import dask
import numpy as np
import pytest

import asip
from asip import _config, _malloc, _worker_plugin
from malloc_operators import MallocProbe, faults_per_allocation

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(_malloc._glibc() is None, reason="malloc is not glibc's")]

PAGES = (1 << 20) // 4096  # pages of the probe's 1 MiB array


def test_operator_temporaries_reuse_the_heap_while_a_stage_runs_and_the_nanny_setting_is_back_after(
        fresh_cluster):
    """The nanny's MALLOC_TRIM_THRESHOLD_ fixes glibc's mmap threshold at 128 KiB: every
    1 MiB temporary an operator allocates is a fresh mmap, its pages faulted in again. While
    a stage runs the worker's heap serves them (no faults); after it, the worker's own
    setting is back; asip.stage.malloc-mmap-threshold = 0 leaves malloc alone."""
    client = fresh_cluster
    # fresh worker processes: a heap left with large free chunks by earlier tests (50 MB of
    # blocks come and go) serves 1 MiB from them whatever the thresholds, faulting nothing
    client.restart()
    client.wait_for_workers(2, timeout=60)
    envs = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert set(envs.values()) == {"65536"}, envs  # distributed's nanny default
    blocks = [np.zeros((2, 2)) for _ in range(2)]
    # the probes stop once every one has measured: max_time only ends a hung stage (at 5 s,
    # a loaded machine could end it before a peer's first step: a None result)
    res = asip.Stage(MallocProbe(), blocks, client=client, max_time=60.0).run()
    assert res.stopped_by.startswith("STOP"), res.stopped_by
    faults = [r["faults"] for r in res.results if r is not None]
    assert faults and max(faults) < PAGES / 8, faults
    deadline = time.monotonic() + _worker_plugin.SETTLE_DELAY + 20  # (settled off the loop)
    while min((after := client.run(faults_per_allocation)).values()) <= PAGES / 2:
        assert time.monotonic() < deadline, after  # put back: fresh mmaps again
        time.sleep(0.1)
    with dask.config.set({"asip.stage.malloc-mmap-threshold": 0}):
        res = asip.Stage(MallocProbe(), blocks, client=client, max_time=60.0).run()
    assert res.stopped_by.startswith("STOP"), res.stopped_by
    faults = [r["faults"] for r in res.results if r is not None]
    assert faults and min(faults) > PAGES / 2, faults


_NESTING = """
import sys
from asip import _malloc
from malloc_operators import faults_per_allocation as faults
fixed = faults()
assert _malloc.hold(32 << 20) and _malloc.hold(1 << 20)
held = faults()
assert not _malloc.release()
still = faults()
assert _malloc.release()  # the last one: the caller settles
assert faults() < 32  # still raised until then
_malloc.settle()
assert not _malloc.release()  # one too many: ignored
print(fixed, held, still, faults(), _malloc._holds)
"""


def test_holds_nest_and_the_last_release_puts_the_threshold_back():
    """In a process started as a nanny starts a worker: holds nest, and only the last
    release, once settled, brings back the fresh mmap (and its page faults) per large
    allocation."""
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536",
               PYTHONPATH=os.pathsep.join([os.path.dirname(__file__),
                                           os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _NESTING], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    fixed, held, still, back, holds = map(float, out.stdout.split())
    assert fixed > PAGES / 2 and back > PAGES / 2, out.stdout
    assert held < PAGES / 8 and still < PAGES / 8, out.stdout
    assert holds == 0


def test_nothing_changes_without_a_fixed_threshold(monkeypatch):
    """No threshold in the environment (glibc's dynamic policy adapts by itself), or a
    threshold of 0: hold() leaves malloc alone."""
    for name in _malloc._ENV:
        monkeypatch.delenv(name, raising=False)
    assert not _malloc.hold(32 << 20)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    assert not _malloc.hold(0)
    assert _malloc._holds == 0
    assert _config.nbytes("stage.malloc-mmap-threshold") == 32 << 20
