"""How fast numpy data reaches the workers: the floor's parts and asip's placement, side by side.

Sections (each repeated ``--repeat`` times, medians printed; 300k x 100 float64 by default,
240 MB, in two row blocks as the estimators split it for 2 workers x 1 thread):

* ``memcpy``: copying the blocks in this process, into touched memory and into fresh
  memory (the page faults a receiver pays for a new buffer).
* ``comm``: distributed's own TCP comm (``distributed.comm.connect``/``listen``) to a
  listener process that deserializes as a worker does: one frame per block, the message
  asip's scatter sends (``update_data`` of one ``(X, y)`` tuple), with distributed's frame
  splitting (``distributed.comm.shard``) and without it (its receiver copies split frames
  into one buffer again); both blocks to two listeners at once.
* ``shm``: the same-host alternative, through ``/dev/shm``: this process writes a block
  into a tmpfs file (``os.write``: the space is taken, or ENOSPC, never a SIGBUS), a
  reader maps it (``MAP_POPULATE``) and sums it.
* ``scatter``: the placement a stage does (`asip._data.partitions_of` on a list of
  in-memory blocks: a block past ``distributed.comm.shard`` in a message of its own) on a
  ``LocalCluster`` of 2 workers, against one ``client.scatter(..., direct=True)`` of each
  worker's blocks, both workers at once (what asip did until 2026-11-30); wall time and the CPU seconds of the client and of the workers (user,
  system), which the load of a shared machine disturbs less than wall time.
* ``peak``: two blocks of 77 MB per worker (past distributed's 64 MiB frame shards): how
  far each way of placing them raises the workers' peak memory above what they then hold.
* ``fresh``: the first three placements into fresh workers (a new cluster each time,
  ``--fresh`` clusters per way, in ABBA order): where the kernel's first touch of memory
  shows (the workers' system CPU seconds).

    python benchmarks/placement.py [--rows 300000] [--cols 100] [--repeat 5] [--fresh 4]
                                   [--sections memcpy comm shm scatter peak fresh]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import time

import numpy as np


def _blocks(rows: int, cols: int, parts: int = 2) -> list:
    """``parts`` (X, y) row blocks of a dense float64 problem, views of one array."""
    X = np.random.default_rng(0).standard_normal((rows, cols))
    y = np.sign(X[:, 0])
    bounds = np.linspace(0, rows, parts + 1).astype(int)
    return [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _nbytes(blocks) -> int:
    return sum(a.nbytes for part in blocks for a in part)


def _line(label: str, times: list[float], nbytes: int) -> str:
    t = statistics.median(times)
    return (f"{label:58s} median {t * 1e3:7.1f} ms (min {min(times) * 1e3:7.1f}) "
            f"{nbytes / t / 1e9:5.2f} GB/s; load {os.getloadavg()[0]:.1f}")


def memcpy(blocks, repeat: int) -> list[str]:
    X = blocks[0][0].base if blocks[0][0].base is not None else blocks[0][0]
    nbytes = X.nbytes
    dst = np.empty_like(X)
    dst.fill(0)  # touched: no page faults when timed
    touched, fresh = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        np.copyto(dst, X)
        touched.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = X.copy()
        fresh.append(time.perf_counter() - t)
        del out
    return [_line("memcpy into touched memory", touched, nbytes),
            _line("memcpy into fresh memory (page faults)", fresh, nbytes)]


# ---------------------------------------------------------------------------- comm
def _serve(queue) -> None:
    """A listener process: read each message (deserialized as a worker reads), reply
    with the time deserialization took on this side."""
    from distributed.comm import listen

    async def handle(comm):
        try:
            while True:
                msg = await comm.read()
                nbytes = 0
                for value in msg.get("data", {}).values():
                    for a in (value if isinstance(value, tuple) else (value,)):
                        nbytes += a.nbytes
                await comm.write({"nbytes": nbytes})
        except Exception:
            pass

    async def main():
        listener = listen("tcp://127.0.0.1:0", handle, deserialize=True)
        await listener.start()
        queue.put(listener.contact_address)
        await asyncio.Event().wait()

    asyncio.run(main())


def comm(blocks, repeat: int) -> list[str]:
    from distributed.comm import connect
    from distributed.protocol import to_serialize

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_serve, args=(queue,), daemon=True) for _ in range(2)]
    for p in procs:
        p.start()
    addrs = [queue.get(timeout=60) for _ in procs]
    rows = []

    async def run():
        comms = [await connect(a) for a in addrs]

        async def send(c, data, shard):
            c.max_shard_size = shard  # the instance's, this comm only
            await c.write({"data": data})
            reply = await c.read()
            return reply["nbytes"]

        async def timed(label, sends, nbytes):
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                got = await asyncio.gather(*(send(*s) for s in sends))
                times.append(time.perf_counter() - t)
                assert sum(got) == nbytes, (got, nbytes)
            rows.append(_line(label, times, nbytes))

        default = type(comms[0]).max_shard_size
        big = 2**31
        one = blocks[0]
        for shard, name in ((default, f"shard {default >> 20} MiB"), (big, "unsplit")):
            await timed(f"comm 1 block X only, {name}",
                        [(comms[0], {"x": to_serialize(one[0])}, shard)], one[0].nbytes)
            await timed(f"comm 1 block (X, y) as scatter sends, {name}",
                        [(comms[0], {"x": to_serialize(one)}, shard)], _nbytes([one]))
            await timed(f"comm 2 blocks to 2 listeners at once, {name}",
                        [(c, {"x": to_serialize(b)}, shard) for c, b in zip(comms, blocks)],
                        _nbytes(blocks))
        for c in comms:
            await c.close()

    asyncio.run(run())
    for p in procs:
        p.terminate()
    return rows


# ---------------------------------------------------------------------------- shm
def _shm_read(path: str, nbytes: int) -> float:
    """Map a tmpfs file (populated), unlink it, sum it: the reader's side of a shm hand-over."""
    import mmap

    fd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(fd, nbytes, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
    finally:
        os.close(fd)
        os.unlink(path)
    total = float(np.frombuffer(m, dtype=np.float64).sum())
    return total


def shm(blocks, repeat: int) -> list[str]:
    import uuid

    X = np.ascontiguousarray(blocks[0][0])
    write, read = [], []
    for _ in range(repeat):
        path = f"/dev/shm/asip-bench-{uuid.uuid4().hex}"
        t = time.perf_counter()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view, done = memoryview(X).cast("B"), 0
            while done < X.nbytes:
                done += os.write(fd, view[done:done + (1 << 30)])
        finally:
            os.close(fd)
        write.append(time.perf_counter() - t)
        t = time.perf_counter()
        _shm_read(path, X.nbytes)
        read.append(time.perf_counter() - t)
    return [_line("shm: write one block into /dev/shm", write, X.nbytes),
            _line("shm: map it populated, unlink, sum it", read, X.nbytes)]


# ---------------------------------------------------------------------------- scatter
def _cpu(dask_worker=None) -> tuple[float, float]:
    t = os.times()
    return t.user, t.system


def _memory(reset: bool = False, dask_worker=None) -> tuple[int, int]:
    """Resident memory now and its peak since the last reset (Linux VmRSS, VmHWM)."""
    if reset:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    with open("/proc/self/status") as f:
        kb = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
    return int(kb["VmRSS"].split()[0]) * 1024, int(kb["VmHWM"].split()[0]) * 1024


def _ways(client):
    """The two ways of placing a list of blocks, each returning the futures."""
    from asip._data import _worker_slots, partitions_of

    def plain(blocks):  # what asip._data did until 2026-11-30: client.scatter per worker
        slots = _worker_slots(client.nthreads(), len(blocks))
        by_worker: dict = {}
        for i, (w, b) in enumerate(zip(slots, blocks)):
            by_worker.setdefault(w, {})[f"plain-{i}-{time.monotonic_ns()}"] = b

        async def go():
            return await asyncio.gather(*(client._scatter(chunk, workers=[w], direct=True,
                                                          hash=False)
                                          for w, chunk in by_worker.items()))
        return [f for d in client.sync(go) for f in d.values()]

    def asip_(blocks):
        parts = partitions_of(list(blocks), client)
        return [f for fs in parts.futures for f in fs]

    return {"client.scatter(direct=True) per worker": plain, "asip partitions_of": asip_}


def _place(client, fn, blocks) -> tuple[float, list, float]:
    """Wall time, the workers' (user, system) CPU seconds, the client's CPU seconds."""
    before, c0 = client.run(_cpu), os.times()
    t = time.perf_counter()
    futures = fn(blocks)
    wall = time.perf_counter() - t
    after, c1 = client.run(_cpu), os.times()
    cpu = [sum(after[w][k] - before[w][k] for w in after) for k in (0, 1)]
    client.cancel(futures)
    del futures
    time.sleep(0.2)  # the workers free the blocks
    return wall, cpu, (c1.user + c1.system) - (c0.user + c0.system)


def _cluster():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=40)
    return cluster, Client(cluster)


def scatter(blocks, repeat: int) -> list[str]:
    rows = []
    nbytes = _nbytes(blocks)
    cluster, client = _cluster()
    with cluster, client:
        ways = _ways(client)
        seen = {label: [] for label in ways}
        for _ in range(repeat):
            for label, fn in ways.items():
                seen[label].append(_place(client, fn, blocks))
        for label, runs in seen.items():
            med = [statistics.median(r[1][k] for r in runs) for k in (0, 1)]
            rows.append(_line(label, [r[0] for r in runs], nbytes)
                        + f"; CPU s workers user {med[0]:.2f} sys {med[1]:.2f}, client "
                        f"{statistics.median(r[2] for r in runs):.2f}")
    return rows


def peak(blocks, repeat: int) -> list[str]:
    rng = np.random.default_rng(1)
    big = [(rng.random((96_000, 100)), np.ones(96_000)) for _ in range(4)]  # 77 MB each
    nbytes = _nbytes(big)
    rows = []
    cluster, client = _cluster()
    with cluster, client:
        for label, fn in _ways(client).items():
            over = []
            for _ in range(repeat):
                before = client.run(_memory, True)
                futures = fn(big)
                after = client.run(_memory)
                over.append(sum(after[w][1] - after[w][0] for w in after))
                held = sum(after[w][0] - before[w][0] for w in after)
                client.cancel(futures)
                del futures
                time.sleep(0.3)
            rows.append(f"{label:58s} 4 blocks, {nbytes / 1e6:.0f} MB on 2 workers: peak "
                        f"above what they hold {statistics.median(over) / 1e6:5.0f} MB "
                        f"(held {held / 1e6:.0f} MB); load {os.getloadavg()[0]:.1f}")
    return rows


def fresh(blocks, clusters: int) -> list[str]:
    nbytes = _nbytes(blocks)
    seen: dict = {}
    for i in range(2 * clusters):
        cluster, client = _cluster()
        with cluster, client:
            label, fn = list(_ways(client).items())[(i + i // 2) % 2]  # ABBA: no order bias
            seen.setdefault(label, []).append([_place(client, fn, blocks) for _ in range(3)])
    rows = []
    for label, runs in seen.items():
        for k in range(3):
            rows.append(_line(f"{label}: placement {k + 1} on fresh workers",
                              [r[k][0] for r in runs], nbytes)
                        + f"; workers' sys CPU s median "
                          f"{statistics.median(r[k][1][1] for r in runs):.2f}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--fresh", type=int, default=4, help="fresh clusters per way")
    ap.add_argument("--sections", nargs="+",
                    default=["memcpy", "comm", "shm", "scatter", "peak", "fresh"])
    args = ap.parse_args()
    blocks = _blocks(args.rows, args.cols)
    print(f"{args.rows} x {args.cols} float64 in 2 blocks, {_nbytes(blocks) / 1e6:.0f} MB; "
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC; load average "
          f"{os.getloadavg()}", flush=True)
    rows = []
    for section in args.sections:
        run = {"memcpy": memcpy, "comm": comm, "shm": shm, "scatter": scatter, "peak": peak,
               "fresh": fresh}[section]
        out = run(blocks, args.fresh if section == "fresh" else args.repeat)
        for r in out:
            print(r, flush=True)
        rows += out
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
