"""Checkpoints: the latest report of every partition, written atomically, read back to warm-start."""

from __future__ import annotations

import os
import tempfile
from typing import NamedTuple

import msgpack

from asip._exceptions import AsipError
from asip._wire import unpack_payload

__all__ = ["Checkpoint", "load_checkpoint", "write_checkpoint"]

_VERSION = 1


class Checkpoint(NamedTuple):
    """A saved stage state: per partition, the metrics of its latest ``ctx.report``."""

    run_id: str
    time: float  # stage time of the newest report in it
    latest: dict[int, dict]  # partition -> metrics (e.g. its current model)


def write_checkpoint(path: str | os.PathLike, run_id: str, latest: dict[int, tuple]) -> None:
    """Write ``{partition: (time, incarnation, packed metrics)}`` to ``path`` atomically.

    The file is written next to ``path`` and renamed over it, so a reader (or a crash)
    never sees half a checkpoint.
    """
    path = os.fspath(path)
    data = msgpack.packb(
        {"version": _VERSION, "run_id": run_id,
         "time": max((t for t, _, _ in latest.values()), default=0.0),
         "partitions": [[i, t, inc, packed] for i, (t, inc, packed) in sorted(latest.items())]},
        use_bin_type=True,
    )
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".asip-ckpt-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by a stage (``Stage(checkpoint=path)``)."""
    try:
        with open(path, "rb") as f:
            raw = msgpack.unpackb(f.read(), raw=False)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise AsipError(f"{os.fspath(path)!r} is not an asip checkpoint: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("version") != _VERSION:
        raise AsipError(f"{os.fspath(path)!r} is not an asip checkpoint (version {_VERSION})")
    latest = {i: unpack_payload(packed) for i, _, _, packed in raw["partitions"]}
    return Checkpoint(raw["run_id"], float(raw["time"]), latest)
