"""One system: what Kafka clients write, HTTP reads byte for byte, and the
other way round; and an idempotent producer whose connections keep being
cut writes every record exactly once."""

import base64
import os
import time
import urllib.request

from conftest import DroppingProxy, http_records, post


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


def test_kafka_in_http_out(cluster):
    from confluent_kafka import Producer

    cluster.create_topic("k2h", 1)
    p = Producer({"bootstrap.servers": cluster.bootstrap(0), "linger.ms": 5,
                  "compression.type": "zstd"})
    sent = []
    for i in range(200):
        key = None if i % 7 == 0 else bytes([i, 0, 255, i % 13])
        value = None if i % 11 == 0 else bytes(range(i % 256)) + b"\xff\xfe"
        headers = [("h", bytes([i])), ("h", b""), ("empty", None)][: i % 4]
        ts = 1_700_000_000_000 + i * 1000
        p.produce("k2h", key=key, value=value, headers=headers, timestamp=ts)
        sent.append((key, value, headers, ts))
    assert p.flush(30) == 0
    got = http_records(cluster.agents[1].url, "k2h", 0)
    assert [r["offset"] for r in got] == list(range(200))
    for r, (key, value, headers, ts) in zip(got, sent):
        assert (r["key"], r["value"], r["timestamp"]) == (key, value, ts)
        assert r["headers"] == [(k, v) for k, v in headers]


def test_http_in_kafka_out(cluster):
    from confluent_kafka import Consumer, TopicPartition

    cluster.create_topic("h2k", 1)
    records = []
    for i in range(150):
        records.append({
            "partition": 0,
            "key": b64(bytes([255 - i % 256, i % 256])),
            "value": b64(bytes(range(i % 200)) + b"\x00\x80"),
            "headers": [{"key": "trace", "value": b64(bytes([i]))}] * (i % 3),
            "timestamp": 1_600_000_000_000 + i,
        })
    answer = post(f"{cluster.http}/v1/topics/h2k/records?encoding=base64", {"records": records})
    offsets = [o["offset"] for o in answer["offsets"]]
    c = Consumer({"bootstrap.servers": cluster.bootstrap(1), "group.id": "h2k",
                  "enable.auto.commit": False})
    c.assign([TopicPartition("h2k", 0, 0)])
    got = []
    while len(got) < len(records):
        m = c.poll(10)
        assert m is not None and not m.error(), m and m.error()
        got.append(m)
    c.close()
    for m, r, off in zip(got, records, offsets):
        assert m.offset() == off
        assert m.key() == base64.b64decode(r["key"])
        assert m.value() == base64.b64decode(r["value"])
        assert m.timestamp()[1] == r["timestamp"]
        want = [(h["key"], base64.b64decode(h["value"])) for h in r["headers"]]
        assert (m.headers() or []) == want


def test_idempotent_producer_through_cut_connections(cluster):
    from confluent_kafka import Producer

    proxy = DroppingProxy(every_ms=(500, 2500))
    try:
        agent = cluster.start("c", advertised=f"127.0.0.1:{proxy.port}")
        host, port = agent.kafka.rsplit(":", 1)
        proxy.target = (host, int(port))
        cluster.create_topic("idem", 4)
        p = Producer({
            "bootstrap.servers": f"127.0.0.1:{proxy.port}", "enable.idempotence": True,
            "linger.ms": 5, "batch.num.messages": 200, "retry.backoff.ms": 20,
            "reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 100,
            "partitioner": "murmur2_random",
        })
        errors = []
        n = int(os.environ.get("SILT_IDEM_RECORDS", 10_000))
        for i in range(n):
            p.produce("idem", key=f"k{i % 31}".encode(), value=f"{i}".encode(),
                      on_delivery=lambda e, m: e and errors.append(e))
            p.poll(0)
            if i % 250 == 0:
                time.sleep(0.2)  # spread the run over several cuts
        assert p.flush(180) == 0
        assert not errors, errors[:3]
        assert proxy.cuts >= 3, f"only {proxy.cuts} connections were cut"
        metrics = urllib.request.urlopen(f"{agent.url}/metrics", timeout=10).read().decode()
        dups = sum(float(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith("silt_produce_duplicates_total"))
        print(f"{proxy.cuts} connections cut; {dups:.0f} retried batches answered as duplicates")
    finally:
        proxy.stop()
    values = []
    for partition in range(4):
        got = http_records(cluster.http, "idem", partition, limit=n)
        seqs = [int(r["value"]) for r in got]
        by_key = {}
        for r, s in zip(got, seqs):
            assert s > by_key.get(r["key"], -1), "a key's records are out of order"
            by_key[r["key"]] = s
        values += seqs
    assert len(values) == len(set(values)), f"{len(values) - len(set(values))} duplicates"
    assert set(values) == set(range(n)), f"{n - len(set(values))} records lost"


def test_offsets_committed_over_http_resume_kafka_consumers(cluster):
    """A group's offsets are one thing, whichever protocol committed them."""
    from confluent_kafka import Consumer

    cluster.create_topic("resume", 1)
    post(f"{cluster.http}/v1/topics/resume/records",
         {"records": [{"partition": 0, "value": f"r{i}"} for i in range(20)]})
    post(f"{cluster.http}/v1/consumer-groups/resumers/offsets",
         {"offsets": [{"topic": "resume", "partition": 0, "offset": 12}]})
    c = Consumer({"bootstrap.servers": cluster.bootstrap(1), "group.id": "resumers",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["resume"])
    deadline = time.time() + 30
    m = None
    while m is None and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error():
            m = None
    assert m is not None, "the consumer never got a record"
    assert (m.offset(), m.value()) == (12, b"r12")
    c.close()
