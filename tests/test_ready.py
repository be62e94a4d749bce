"""The cluster fixtures hand a test its workers with asip loaded, not merely registered."""

from __future__ import annotations

import sys

import pytest
from _ready import ready


def _asip_loaded(client) -> dict:
    return client.run(lambda: "asip.algorithms" in sys.modules)


@pytest.mark.timeout(120)
def test_restarted_workers_are_handed_over_with_asip_loaded(fresh_cluster):
    """New worker processes (a nanny's restart, as after a kill) register before they import
    asip; `ready` returns only once each has, so the import is not inside a test's budget."""
    client = fresh_cluster
    client.restart()  # every worker a new process, as a killed one's nanny starts it
    assert not any(_asip_loaded(client).values()), "a new worker imported asip by itself"
    ready(client)
    loaded = _asip_loaded(client)
    assert len(loaded) == 2 and all(loaded.values()), loaded
