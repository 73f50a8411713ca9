"""Each real client creates a topic, produces 10,000 keyed records with
every compression codec it supports, and reads them back: all of them,
once, unchanged, each key's records in order, and each key on the partition
the Java client's partitioner (murmur2) picks."""

import asyncio
import json
import os
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import java_partition, kcat_bin

RECORDS = 10_000
PARTITIONS = 6
KEYS = 97


def sent_records(codec, n=RECORDS):
    """(key, value) pairs; values name their key and sequence number."""
    out = []
    for i in range(n):
        key = f"key-{i % KEYS}".encode()
        value = f"{codec}|{key.decode()}|{i // KEYS:06d}|".encode() + b"x" * (i % 64)
        out.append((key, value))
    return out


def check(received, sent, partitions=PARTITIONS):
    """`received`: (partition, offset, key, value) tuples."""
    values = [r[3] for r in received]
    assert len(values) == len(set(values)), "a record was read twice"
    assert set(values) == {v for _, v in sent}, "records lost or changed"
    last_seq = {}
    for partition, offset, key, value in sorted(received, key=lambda r: (r[0], r[1])):
        assert partition == java_partition(key, partitions), f"{key} is on partition {partition}"
        codec, k, seq, _ = value.split(b"|", 3)
        assert k == key
        prev = last_seq.get((codec, key), -1)
        assert int(seq) > prev, f"{key!r} out of order at {partition}/{offset}"
        last_seq[(codec, key)] = int(seq)


def create_topic_admin(bootstrap, name, partitions=PARTITIONS):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        f.result(timeout=30)


def test_confluent_kafka(cluster):
    from confluent_kafka import Consumer, Producer, TopicPartition

    bs = cluster.bootstrap(0)
    create_topic_admin(bs, "confluent")
    sent = []
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        p = Producer({
            "bootstrap.servers": bs, "compression.type": codec, "linger.ms": 5,
            "partitioner": "murmur2_random", "enable.idempotence": True,
        })
        errors = []
        batch = sent_records(codec)
        for key, value in batch:
            p.produce("confluent", key=key, value=value,
                      on_delivery=lambda e, m: e and errors.append(e))
            p.poll(0)
        assert p.flush(60) == 0
        assert not errors, errors[:3]
        sent += batch
    # Read back on the other agent.
    c = Consumer({"bootstrap.servers": cluster.bootstrap(1), "group.id": "readback",
                  "enable.auto.commit": False})
    c.assign([TopicPartition("confluent", p, 0) for p in range(PARTITIONS)])
    received = []
    while len(received) < len(sent):
        m = c.poll(10)
        assert m is not None, f"stalled after {len(received)} records"
        assert not m.error(), m.error()
        received.append((m.partition(), m.offset(), m.key(), m.value()))
    c.close()
    check(received, sent)


def test_kafka_python(cluster):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    bs = cluster.bootstrap(1)
    admin = KafkaAdminClient(bootstrap_servers=bs)
    admin.create_topics([NewTopic("kpython", PARTITIONS, 1)])
    admin.close()
    sent = []
    for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
        p = KafkaProducer(bootstrap_servers=bs, compression_type=codec, linger_ms=5)
        batch = sent_records(codec or "none")
        futures = [p.send("kpython", key=k, value=v) for k, v in batch]
        p.flush(60)
        for f in futures:
            f.get(timeout=30)
        p.close()
        sent += batch
    c = KafkaConsumer(bootstrap_servers=cluster.bootstrap(0), enable_auto_commit=False,
                      consumer_timeout_ms=10_000)
    c.assign([TopicPartition("kpython", p) for p in range(PARTITIONS)])
    c.seek_to_beginning()
    received = []
    for m in c:
        received.append((m.partition, m.offset, m.key, m.value))
        if len(received) == len(sent):
            break
    c.close()
    check(received, sent)


def test_aiokafka(cluster):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    cluster.create_topic("aio", PARTITIONS)

    async def run():
        sent = []
        for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
            p = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap(0),
                                 compression_type=codec, linger_ms=5, enable_idempotence=True)
            await p.start()
            batch = sent_records(codec or "none")
            futures = [await p.send("aio", key=k, value=v) for k, v in batch]
            await asyncio.gather(*futures)
            await p.stop()
            sent += batch
        c = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap(1), enable_auto_commit=False)
        await c.start()
        c.assign([TopicPartition("aio", p) for p in range(PARTITIONS)])
        await c.seek_to_beginning()
        received = []
        while len(received) < len(sent):
            got = await asyncio.wait_for(c.getmany(timeout_ms=1000), 15)
            for msgs in got.values():
                received += [(m.partition, m.offset, m.key, m.value) for m in msgs]
        await c.stop()
        check(received, sent)

    asyncio.run(run())


def test_kcat(cluster):
    kcat = kcat_bin()
    bs = cluster.bootstrap(0)
    cluster.create_topic("kcat", PARTITIONS)
    sent = []
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        batch = sent_records(codec)
        lines = b"".join(k + b"\t" + v + b"\n" for k, v in batch)
        subprocess.run(
            [kcat, "-P", "-b", bs, "-t", "kcat", "-K", "\t", "-z", codec,
             "-X", "partitioner=murmur2_random", "-X", "enable.idempotence=true"],
            input=lines, check=True, timeout=120,
        )
        sent += batch
    out = subprocess.run(
        [kcat, "-C", "-b", cluster.bootstrap(1), "-t", "kcat", "-o", "beginning", "-e",
         "-f", "%p\t%o\t%k\t%s\n"],
        capture_output=True, check=True, timeout=120,
    ).stdout
    received = []
    for line in out.splitlines():
        p, o, k, v = line.split(b"\t", 3)
        received.append((int(p), int(o), k, v))
    check(received, sent)


def test_kafkajs(cluster, tmp_path):
    modules = os.environ.get("SILT_KAFKAJS")
    if not modules or not Path(modules, "kafkajs").is_dir():
        pytest.fail(f"SILT_KAFKAJS must name a node_modules holding kafkajs (got {modules!r})")
    cluster.create_topic("kafkajs", PARTITIONS)
    script = Path(__file__).with_name("kafkajs_roundtrip.js")
    out = subprocess.run(
        [shutil.which("node") or "node", str(script), cluster.bootstrap(0),
         cluster.bootstrap(1), "kafkajs", str(RECORDS)],
        capture_output=True, timeout=180, env={**os.environ, "NODE_PATH": modules},
    )
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    report = json.loads(out.stdout.decode().strip().splitlines()[-1])
    sent = [(k.encode(), v.encode()) for k, v in report["sent"]]
    received = [(p, int(o), k.encode(), v.encode()) for p, o, k, v in report["received"]]
    check(received, sent)
