"""Consumer groups with real clients, members spread over two agents."""

import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path

import pytest

from conftest import get

PARTITIONS = 12
RECORDS = 12_000


def group(url, name):
    """The group as Silt describes it, or an empty one before it exists."""
    try:
        return get(f"{url}/v1/consumer-groups/{name}")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return {"members": [], "partitions": []}
        raise


def produce(bootstrap, topic, n):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, key=f"k{i % 101}".encode(), value=f"v{i}".encode())
        p.poll(0)
    assert p.flush(60) == 0


class CommitWatcher(threading.Thread):
    """Polls the group's committed offsets over HTTP; fails on any regression."""

    def __init__(self, url, group):
        super().__init__(daemon=True)
        self.url, self.group = url, group
        self.seen = {}
        self.regressions = []
        self.done = False

    def run(self):
        while not self.done:
            try:
                g = get(f"{self.url}/v1/consumer-groups/{self.group}")
            except Exception:
                time.sleep(0.1)
                continue
            for p in g["partitions"]:
                c = p["committed_offset"]
                key = (p["topic"], p["partition"])
                if c is not None:
                    if c < self.seen.get(key, -1):
                        self.regressions.append((key, self.seen[key], c))
                    self.seen[key] = max(c, self.seen.get(key, -1))
            time.sleep(0.1)


def test_group_survives_a_leave_and_a_kill(cluster, tmp_path):
    """3 members (2 agents) share 12 partitions; one leaves, one is
    SIGKILLed. Every record is processed, no commit moves backwards, and
    the group ends with no lag."""
    cluster.create_topic("work", PARTITIONS)
    produce(cluster.bootstrap(0), "work", RECORDS)
    script = Path(__file__).with_name("member.py")
    members = {}
    for name, agent in [("m1", 0), ("m2", 1), ("m3", 0)]:
        out = tmp_path / f"{name}.out"
        members[name] = (subprocess.Popen(
            [sys.executable, str(script), name, cluster.bootstrap(agent), "workers", "work",
             str(out)]), out)
    watcher = CommitWatcher(cluster.agents[1].url, "workers")
    watcher.start()
    try:
        # Let all three get partitions and work a while.
        deadline = time.time() + 30
        while time.time() < deadline:
            g = group(cluster.http, "workers")
            owners = {p["owner"] for p in g["partitions"] if p["owner"]}
            if len(owners) == 3:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"three members never shared the partitions: {g}")
        time.sleep(1)
        members["m2"][0].terminate()  # graceful: commits and leaves
        members["m2"][0].wait(timeout=30)
        time.sleep(1)
        members["m3"][0].kill()  # its partitions return after its session
        members["m3"][0].wait()
        deadline = time.time() + 90
        while time.time() < deadline:
            g = group(cluster.http, "workers")
            if g["partitions"] and all(p["lag"] == 0 for p in g["partitions"]):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the group never caught up: {g}")
    finally:
        watcher.done = True
        for proc, _ in members.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    processed = set()
    for _, out in members.values():
        for line in out.read_text().splitlines():
            p, o = line.split()
            processed.add((int(p), int(o)))
    hwm = {p["partition"]: p["high_watermark"] for p in g["partitions"]}
    expected = {(p, o) for p, n in hwm.items() for o in range(n)}
    assert sum(hwm.values()) == RECORDS
    assert expected <= processed, f"{len(expected - processed)} records never processed"
    assert not watcher.regressions, watcher.regressions[:5]
    # The group as Silt shows it: the one member left owns everything.
    owners = {p["owner"] for p in g["partitions"]}
    assert len(owners) == 1 and None not in owners, owners
    assert [m for m in g["members"]], g


def test_a_fenced_member_cannot_commit(cluster):
    """A member dropped from the group (it stopped polling past its
    rebalance timeout) has its commit refused, and the offset stays."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import CommitFailedError
    from kafka.structs import OffsetAndMetadata

    cluster.create_topic("fence", 2)
    produce(cluster.bootstrap(0), "fence", 100)
    common = dict(group_id="fenced", enable_auto_commit=False, auto_offset_reset="earliest",
                  session_timeout_ms=6000, heartbeat_interval_ms=500)
    x = KafkaConsumer("fence", bootstrap_servers=cluster.bootstrap(0),
                      max_poll_interval_ms=2000, **common)
    deadline = time.time() + 30
    while not x.assignment() and time.time() < deadline:
        x.poll(timeout_ms=200)
    assert x.assignment(), "x never joined"
    x.commit({TopicPartition("fence", 0): OffsetAndMetadata(3, "", -1)})
    # y joins on the other agent; x stops polling, so it never rejoins.
    y = KafkaConsumer("fence", bootstrap_servers=cluster.bootstrap(1),
                      max_poll_interval_ms=20000, **common)
    deadline = time.time() + 30
    while len(y.assignment()) < 2 and time.time() < deadline:
        y.poll(timeout_ms=200)
    assert len(y.assignment()) == 2, "y never took over x's partitions"
    with pytest.raises(CommitFailedError):
        x.commit({TopicPartition("fence", 0): OffsetAndMetadata(50, "", -1)})
    g = get(f"{cluster.http}/v1/consumer-groups/fenced")
    committed = {p["partition"]: p["committed_offset"] for p in g["partitions"]}
    assert committed[0] == 3, committed
    y.close()
    x.close(autocommit=False)


def test_kafka_groups_show_over_http(cluster):
    """A Kafka group's members, assignments and lag, as `GET
    /v1/consumer-groups/{g}` shows them."""
    from confluent_kafka import Consumer

    cluster.create_topic("shown", 3)
    produce(cluster.bootstrap(0), "shown", 30)
    c = Consumer({"bootstrap.servers": cluster.bootstrap(1), "group.id": "shown-group",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["shown"])
    got = 0
    deadline = time.time() + 30
    while got < 10 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
            last = m
    c.commit(message=last, asynchronous=False)
    g = get(f"{cluster.http}/v1/consumer-groups/shown-group")
    assert g["protocol"] == "kafka"
    assert len(g["members"]) == 1
    member = g["members"][0]
    owned = sorted(a["partition"] for a in member["assignments"])
    assert owned == [0, 1, 2]
    part = {p["partition"]: p for p in g["partitions"]}[last.partition()]
    assert part["committed_offset"] == last.offset() + 1
    assert part["lag"] == part["high_watermark"] - last.offset() - 1
    c.close()
