"""Runtime resilience on real processes: hung workers, several operators per dead worker, TLS."""

from __future__ import annotations

import dask
import numpy as np
import dask.array as da
import pytest
from distributed import Client, LocalCluster
from distributed.security import Security

import asip
from asip.faults import HangWorker, KillWorker
from runtime_operators import Gossip
from test_stage import assert_clean


def data(n_parts=2):
    return da.random.RandomState(3).random_sample((400, 3), chunks=(400 // n_parts, 3))


@pytest.mark.timeout(120)
def test_a_hung_worker_is_detected_by_peer_silence_and_restarted(fresh_cluster):
    client = fresh_cluster
    with dask.config.set({"asip.stage.peer-silence-timeout": "2s"}):
        res = asip.Stage(Gossip(), data(), client=client, max_time=12.0,
                         faults=[HangWorker(partition=1, at=1.0)]).run()
    assert res.stopped_by == "max_time"
    assert [(r.partition, r.incarnation) for r in res.restarts] == [(1, 1)]
    assert "silent" in res.restarts[0].cause
    assert res.restarts[0].time < 11.0  # long before distributed's 5-minute worker-ttl
    assert res.results[1]["incarnation"] == 1 and res.results[1]["counts"].sum() > 0
    client.wait_for_workers(2, timeout=30)
    assert_clean(client)


@pytest.mark.timeout(120)
def test_killing_a_worker_with_several_operators_restarts_them_all(fresh_cluster):
    client = fresh_cluster
    res = asip.Stage(Gossip(), data(n_parts=4), client=client, max_time=5.0, oversubscribe=True,
                     faults=[KillWorker(partition=0, at=1.0)]).run()
    assert res.stopped_by == "max_time"
    killed = {r.partition for r in res.restarts}
    assert 0 in killed and len(killed) == 2  # both operators of that worker came back
    assert all(r.incarnation == 1 for r in res.restarts)
    for i, r in enumerate(res.results):
        assert list(r["senders"]) == [j for j in range(4) if j != i]
    client.wait_for_workers(2, timeout=30)
    assert_clean(client)


@pytest.mark.timeout(120)
def test_the_channel_runs_on_a_tls_secured_cluster():
    security = Security.temporary()
    with LocalCluster(n_workers=2, threads_per_worker=1, security=security,
                      dashboard_address=None, silence_logs=40) as cluster, \
            Client(cluster, security=security) as client:
        assert cluster.scheduler_address.startswith("tls://")
        res = asip.Stage(Gossip(), data(), client=client, max_time=1.0).run()
        assert [list(r["senders"]) for r in res.results] == [[1], [0]]
        assert all(r["worker"].startswith("tls://") for r in res.results)
        assert res.stats["total"]["delivered"] > 0
        assert_clean(client)


@pytest.mark.timeout(60)
def test_schema_rejects_poisoned_and_misshapen_updates(client):
    from runtime_operators import Validated

    res = asip.Stage(Validated(), data(), client=client, max_time=1.0).run()
    assert sorted(res.results[1]["received"]) == [1, 9]
    assert np.isfinite(res.results[1]["model"]).all()
    assert res.stats["operators"][1]["rejected"] == 7
    assert_clean(client)


@pytest.mark.timeout(60)
def test_checkpoint_is_written_atomically_and_warm_starts_a_new_stage(client, tmp_path):
    from runtime_operators import Reporter

    path = tmp_path / "model.ckpt"
    seen = []

    def interrupt(entries):
        seen.extend(entries)
        if max(e.time for e in seen) > 1.0:
            raise KeyboardInterrupt  # the driver dies mid-run: the latest model is saved

    stage = asip.Stage(Reporter(), data(), client=client, max_time=30.0, checkpoint=path,
                       checkpoint_every=0.2, on_trace=interrupt)
    with pytest.raises(KeyboardInterrupt):
        stage.run()
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]  # no temp files left
    ckpt = asip.load_checkpoint(path)
    assert sorted(ckpt.latest) == [0, 1] and ckpt.time >= 1.0
    last = {i: max((e for e in stage.result.trace if e.partition == i), key=lambda e: e.time)
            for i in (0, 1)}
    for i in (0, 1):  # the checkpoint holds the newest report of each partition
        np.testing.assert_allclose(ckpt.latest[i]["w"], last[i].metrics["w"])
    start = {i: float(ckpt.latest[i]["w"][0]) for i in (0, 1)}
    res = asip.Stage(Reporter(start), data(), client=client, max_time=0.3).run()
    assert [r["offset"] for r in res.results] == [start[0], start[1]]
    with pytest.raises(asip.AsipError, match="not an asip checkpoint"):
        (tmp_path / "junk").write_bytes(b"\x00\x01junk")
        asip.load_checkpoint(tmp_path / "junk")
    assert_clean(client)
