"""Archive throughput against DuckDB writing the same rows, in the same run.

    SILT_BIN=target/release/silt python tests/archive/bench_archive.py [records] [events|random|pool]

Produces `records` records of about 1 KiB (see `payloads`) to a fresh
`silt dev`, stops it, and times `silt compactor --once` rewriting them to
Parquet. Then DuckDB, holding the same rows in memory, writes them with
`COPY … TO … (FORMAT parquet, COMPRESSION zstd)`. Both rates are MB/s of
record bytes (key + value); the ratio is Silt's over DuckDB's. Not a test:
a benchmark, run by hand.
"""

import base64
import json
import os
import random
import resource
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time

import duckdb

from conftest import post  # the archive suite's JSON client, beside this script

ROUNDS = 5


def payloads(kind):
    """Record values of one kind, about 1 KiB each:
    - events: JSON click-stream events, what most topics carry;
    - random: base64 of random bytes (compresses only to its 6 bits/char);
    - pool: slices of a 1 MiB random text, repetitive beyond a 1 MiB window.
    """
    rng = random.Random(7)
    if kind == "events":
        pages = [f"/products/{rng.randrange(10_000)}" for _ in range(500)]
        agents = [f"Mozilla/5.0 (X11; Linux x86_64) Build/{rng.randrange(10**6)}" for _ in range(50)]
        while True:
            event = {
                "event": rng.choice(["page_view", "add_to_cart", "purchase", "search"]),
                "user_id": rng.randrange(10**7),
                "session": "%032x" % rng.getrandbits(128),
                "ts": 1_764_000_000_000 + rng.randrange(10**9),
                "page": rng.choice(pages),
                "referrer": rng.choice(pages),
                "agent": rng.choice(agents),
                "price": round(rng.random() * 500, 2),
                "items": [{"sku": rng.randrange(10**6), "qty": rng.randrange(1, 5)}
                          for _ in range(rng.randrange(1, 12))],
            }
            yield json.dumps(event)
    elif kind == "random":
        while True:
            yield base64.b64encode(rng.randbytes(768)).decode()
    else:
        alphabet = string.ascii_letters + string.digits
        pool = "".join(rng.choice(alphabet) for _ in range(1 << 20))
        while True:
            at = rng.randrange(len(pool) - 1024)
            yield pool[at:at + 1024]


def cpu(who):
    """(user, system) CPU seconds so far of this process or its children."""
    r = resource.getrusage(who)
    return (r.ru_utime, r.ru_stime)


def main():
    silt = os.environ["SILT_BIN"]
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    kind = sys.argv[2] if len(sys.argv) > 2 else "events"
    values = payloads(kind)
    with tempfile.TemporaryDirectory() as data:
        dev = subprocess.Popen(
            [silt, "dev", "--data-dir", os.path.join(data, "dev"), "--listen", "127.0.0.1:0", "--archive", "false"],
            stdout=subprocess.PIPE, env={**os.environ, "SILT_LOG": "warn"},
        )
        url = dev.stdout.readline().decode().strip().removeprefix("silt listening on ")
        post(f"{url}/v1/topics", {"name": "bench", "partitions": 6})
        record_bytes = 0
        for start in range(0, records, 1000):
            batch = []
            for i in range(start, min(start + 1000, records)):
                key, value = f"k{i}", next(values)
                record_bytes += len(key) + len(value)
                batch.append({"key": key, "value": value})
            post(f"{url}/v1/topics/bench/records", {"records": batch})
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=60)

        # Best of `ROUNDS` for each side, each Silt round on a fresh copy
        # of the produced data: first touches of memory on a virtual
        # machine vary by several times from run to run.
        pristine = os.path.join(data, "pristine")
        shutil.copytree(os.path.join(data, "dev"), pristine)
        silt_secs, silt_cpu = [], []
        for _ in range(ROUNDS):
            work = os.path.join(data, "work")
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(pristine, work)
            t, c = time.perf_counter(), cpu(resource.RUSAGE_CHILDREN)
            subprocess.run([silt, "compactor", "--once", "--merge-target-bytes", "0", "--data-dir", work],
                           check=True, capture_output=True, env={**os.environ, "SILT_LOG": "warn"})
            silt_secs.append(time.perf_counter() - t)
            silt_cpu.append(tuple(a - b for a, b in zip(cpu(resource.RUSAGE_CHILDREN), c)))

        con = duckdb.connect()
        con.execute(
            f"CREATE TABLE t AS SELECT * FROM read_parquet('{work}/objects/archive/**/*.parquet')"
        )
        (n,) = con.execute("SELECT count(*) FROM t").fetchone()
        assert n == records, (n, records)
        duck_secs, duck_cpu = [], []
        for i in range(ROUNDS):
            out = os.path.join(data, f"duckdb-{i}.parquet")
            t, c = time.perf_counter(), cpu(resource.RUSAGE_SELF)
            con.execute(f"COPY t TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
            duck_secs.append(time.perf_counter() - t)
            duck_cpu.append(tuple(a - b for a, b in zip(cpu(resource.RUSAGE_SELF), c)))

    mb = record_bytes / 1e6
    silt_best, duck_best = min(silt_secs), min(duck_secs)
    result = {
        "records": records,
        "payload": kind,
        "record_mb": round(mb, 1),
        "rounds": ROUNDS,
        "silt_archive_mb_per_sec": round(mb / silt_best, 1),
        "duckdb_copy_mb_per_sec": round(mb / duck_best, 1),
        "ratio_silt_over_duckdb": round(duck_best / silt_best, 2),
        "silt_secs": [round(s, 3) for s in silt_secs],
        "duckdb_secs": [round(s, 3) for s in duck_secs],
        # User CPU seconds (all threads), less sensitive than wall time to
        # how fast a virtual machine's host backs fresh memory, which shows
        # up as system time.
        "silt_user_cpu_secs": [round(u, 3) for u, _ in silt_cpu],
        "duckdb_user_cpu_secs": [round(u, 3) for u, _ in duck_cpu],
        "user_cpu_ratio_duckdb_over_silt": round(min(u for u, _ in duck_cpu) / min(u for u, _ in silt_cpu), 2),
        "silt_system_cpu_secs": [round(k, 3) for _, k in silt_cpu],
        "duckdb_system_cpu_secs": [round(k, 3) for _, k in duck_cpu],
        "note": "silt's time includes process start, reading the segments and the metadata "
                "commits; DuckDB's is the COPY of rows already in memory",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
