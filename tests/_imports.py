"""What a fresh interpreter loads: for tests that keep heavy imports out of a module."""

from __future__ import annotations

import subprocess
import sys


def modules_loaded_by(imports: str, watched: tuple[str, ...]) -> list[str]:
    """The ``watched`` top-level packages or modules in ``sys.modules`` after ``imports`` runs
    in a fresh interpreter (a submodule counts for its package)."""
    probe = (f"import sys; {imports}; watched = {watched!r}; print(sorted(m for m in sys.modules "
             "if m in watched or m.split('.')[0] in watched))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return eval(out)  # noqa: S307 - the probe prints a list of module names
