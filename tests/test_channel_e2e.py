"""The channel's user contract on a real 2-process cluster: lists as receivers, latest=,
sparse payloads, fan-out helpers, refusals, and age percentiles in res.stats."""

from __future__ import annotations

import math

import numpy as np
import pytest

import asip

pytestmark = pytest.mark.timeout(90)


def test_multicast_latest_sparse_and_fan_out_helpers(client):
    from channel_operators import FanOut

    n = 4
    X = [client.submit(np.zeros, (1, 1), pure=False) for _ in range(n)]
    res = asip.Stage(FanOut(), X, client=client, max_time=2.0, oversubscribe=True).run()
    assert res.stopped_by == "max_time" and not res.restarts
    for i, r in enumerate(res.results):
        assert r["heard"] == [j for j in range(n) if j != i]  # everyone's latest state
        assert r["sparse_from"] == [(i - 1) % n] and r["sparse_ok"]  # the ring predecessor only
        assert r["refusals"] == ["MessageError", "ValueError", "ValueError", "ValueError"]
        assert r["tree"] == [-1 if i == 0 else (i - 1) // 2, *[c for c in (2 * i + 1, 2 * i + 2) if c < n]]
        assert len(r["gossip"]) == 2 and i not in r["gossip"]
    total = res.stats["total"]
    assert total["refused"] == n  # the 2**70 push, counted on its sender
    assert total["rejected"] == 0 and total["malformed"] == 0 and total["zombie"] == 0
    assert total["delivered"] > 0 and sum(total["age_hist"]) == total["consumed"]
    assert 0 <= total["age_p50_ms"] <= total["age_p99_ms"] < 10_000
    assert not math.isnan(total["arrival_p99_ms"])
