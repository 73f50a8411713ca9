"""A `silt dev` directory with known records, archived by `silt compactor --once`
(and committed to the topic's Iceberg table in the directory's catalog).

Every reader (DuckDB, PySpark, pyiceberg) must see exactly what the producer sent:
the count, dense offsets per partition, and the sum of a hash of each value.
"""

import json
import os
import signal
import subprocess
import urllib.request
import zlib

import pytest

TOPIC = "clicks"
PARTITIONS = 4
RECORDS = 5000


def silt_bin():
    path = os.environ.get("SILT_BIN")
    if not path or not os.path.exists(path):
        pytest.fail(f"SILT_BIN must name a built silt binary (got {path!r})")
    return path


def post(url, body):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.loads(res.read() or b"null")


def value_hash(v):
    """A hash both sides compute the same way: crc32 of the value's bytes."""
    return zlib.crc32(v)


@pytest.fixture(scope="session")
def archive(tmp_path_factory):
    """Produces RECORDS records, archives them; yields what was sent."""
    data = tmp_path_factory.mktemp("silt-archive")
    dev = subprocess.Popen(
        [silt_bin(), "dev", "--data-dir", str(data), "--listen", "127.0.0.1:0",
         "--archive", "false"],
        stdout=subprocess.PIPE,
        env={**os.environ, "SILT_LOG": "warn"},
    )
    try:
        url = dev.stdout.readline().decode().strip().removeprefix("silt listening on ")
        post(f"{url}/v1/topics", {"name": TOPIC, "partitions": PARTITIONS,
                                  "config": {"archive.iceberg": True}})
        sent = []
        for start in range(0, RECORDS, 500):
            batch = [{"key": f"user-{i % 97}", "value": f"click {i} " + "x" * (i % 50)}
                     for i in range(start, start + 500)]
            answer = post(f"{url}/v1/topics/{TOPIC}/records", {"records": batch})
            for rec, off in zip(batch, answer["offsets"]):
                sent.append((off["partition"], off["offset"], rec["value"].encode()))
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=60)
    out = subprocess.run(
        [silt_bin(), "compactor", "--once", "--data-dir", str(data)],
        capture_output=True, text=True, env={**os.environ, "SILT_LOG": "warn"}, check=True,
    )
    assert f"records: {RECORDS}" in out.stdout, out.stdout
    return {
        "data": data,
        "root": data / "objects" / "archive",
        "count": len(sent),
        "hash_sum": sum(value_hash(v) for _, _, v in sent),
        "per_partition": {p: sum(1 for q, _, _ in sent if q == p) for p in range(PARTITIONS)},
    }
