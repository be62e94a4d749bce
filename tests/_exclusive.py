"""The test run's turn lock across pytest-xdist workers: a test marked ``exclusive`` runs
with no other test beside it, for claims about time that a second test's load would bend."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager


@contextmanager
def turn(folder: str, exclusive: bool):
    """Hold the run's lock in ``folder`` (shared by the run's workers): shared for ordinary
    tests, exclusive for an ``exclusive`` one. The gate is held while waiting, so an
    exclusive test queues ordinary ones behind it instead of waiting for a gap between them."""
    with open(os.path.join(folder, "turn.gate"), "a") as gate, \
            open(os.path.join(folder, "turn.lock"), "a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
