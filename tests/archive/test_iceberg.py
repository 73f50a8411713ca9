"""pyiceberg reads the topic's Iceberg table through the same SQL catalog
(SQLite) the compactor commits to, and gets the same rows as DuckDB on the
archive's Parquet files; a compactor pass with nothing new commits nothing."""

import os
import signal
import subprocess
import urllib.request

import duckdb
from pyiceberg.catalog.sql import SqlCatalog

from conftest import PARTITIONS, TOPIC, post, silt_bin, value_hash


def load(archive):
    catalog = SqlCatalog("silt", uri=f"sqlite:///{archive['data'] / 'iceberg.db'}")
    return catalog.load_table(("silt", TOPIC))


def test_pyiceberg_reads_the_same_rows_as_duckdb(archive):
    table = load(archive)
    names = [f.name for f in table.schema().fields]
    assert names == ["offset", "timestamp", "key", "value", "headers", "partition"], names
    assert [f.source_id for f in table.spec().fields] == [table.schema().find_field("partition").field_id]
    rows = table.scan().to_arrow()
    assert rows.num_rows == archive["count"]
    iceberg_rows = sorted(zip(rows["partition"].to_pylist(), rows["offset"].to_pylist(),
                              rows["value"].to_pylist()))
    assert sum(value_hash(v) for _, _, v in iceberg_rows) == archive["hash_sum"]
    for p in range(PARTITIONS):
        offsets = [o for q, o, _ in iceberg_rows if q == p]
        assert offsets == list(range(archive["per_partition"][p])), f"partition {p} dense"

    duck = duckdb.connect().execute(
        f"""SELECT partition::INTEGER, "offset", value
            FROM read_parquet('{archive['root']}/**/*.parquet', hive_partitioning = true)"""
    ).fetchall()
    assert iceberg_rows == sorted((p, o, bytes(v)) for p, o, v in duck)

    # Partition pruning and offset statistics serve a narrow scan.
    narrow = table.scan(row_filter="partition = 1 and offset >= 10 and offset < 20").to_arrow()
    assert sorted(narrow["offset"].to_pylist()) == list(range(10, 20))
    assert set(narrow["partition"].to_pylist()) == {1}


def test_a_pass_with_nothing_new_commits_nothing(archive):
    before = load(archive)
    subprocess.run(
        [silt_bin(), "compactor", "--once", "--data-dir", str(archive["data"])],
        capture_output=True, text=True, env={**os.environ, "SILT_LOG": "warn"}, check=True,
    )
    after = load(archive)
    assert len(after.snapshots()) == len(before.snapshots()) == 1
    assert after.scan().to_arrow().num_rows == archive["count"]


def test_a_deleted_topics_table_and_files_are_reclaimed(tmp_path):
    env = {**os.environ, "SILT_LOG": "warn"}

    def dev():
        p = subprocess.Popen(
            [silt_bin(), "dev", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
             "--archive", "false", "--kafka-listen", "off"],
            stdout=subprocess.PIPE, env=env,
        )
        return p, p.stdout.readline().decode().strip().removeprefix("silt listening on ")

    def compact():
        subprocess.run([silt_bin(), "compactor", "--once", "--data-dir", str(tmp_path)],
                       capture_output=True, env=env, check=True)

    proc, url = dev()
    try:
        post(f"{url}/v1/topics", {"name": "gone", "partitions": 2, "config": {"archive.iceberg": True}})
        post(f"{url}/v1/topics/gone/records", {"records": [{"value": f"v{i}"} for i in range(100)]})
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    compact()
    catalog = SqlCatalog("silt", uri=f"sqlite:///{tmp_path / 'iceberg.db'}")
    assert catalog.load_table(("silt", "gone")).scan().to_arrow().num_rows == 100
    iceberg_dir = tmp_path / "objects" / "iceberg"
    assert any(iceberg_dir.rglob("*.metadata.json"))

    proc, url = dev()
    try:
        req = urllib.request.Request(f"{url}/v1/topics/gone", method="DELETE")
        urllib.request.urlopen(req, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    compact()
    assert not catalog.table_exists(("silt", "gone"))
    assert not [p for p in iceberg_dir.rglob("*") if p.is_file()], "metadata files reclaimed"
