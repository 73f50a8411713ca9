"""One consumer-group member (confluent-kafka), run as its own process so a
test can SIGKILL it. Appends `partition offset` for every record it
processes to OUTFILE, commits synchronously every 50 records, when idle, and when its
partitions are revoked; on SIGTERM it closes (commits and leaves).

Usage: member.py NAME BOOTSTRAP GROUP TOPIC OUTFILE
"""

import signal
import sys
import time

from confluent_kafka import Consumer, KafkaException

name, bootstrap, group, topic, outfile = sys.argv[1:6]
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
c = Consumer({
    "bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
    "enable.auto.commit": False, "auto.offset.reset": "earliest",
    "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
    "max.poll.interval.ms": 20000,
})


def commit():
    try:
        c.commit(asynchronous=False)
    except KafkaException as e:
        # Nothing new to commit, or fenced by a rebalance: the next owner
        # starts from the last commit that was accepted.
        print(f"{name}: commit refused: {e}", flush=True)


c.subscribe([topic], on_revoke=lambda consumer, parts: commit())
out = open(outfile, "a")
n = 0
dirty = False
while not stop:
    m = c.poll(0.2)
    if m is None or m.error():
        if dirty:  # idle: commit the tail
            commit()
            dirty = False
        continue
    dirty = True
    time.sleep(0.001)  # the work
    out.write(f"{m.partition()} {m.offset()}\n")
    out.flush()
    n += 1
    if n % 50 == 0:
        commit()
commit()
c.close()
