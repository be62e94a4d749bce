"""The bundled solvers on a cluster started with the ``dask scheduler`` / ``dask worker`` CLIs.

This is how a real deployment looks: a scheduler process (here with
``--preload asip.dashboard``, which adds the live ``/asip`` page to its dashboard) and
worker processes, started as subprocesses on this machine, and a driver that connects
by address. With ``--tls`` every connection is TLS, with a throw-away certificate
from ``distributed.Security.temporary()`` written to files for the CLIs; asip's
channel between operators uses the same (encrypted) comms.

Run:  python examples/cli_cluster.py [--tls] [--max-time 1.5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import asip
from asip.algorithms import AsipClassifier, make_logistic


def _tls_files(security, folder: str) -> list[str]:
    """Write the in-memory certificate and key to files; the CLI flags that use them."""
    paths = {}
    for name, pem in (("ca.pem", security.tls_ca_file), ("cert.pem", security.tls_worker_cert),
                      ("key.pem", security.tls_worker_key)):
        paths[name] = os.path.join(folder, name)
        with open(os.open(paths[name], os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(pem)
    return ["--tls-ca-file", paths["ca.pem"], "--tls-cert", paths["cert.pem"],
            "--tls-key", paths["key.pem"]]


@contextmanager
def cli_cluster(n_workers: int = 2, security=None, timeout: float = 60.0, env=None):
    """Start ``dask scheduler`` and ``dask worker`` subprocesses; yields the scheduler address.

    ``env``: the processes' environment (default: this one's), e.g. a ``PYTHONPATH``
    that holds the modules your operators are defined in.
    """
    folder = tempfile.mkdtemp(prefix="asip-cli-")
    scheduler_file = os.path.join(folder, "scheduler.json")
    tls = _tls_files(security, folder) if security is not None else []
    dask_cli = [sys.executable, "-m", "dask"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    procs = [subprocess.Popen(
        [*dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--dashboard-address", "127.0.0.1:0", "--scheduler-file", scheduler_file,
         "--preload", "asip.dashboard", *(["--protocol", "tls"] if tls else []), *tls], **quiet)]
    try:
        deadline = time.monotonic() + timeout
        while not os.path.exists(scheduler_file):
            if procs[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dask scheduler did not start")
            time.sleep(0.1)
        procs.append(subprocess.Popen(
            [*dask_cli, "worker", "--scheduler-file", scheduler_file, "--host", "127.0.0.1",
             "--nworkers", str(n_workers), "--nthreads", "1", *tls], **quiet))
        with open(scheduler_file) as f:
            yield json.load(f)["address"]
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def main(tls: bool = False, max_time: float = 1.5) -> None:
    security = None
    if tls:
        from distributed import Security

        security = Security.temporary()
    data = make_logistic(n_samples=20_000, n_features=20)
    with cli_cluster(2, security) as address:
        kwargs = {"security": security} if security is not None else {}
        with asip.connect(address, **kwargs) as client:  # also adds /asip if not preloaded
            client.wait_for_workers(2, timeout=60)
            print(f"cluster at {address}; watch it at {client.dashboard_link.rsplit('/', 1)[0]}"
                  "/asip")
            for solver in ("asip-sgd", "asip-admm"):
                model = AsipClassifier(alpha=1e-3, solver=solver, max_time=max_time,
                                       random_state=0).fit(data.X, data.y)
                print(f"{solver:>10}: training accuracy {model.score(data.X, data.y):.3f}, "
                      f"final objective {model.trace_[-1, 1]:.5f}, stopped by "
                      f"{model.stopped_by_}, {model.stage_result_.stats['total']['delivered']} "
                      "messages between operators")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tls", action="store_true", help="TLS everywhere (Security.temporary)")
    parser.add_argument("--max-time", type=float, default=1.5, help="seconds per solver")
    args = parser.parse_args()
    main(args.tls, args.max_time)
