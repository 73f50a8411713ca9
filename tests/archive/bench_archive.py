"""Archive throughput against DuckDB writing the same rows, in the same run.

    SILT_BIN=target/release/silt python tests/archive/bench_archive.py [records] [events|random|pool]

Produces `records` records of about 1 KiB (see `payloads`) to a fresh
`silt dev` and stops it. Then, on copies of its data directory, times
Silt's archive job rewriting them to Parquet two ways:

- warm: `silt bench --archive` runs the job over one copy after another in
  one process, as a running compactor does round after round;
- cold: `silt compactor --once`, a fresh process per copy, process start
  and first touches of memory included;

and, like for like with DuckDB, Silt's Parquet writing alone: the same
rows held in memory, encoded as the job encodes them and written to files
(`encode_from_memory`, also from `silt bench --archive`).

Then DuckDB, holding the same rows in memory, writes them with `COPY … TO
… (FORMAT parquet, COMPRESSION zstd)`, at its default zstd level and at
Silt's (1), which give files of about Silt's size. Every figure is the
best of `ROUNDS`; rates are MB/s of record bytes (key + value); ratios are
Silt's rate over DuckDB's. Not a test: a benchmark, run by hand.
"""

import base64
import glob
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
        pristine = os.path.join(data, "dev")

        def copies(n):
            """`n` fresh copies of the produced data, written back to disk
            (else their writeback would run during the timed rounds)."""
            dirs = [os.path.join(data, f"work-{i}") for i in range(n)]
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
                shutil.copytree(pristine, d)
            os.sync()
            return dirs

        quiet = {**os.environ, "SILT_LOG": "warn"}
        # Warm: one round more than counted, the first being the cold one.
        warm_dirs = copies(ROUNDS + 1)
        out = subprocess.run([silt, "bench", "--json", "--archive", *warm_dirs],
                             check=True, capture_output=True, env=quiet).stdout
        warm_report = json.loads(out)
        warm = warm_report["rounds"][1:]
        encode = warm_report["encode_from_memory"][1:]
        assert all(r["records"] == records for r in warm + encode), warm_report

        cold = []
        for _ in range(ROUNDS):
            (work,) = copies(1)
            t, c = time.perf_counter(), cpu(resource.RUSAGE_CHILDREN)
            subprocess.run([silt, "compactor", "--once", "--merge-target-bytes", "0", "--data-dir", work],
                           check=True, capture_output=True, env=quiet)
            user, system = (a - b for a, b in zip(cpu(resource.RUSAGE_CHILDREN), c))
            cold.append({"secs": time.perf_counter() - t, "user_cpu_secs": user, "system_cpu_secs": system})
        archive = glob.glob(f"{work}/objects/archive/**/*.parquet", recursive=True)
        silt_file_mb = sum(os.path.getsize(f) for f in archive) / 1e6

        con = duckdb.connect()
        # The columns of Silt's files, no more: not topic and partition
        # from their paths.
        con.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet({archive!r}, hive_partitioning = false)")
        (n,) = con.execute("SELECT count(*) FROM t").fetchone()
        assert n == records, (n, records)
        duckdb_runs = {}
        for level, option in (("default", ""), ("1", ", COMPRESSION_LEVEL 1")):
            runs = []
            for i in range(ROUNDS):
                out = os.path.join(data, f"duckdb-{level}-{i}.parquet")
                t, c = time.perf_counter(), cpu(resource.RUSAGE_SELF)
                con.execute(f"COPY t TO '{out}' (FORMAT parquet, COMPRESSION zstd{option})")
                user, system = (a - b for a, b in zip(cpu(resource.RUSAGE_SELF), c))
                runs.append({"secs": time.perf_counter() - t, "user_cpu_secs": user, "system_cpu_secs": system,
                             "file_mb": os.path.getsize(out) / 1e6})
            duckdb_runs[level] = runs

    mb = record_bytes / 1e6
    best = lambda runs, key="secs": min(r[key] for r in runs)  # noqa: E731
    side = lambda runs: {  # noqa: E731
        "mb_per_sec": round(mb / best(runs), 1),
        "secs": [round(r["secs"], 3) for r in runs],
        "user_cpu_secs": [round(r["user_cpu_secs"], 3) for r in runs],
        "system_cpu_secs": [round(r["system_cpu_secs"], 3) for r in runs],
    }
    result = {
        "records": records,
        "payload": kind,
        "record_mb": round(mb, 1),
        "rounds": ROUNDS,
        "silt_warm": side(warm),
        "silt_cold": side(cold),
        "silt_encode_from_memory": side(encode),
        "silt_file_mb": round(silt_file_mb, 2),
        "duckdb_default_level": {**side(duckdb_runs["default"]),
                                 "file_mb": round(duckdb_runs["default"][0]["file_mb"], 2)},
        "duckdb_level_1": {**side(duckdb_runs["1"]), "file_mb": round(duckdb_runs["1"][0]["file_mb"], 2)},
        # Silt's rate over DuckDB's, each at its best.
        "ratios": {
            f"{s}_over_duckdb_{d}": round(best(duckdb_runs[k]) / best(runs), 2)
            for s, runs in (("encode_from_memory", encode), ("warm", warm), ("cold", cold))
            for d, k in (("default_level", "default"), ("level_1", "1"))
        },
        "user_cpu_ratio_duckdb_level_1_over_encode_from_memory": round(
            best(duckdb_runs["1"], "user_cpu_secs") / best(encode, "user_cpu_secs"), 2),
        "note": "encode_from_memory and DuckDB both write rows held in memory to Parquet files; "
                "the job's rounds (warm, cold) also read and decode the segments and commit "
                "progress (cold: and start a process)",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
