"""asip's dask.config defaults (asip.yaml) and typed accessors for them."""

from __future__ import annotations

import os

import dask.config
import yaml
from dask.utils import parse_bytes, parse_timedelta

_DEFAULTS_FILE = os.path.join(os.path.dirname(__file__), "asip.yaml")

with open(_DEFAULTS_FILE) as _f:
    dask.config.update_defaults(yaml.safe_load(_f))


def seconds(key: str) -> float:
    """A duration from ``asip.<key>`` in seconds."""
    return float(parse_timedelta(dask.config.get(f"asip.{key}"), default="s"))


def nbytes(key: str) -> int:
    """A size from ``asip.<key>`` in bytes."""
    value = dask.config.get(f"asip.{key}")
    return int(parse_bytes(value) if isinstance(value, str) else value)


def integer(key: str) -> int:
    """An integer from ``asip.<key>``."""
    return int(dask.config.get(f"asip.{key}"))


def flag(key: str) -> bool:
    """A boolean from ``asip.<key>`` (``"false"``/``"0"``/``"no"``/``"off"`` from the environment are False)."""
    value = dask.config.get(f"asip.{key}")
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off", "")
    return bool(value)


def snapshot() -> dict:
    """The whole ``asip`` config section, to ship to workers with a stage."""
    return dict(dask.config.get("asip"))
