"""Real Kafka clients against real Silt agents (the external suite).

Each test gets a fresh cluster: two `silt agent` processes on loopback
(ephemeral ports) sharing one SQLite metadata file and one object-store
directory, each with its HTTP and Kafka listeners. Nothing leaves 127.0.0.1.
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest


def silt_bin():
    path = os.environ.get("SILT_BIN")
    if not path or not os.path.exists(path):
        pytest.fail(f"SILT_BIN must name a built silt binary (got {path!r})")
    return path


class Agent:
    """One `silt agent` process: its HTTP URL and Kafka bootstrap address."""

    def __init__(self, data, name, advertised=None):
        cmd = [
            silt_bin(), "agent",
            "--object-store", f"file://{data}/objects",
            "--metadata", f"sqlite://{data}/meta.db",
            "--listen", "127.0.0.1:0",
            "--kafka-listen", "127.0.0.1:0",
            "--state-dir", str(data / f"state-{name}"),
            "--flush-interval-ms", "5",
        ]
        if advertised:
            cmd += ["--kafka-advertised", advertised]
        self.log = open(data / f"{name}.log", "wb")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self.log,
            env={**os.environ, "SILT_LOG": os.environ.get("SILT_LOG", "warn")},
        )
        self.url = self._line().removeprefix("silt listening on ")
        self.kafka = self._line().removeprefix("silt kafka listening on ")
        self.name = name

    def _line(self):
        line = self.proc.stdout.readline().decode().strip()
        if not line:
            raise RuntimeError(f"agent exited early; see its log ({self.log.name})")
        return line

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Cluster:
    def __init__(self, data):
        self.data = data
        self.agents = []

    def start(self, name, advertised=None):
        a = Agent(self.data, name, advertised)
        self.agents.append(a)
        return a

    @property
    def http(self):
        return self.agents[0].url

    def bootstrap(self, i=0):
        return self.agents[i].kafka

    def create_topic(self, name, partitions):
        post(f"{self.http}/v1/topics", {"name": name, "partitions": partitions})

    def stop(self):
        for a in self.agents:
            a.stop()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    c.start("a")
    c.start("b")
    try:
        yield c
    finally:
        c.stop()


def post(url, body):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.loads(res.read() or b"null")


def get(url):
    with urllib.request.urlopen(url, timeout=30) as res:
        return json.loads(res.read())


def http_records(url, topic, partition, offset=0, limit=10_000):
    """Every record of a partition from `offset`, over HTTP, bytes decoded."""
    out = []
    while len(out) < limit:
        page = get(
            f"{url}/v1/topics/{topic}/partitions/{partition}/records"
            f"?offset={offset}&max_records=1000&encoding=base64"
        )
        if not page["records"]:
            return out
        for r in page["records"]:
            dec = lambda v: None if v is None else base64.b64decode(v)
            out.append({
                "offset": r["offset"],
                "timestamp": r["timestamp"],
                "key": dec(r.get("key")),
                "value": dec(r.get("value")),
                "headers": [(h["key"], dec(h.get("value"))) for h in r.get("headers", [])],
            })
        offset = page["next_offset"]
    return out


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's default partitioner)."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    i = 0
    while length - i >= 4:
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
        i += 4
    rest = length - i
    if rest == 3:
        h ^= data[i + 2] << 16
    if rest >= 2:
        h ^= data[i + 1] << 8
    if rest >= 1:
        h ^= data[i]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def java_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class DroppingProxy:
    """A loopback TCP proxy that cuts every connection after a random
    number of bytes or milliseconds: mid-request, mid-answer, both ways."""

    def __init__(self, seed=7, every_ms=(50, 400)):
        import random

        self.rng = random.Random(seed)
        self.every_ms = every_ms
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target = None
        self.cuts = 0
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.target is None:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            life = self.rng.uniform(*self.every_ms) / 1000
            threading.Thread(target=self._pipe, args=(client, upstream, life), daemon=True).start()

    def _pipe(self, a, b, life):
        deadline = time.monotonic() + life

        def pump(src, dst):
            try:
                while time.monotonic() < deadline:
                    src.settimeout(max(0.01, deadline - time.monotonic()))
                    try:
                        data = src.recv(65536)
                    except socket.timeout:
                        continue
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        t = threading.Thread(target=pump, args=(b, a), daemon=True)
        t.start()
        pump(a, b)
        t.join()
        a.close()
        b.close()
        self.cuts += 1

    def stop(self):
        self.stopped = True
        self.listener.close()


def kcat_bin():
    path = shutil.which("kcat")
    if not path:
        pytest.fail("kcat is not installed (scripts/test installs Debian's kcat)")
    return path
