"""``results.json``: the machine, the config, every reference, every run with its trace, the summary.

Written after every dataset and study (``complete: false``) and once more at
the end, atomically, so an interrupted benchmark keeps what it measured.
Non-finite floats become ``null`` (strict JSON); dict keys become strings.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["machine", "write_json"]


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _clean(obj.as_dict() if hasattr(obj, "as_dict") else dataclasses.asdict(obj))
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def machine() -> dict:
    """Where the numbers come from (load averages say how quiet the machine was)."""
    import dask
    import distributed
    import sklearn

    try:
        import dask_glm

        dglm = getattr(dask_glm, "__version__", "installed")
    except ImportError:
        dglm = None
    import asip

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "versions": {"asip": asip.__version__, "dask": dask.__version__,
                         "distributed": distributed.__version__, "numpy": np.__version__,
                         "scikit-learn": sklearn.__version__, "dask-glm": dglm},
            "loadavg": load, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_json(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(_clean(payload), fh, indent=1, allow_nan=False)
    os.replace(tmp, path)
    return path
