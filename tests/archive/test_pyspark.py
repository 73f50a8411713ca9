"""PySpark reads the same folder with spark.read.parquet and agrees."""

import shutil

import pytest

from conftest import TOPIC, value_hash


def test_pyspark_reads_exactly_what_was_produced(archive):
    if shutil.which("java") is None:
        pytest.fail("PySpark needs Java: install a JRE (scripts/test installs openjdk-17-jre-headless)")
    from pyspark.sql import SparkSession, functions as F

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("silt-archive")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    try:
        df = spark.read.parquet(str(archive["root"]))
        assert {"offset", "timestamp", "key", "value", "headers", "topic", "partition"} <= set(
            df.columns
        )
        assert df.count() == archive["count"]
        per = df.groupBy("topic", "partition").agg(
            F.count("*").alias("n"), F.min("offset").alias("lo"), F.max("offset").alias("hi"),
            F.countDistinct("offset").alias("d"),
        ).collect()
        for r in per:
            assert r["topic"] == TOPIC
            n = archive["per_partition"][int(r["partition"])]
            assert (r["n"], r["lo"], r["hi"], r["d"]) == (n, 0, n - 1, n)
        values = [bytes(row["value"]) for row in df.select("value").collect()]
        assert sum(value_hash(v) for v in values) == archive["hash_sum"]
    finally:
        spark.stop()
