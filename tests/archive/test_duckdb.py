"""DuckDB reads the archive as Hive-partitioned Parquet, as is."""

import duckdb

from conftest import TOPIC, value_hash


def test_duckdb_reads_exactly_what_was_produced(archive):
    con = duckdb.connect()
    rel = con.sql(
        f"SELECT * FROM read_parquet('{archive['root']}/**/*.parquet', hive_partitioning = true)"
    )
    columns = rel.columns
    assert columns[:5] == ["offset", "timestamp", "key", "value", "headers"], columns
    assert "topic" in columns and "partition" in columns, "from the path"
    rows = con.execute(
        f"""SELECT topic, partition::INTEGER AS p, count(*), min("offset"), max("offset"),
                   count(DISTINCT "offset")
            FROM read_parquet('{archive['root']}/**/*.parquet', hive_partitioning = true)
            GROUP BY ALL ORDER BY p"""
    ).fetchall()
    assert sum(r[2] for r in rows) == archive["count"]
    for topic, p, n, lo, hi, distinct in rows:
        assert topic == TOPIC
        assert n == archive["per_partition"][p]
        assert (lo, hi, distinct) == (0, n - 1, n), f"offsets of {p} are dense"
    values = con.execute(
        f"SELECT value FROM read_parquet('{archive['root']}/**/*.parquet', hive_partitioning = true)"
    ).fetchall()
    assert sum(value_hash(bytes(v[0])) for v in values) == archive["hash_sum"]
    # The timestamp is a real UTC instant (microseconds), usable in SQL.
    newest = con.execute(
        f"SELECT max(timestamp) > TIMESTAMPTZ '2020-01-01' FROM "
        f"read_parquet('{archive['root']}/**/*.parquet', hive_partitioning = true)"
    ).fetchone()[0]
    assert newest
