"""A real Redis Cluster for tests: six ``redis-server --cluster-enabled yes`` on loopback.

Three masters and three replicas (``redis-cli --cluster create ... --cluster-replicas 1``)
on free ports, each in a temporary directory of its own, with a short node timeout
(1,000 ms) so that a failover takes a few seconds. ``running_redis_cluster`` starts it
and waits until every node says ``cluster_state:ok`` and agrees on the slots; the
``redis_cluster`` fixture shares one per test session. Helpers SIGKILL a master (and
wait for its replica's promotion), bring a killed node back, and move slots with
``redis-cli --cluster reshard``.

Without ``redis-server`` (or ``redis-cli``) the tests that need one skip with the install
command, except under ``CI``, where it is a failure (as ``tests/redis_server.py`` does).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.redis_server import RESPValue, _read_reply, encode_command, redis_server_binary

STARTUP_TIMEOUT = 20.0
NODE_TIMEOUT_MS = 1000
INSTALL_HINT = (
    "redis-cli not found: install it (apt-get install redis-server, which brings "
    "redis-tools) to run the Redis Cluster tests"
)


def redis_cli_binary() -> str:
    """Path of ``redis-cli``; skips the test (fails it under ``CI``) when missing."""
    binary = shutil.which("redis-cli")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(INSTALL_HINT + " (CI is set, so this is a failure)", pytrace=False)
        pytest.skip(INSTALL_HINT)
    return binary


def cluster_ports(count: int) -> list[int]:
    """``count`` free ports whose cluster bus ports (``port + 10000``) are free too."""
    ports: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port + 10000 > 65535 or port in ports:
                sock.close()
                continue
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    sock.close()
                    continue
            held.append(sock)
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


@dataclass(frozen=True)
class ClusterNodeInfo:
    """One line of ``CLUSTER NODES``."""

    id: str
    port: int
    master: bool
    master_id: str | None
    failed: bool
    slots: tuple[tuple[int, int], ...]


class ClusterServer:
    """One ``redis-server --cluster-enabled yes`` process on ``127.0.0.1:port``."""

    def __init__(self, binary: str, workdir: Path, port: int, *, appendonly: bool) -> None:
        self.binary = binary
        self.port = port
        self.workdir = workdir / f"node-{port}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.logfile = self.workdir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": str(NODE_TIMEOUT_MS),
            "appendonly": "yes" if self.appendonly else "no",
            "appendfsync": "everysec",
            "save": "",
            "dir": str(self.workdir),
            "daemonize": "no",
            "loglevel": "warning",
            "logfile": str(self.logfile),
        }
        argv = [self.binary]
        for name, value in options.items():
            argv += [f"--{name}", value]
        self._process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )

    def wait_answering(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"redis-server {self.port} exited:\n{self.logfile.read_text()}")
            try:
                if self.command("PING") == b"+PONG":
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"redis-server {self.port} did not answer in {timeout} s")

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients or to the other nodes."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)
            self._process.kill()
            self._process.wait(5)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def command(self, *args: str | bytes, timeout: float = 2.0) -> RESPValue:
        """One command on a fresh connection; simple strings and errors keep their prefix."""
        encoded = tuple(a.encode() if isinstance(a, str) else a for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(encode_command(*encoded))
            with sock.makefile("rb", buffering=0) as reader:
                return _read_reply(reader)

    def info(self, command: str = "INFO") -> dict[str, str]:
        """``CLUSTER INFO`` (``command="CLUSTER"``) or ``INFO`` as a dict."""
        reply = self.command("CLUSTER", "INFO") if command == "CLUSTER" else self.command("INFO")
        assert isinstance(reply, bytes), reply
        fields: dict[str, str] = {}
        for line in reply.decode().splitlines():
            name, _, value = line.partition(":")
            if value:
                fields[name] = value.strip()
        return fields

    def nodes(self) -> list[ClusterNodeInfo]:
        reply = self.command("CLUSTER", "NODES")
        assert isinstance(reply, bytes), reply
        found: list[ClusterNodeInfo] = []
        for line in reply.decode().splitlines():
            parts = line.split()
            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
            flags = parts[2].split(",")
            slots: list[tuple[int, int]] = []
            for item in parts[8:]:
                if item.startswith("["):
                    continue  # a slot being migrated
                first, _, last = item.partition("-")
                slots.append((int(first), int(last or first)))
            found.append(
                ClusterNodeInfo(
                    id=parts[0],
                    port=port,
                    master="master" in flags,
                    master_id=None if parts[3] == "-" else parts[3],
                    failed="fail" in flags or "fail?" in flags,
                    slots=tuple(slots),
                )
            )
        return found


class RedisCluster:
    """Six cluster nodes (three masters, three replicas) and the tools to upset them."""

    def __init__(
        self, workdir: Path, *, appendonly: bool = False, masters: int = 3, replicas: int = 1
    ) -> None:
        binary = redis_server_binary()
        self.cli = redis_cli_binary()
        self.replicas = replicas
        ports = cluster_ports(masters * (1 + replicas))
        self.servers = [ClusterServer(binary, workdir, p, appendonly=appendonly) for p in ports]
        self.created = False

    @property
    def url(self) -> str:
        """The startup nodes, comma-separated (``RedisBroker(url, cluster=True)``)."""
        return ",".join(f"redis://{server.address}" for server in self.servers)

    def server(self, port: int) -> ClusterServer:
        return next(server for server in self.servers if server.port == port)

    def start(self) -> None:
        """Start every node, create the cluster, and wait until it is whole."""
        for server in self.servers:
            server.start()
        for server in self.servers:
            server.wait_answering()
        if not self.created:
            argv = [self.cli, "--cluster", "create"]
            argv += [server.address for server in self.servers]
            argv += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
            result = subprocess.run(argv, capture_output=True, timeout=60, check=False)
            if result.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{result.stdout!r}")
            self.created = True
        self.wait_healthy()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def alive(self) -> list[ClusterServer]:
        return [server for server in self.servers if server.running]

    def topology(self) -> list[ClusterNodeInfo]:
        return self.alive()[0].nodes()

    def masters(self) -> list[ClusterNodeInfo]:
        return [node for node in self.topology() if node.master and not node.failed]

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Every running node: ``cluster_state:ok``, the same view of every slot, no node
        marked failed, and every replica's link to its master up."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                last = self._health()
                if not last:
                    return
            except (OSError, AssertionError, ValueError, IndexError) as exc:
                last = repr(exc)
            time.sleep(0.05)
        raise TimeoutError(f"the cluster did not become healthy in {timeout} s: {last}")

    def _health(self) -> str:
        views = set()
        for server in self.alive():
            if server.info("CLUSTER").get("cluster_state") != "ok":
                return f"{server.port}: cluster_state is not ok"
            nodes = server.nodes()
            if any(node.failed for node in nodes if self._running_port(node.port)):
                return f"{server.port} sees a running node as failed"
            views.add(tuple(sorted((n.port, n.slots) for n in nodes if n.master and n.slots)))
            info = server.info()
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return f"{server.port}: replica link down"
        if len(views) != 1:
            return "the nodes disagree on the slots"
        return ""

    def _running_port(self, port: int) -> bool:
        return any(server.port == port and server.running for server in self.servers)

    # -- faults ----------------------------------------------------------------------

    def master_of(self, key: str) -> ClusterNodeInfo:
        """The master that owns ``key``'s slot."""
        reply = self.alive()[0].command("CLUSTER", "KEYSLOT", key)
        assert isinstance(reply, int), reply
        for node in self.masters():
            if any(first <= reply <= last for first, last in node.slots):
                return node
        raise LookupError(f"no master owns slot {reply}")

    def kill_master(self, node: ClusterNodeInfo) -> ClusterServer:
        """SIGKILL the master ``node``; return its server (``revive`` brings it back)."""
        assert node.master, node
        server = self.server(node.port)
        server.kill()
        return server

    def wait_failover(self, killed: ClusterNodeInfo, timeout: float = STARTUP_TIMEOUT) -> int:
        """Wait until a replica of ``killed`` is a master with its slots and the cluster
        says ok; return its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                for node in self.masters():
                    if node.slots == killed.slots and node.port != killed.port:
                        states = {s.info("CLUSTER").get("cluster_state") for s in self.alive()}
                        if states == {"ok"}:
                            return node.port
            except (OSError, AssertionError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"no replica of {killed.port} took over in {timeout} s")

    def revive(self, server: ClusterServer, timeout: float = 3 * STARTUP_TIMEOUT) -> None:
        """Start a killed node again (it rejoins as a replica) and wait for a whole cluster.

        Longer than a start: the node reloads its AOF, learns it lost its slots and
        syncs from its new master while the machine runs other tests (once, in CI, a
        node still said ``cluster_state`` was not ok 20 s after a revive)."""
        server.start()
        server.wait_answering()
        self.wait_healthy(timeout)

    def reshard(self, from_port: int, to_port: int, slots: int, timeout: float = 60.0) -> None:
        """``redis-cli --cluster reshard``: move ``slots`` slots between two masters."""
        ids = {node.port: node.id for node in self.topology()}
        argv = [self.cli, "--cluster", "reshard", self.server(to_port).address]
        argv += ["--cluster-from", ids[from_port], "--cluster-to", ids[to_port]]
        argv += ["--cluster-slots", str(slots), "--cluster-yes", "--cluster-pipeline", "100"]
        result = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster reshard failed:\n{result.stdout!r}")
        self.wait_healthy()

    def three_masters(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Make the cluster three masters with slots again, if a test left two (a reshard
        that moves every slot of one master away: Redis makes the emptied master a
        replica). A failover needs the votes of a majority of the masters with slots,
        which one of two is not. A replica of the master with the most turns into an
        empty master (``CLUSTER RESET SOFT``, ``MEET``), takes half of that master's
        slots, and gets one of its replicas."""
        topology = self.topology()
        if sum(1 for node in topology if node.master and node.slots) >= 3:
            return
        replicas = Counter(node.master_id for node in topology if not node.master)
        donor_id = replicas.most_common(1)[0][0]
        donor = next(node for node in topology if node.id == donor_id)
        spare = next(node for node in topology if node.master_id == donor_id)
        server = self.server(spare.port)
        server.command("CLUSTER", "RESET", "SOFT")
        server.command("CLUSTER", "MEET", "127.0.0.1", str(donor.port))
        deadline = time.monotonic() + timeout
        while not all(
            any(node.id == spare.id and node.master for node in other.nodes())
            for other in self.alive()
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the other nodes did not meet the new master")
            time.sleep(0.05)
        self.wait_healthy()
        self.reshard(
            donor.port, spare.port, sum(last - first + 1 for first, last in donor.slots) // 2
        )
        extra = next(node for node in self.topology() if node.master_id == donor_id)
        self.server(extra.port).command("CLUSTER", "REPLICATE", spare.id)
        self.wait_healthy()


@contextmanager
def running_redis_cluster(
    workdir: Path, *, appendonly: bool = False, masters: int = 3, replicas: int = 1
) -> Iterator[RedisCluster]:
    """Start a fresh cluster and tear it down afterwards."""
    cluster = RedisCluster(workdir, appendonly=appendonly, masters=masters, replicas=replicas)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One cluster (AOF on) for the session; tests that break it leave it whole again."""
    with running_redis_cluster(tmp_path_factory.mktemp("redis-cluster"), appendonly=True) as c:
        yield c
