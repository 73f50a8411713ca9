"""Archive throughput against DuckDB writing the same rows, in the same run.

    SILT_BIN=target/release/silt python tests/archive/bench_archive.py [records]

Produces `records` records of 1 KiB (random, incompressible) to a fresh
`silt dev`, stops it, and times `silt compactor --once` rewriting them to
Parquet. Then DuckDB, holding the same rows in memory, writes them with
`COPY … TO … (FORMAT parquet, COMPRESSION zstd)`. Both rates are MB/s of
record bytes (key + value); the ratio is Silt's over DuckDB's. Not a test:
a benchmark, run by hand.
"""

import json
import os
import random
import signal
import string
import subprocess
import sys
import tempfile
import time
import urllib.request

import duckdb


def post(url, body):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as res:
        return json.loads(res.read() or b"null")


def main():
    silt = os.environ["SILT_BIN"]
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    alphabet = string.ascii_letters + string.digits
    pool = "".join(random.choice(alphabet) for _ in range(1 << 20))
    with tempfile.TemporaryDirectory() as data:
        dev = subprocess.Popen(
            [silt, "dev", "--data-dir", data, "--listen", "127.0.0.1:0", "--archive", "false"],
            stdout=subprocess.PIPE, env={**os.environ, "SILT_LOG": "warn"},
        )
        url = dev.stdout.readline().decode().strip().removeprefix("silt listening on ")
        post(f"{url}/v1/topics", {"name": "bench", "partitions": 6})
        record_bytes = 0
        for start in range(0, records, 1000):
            batch = []
            for i in range(start, min(start + 1000, records)):
                at = random.randrange(len(pool) - 1024)
                key, value = f"k{i}", pool[at:at + 1024]
                record_bytes += len(key) + len(value)
                batch.append({"key": key, "value": value})
            post(f"{url}/v1/topics/bench/records", {"records": batch})
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=60)

        t = time.perf_counter()
        subprocess.run([silt, "compactor", "--once", "--merge-target-bytes", "0", "--data-dir", data], check=True,
                       capture_output=True, env={**os.environ, "SILT_LOG": "warn"})
        silt_secs = time.perf_counter() - t

        con = duckdb.connect()
        con.execute(
            f"CREATE TABLE t AS SELECT * FROM read_parquet('{data}/objects/archive/**/*.parquet')"
        )
        out = os.path.join(data, "duckdb.parquet")
        t = time.perf_counter()
        con.execute(f"COPY t TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
        duck_secs = time.perf_counter() - t
        (n,) = con.execute("SELECT count(*) FROM t").fetchone()
        assert n == records, (n, records)

    mb = record_bytes / 1e6
    result = {
        "records": records,
        "record_mb": round(mb, 1),
        "silt_archive_mb_per_sec": round(mb / silt_secs, 1),
        "duckdb_copy_mb_per_sec": round(mb / duck_secs, 1),
        "ratio_silt_over_duckdb": round(duck_secs / silt_secs, 2),
        "note": "silt's time includes process start, reading the segments and the metadata "
                "commits; DuckDB's is the COPY of rows already in memory",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
