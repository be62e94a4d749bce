"""A fit's data phase, piece by piece: what placing in-memory blocks costs, and which part is round trips.

On ``asip.connect(n_workers=2)`` (the scheduler in this process), ``--reps`` times: the
whole `asip._data.partitions_of` for the estimator's two row blocks of ``--data``, then
the same placement taken apart as distributed's direct scatter does it: the
``client.nthreads()`` round trip asip makes to balance the blocks, the scheduler's
``ncores_running`` (inside ``client.scatter``), the blocks' transfer to both workers at
once, the scheduler's ``update_data``, and an empty hop to the client's loop. Medians
with p10 / p90 in ms, the load average with them.

Run:  python benchmarks/data_phase.py [--data reuters] [--reps 40]
      python benchmarks/data_phase.py --data reuters:800   # ~200 kB blocks
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PIECES = ("partitions_of", "nthreads", "ncores_running", "to_workers", "update_data",
          "loop_hop")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="reuters")
    ap.add_argument("--reps", type=int, default=40)
    args = ap.parse_args(argv)

    from distributed.protocol import to_serialize
    from distributed.utils_comm import scatter_to_workers

    import asip
    from asip._aligned import shipped
    from asip._data import _worker_slots, partitions_of
    from asip_bench.data import load_dataset

    print(f"load average at start: {os.getloadavg()}", flush=True)
    with asip.connect(n_workers=2, dashboard=False, silence_logs=40) as client:
        client.wait_for_workers(2)
        data = load_dataset(args.data)
        n = data.X.shape[0]
        blocks = [(data.X[: n // 2], data.y[: n // 2]), (data.X[n // 2:], data.y[n // 2:])]
        sizes = [sum(getattr(a, "nbytes", 0) or sum(x.nbytes for x in (a.data, a.indices,
                                                                        a.indptr))
                     for a in b) for b in blocks]
        print(f"{args.data}: {n} rows, blocks of {[round(s / 1e3) for s in sizes]} kB")
        res: dict = {k: [] for k in PIECES}

        async def pieces(by_worker):
            t0 = time.perf_counter()
            await client.scheduler.ncores_running(workers=list(by_worker))
            t1 = time.perf_counter()
            outs = await asyncio.gather(*(
                scatter_to_workers([addr], {k: to_serialize(v) for k, v in chunk.items()},
                                   client.rpc)
                for addr, chunk in by_worker.items()))
            t2 = time.perf_counter()
            who_has = {k: v for o in outs for k, v in o[1].items()}
            nbytes = {k: v for o in outs for k, v in o[2].items()}
            await client.scheduler.update_data(who_has=who_has, nbytes=nbytes, client=client.id)
            t3 = time.perf_counter()
            return t1 - t0, t2 - t1, t3 - t2, list(who_has)

        async def nothing():
            return None

        for rep in range(args.reps + 2):  # the first two are warm-ups, not kept
            t0 = time.perf_counter()
            parts = partitions_of(list(blocks), client)
            t1 = time.perf_counter()
            client.cancel([f for p in parts.futures for f in p])
            nthreads = client.nthreads()
            t2 = time.perf_counter()
            by_worker: dict = {}
            for i, (addr, block) in enumerate(zip(_worker_slots(nthreads, 2), blocks)):
                by_worker.setdefault(addr, {})[f"dp-{uuid.uuid4().hex[:8]}-{i}"] = \
                    shipped(block, addr)
            ncores, transfer, update, keys = client.sync(pieces, by_worker)
            t3 = time.perf_counter()
            client.sync(nothing)
            t4 = time.perf_counter()
            client._send_to_scheduler({"op": "client-releases-keys", "keys": keys,
                                       "client": client.id})
            if rep >= 2:
                for k, v in zip(PIECES, (t1 - t0, t2 - t1, ncores, transfer, update, t4 - t3)):
                    res[k].append(v)
            time.sleep(0.05)  # the releases above land before the next placement
    print(f"load average at end: {os.getloadavg()}")
    for k, v in res.items():
        v = sorted(v)
        print(f"{k:15s} median {1e3 * statistics.median(v):6.2f} ms  p10 "
              f"{1e3 * v[len(v) // 10]:6.2f}  p90 {1e3 * v[9 * len(v) // 10]:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
