"""`limelight up`: run the whole platform on one machine, keep it running, and take all of it down again.

- Every child (the six services and, unless `RAY_ADDRESS` names a cluster, a local Ray
  head) starts in its own process group, so stopping kills whatever the child spawned
  too (Ray's raylet, GCS and workers) and nothing outlives the supervisor.
- The local Ray head listens on loopback only, on free ports, with token auth
  (`libs.ray_cluster`), so two platforms run side by side on one machine.
- A child that dies is restarted after a backoff that doubles with each recent crash
  (`RestartPolicy`); one that keeps crashing is given up on and reported, while the
  others keep serving. Every crash, restart and give-up is printed.
- With TLS on (`LIMELIGHT_TLS`, the default) the development PKI is made first
  (`prepare_transport`); each service gets its port for end users and a free mesh port
  for mutual TLS, and every service is told where the others' mesh ports are. The
  supervisor holds every service port (`reserve_port`) from before Ray starts, so no
  outgoing connection is handed one while the services come up or restart.
- When `LIMELIGHT_GIFTS_ROOM_BUS` names a Redis on this machine's loopback
  (`redis://127.0.0.1:N`) and nothing listens there, Debian's `redis-server` is started
  first (loopback only, nothing persisted) as the LIVE rooms' bus.
- **Replicas** (`Replicas`, `limelight up --replicas gifts=2,shop=2`): a service runs as N
  processes, each on ports of its own, over one PostgreSQL. Every client (the other
  services, and whoever dials the printed target) spreads its calls over them with gRPC's
  round-robin balancing through a target that names them all (`ipv4:a:p1,a:p2`). With
  replicas and no `LIMELIGHT_DATABASE_URL`, or with `--database postgres`, the platform
  starts its own PostgreSQL (`libs.storage.postgres_cluster`: `<data>/postgres`, or under the
  `postgres` user's home when we are root; loopback only, SCRAM password); gifts replicas
  share a platform-started Redis as the rooms' bus.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs import ray_cluster
from libs.kit import config
from libs.kit.pki import ensure_dev_pki, pki_files
from libs.kit.transport import Transport
from libs.ports import LOOPBACK, free_port, port_open, reserve_port
from libs.storage.database import DATABASE_URL_ENV
from libs.storage.postgres_cluster import PostgresCluster
from tools.repository import repository_root

# What the services use, started before them and stopped after them.
INFRASTRUCTURE = frozenset({"ray", "redis", "postgres"})

SERVICE_START_TIMEOUT = 60.0
STOP_GRACE = 15.0
WATCH_INTERVAL = 0.2
HEALTH_PROBE_TIMEOUT = 0.5

Say = Callable[[str], None]


@dataclass(frozen=True)
class RestartPolicy:
    """How long to wait before restarting a crashed child, and when to stop trying.

    The n-th crash within `window_s` waits `first_backoff_s * 2**(n-1)` (at most
    `max_backoff_s`); the `max_crashes`-th within the window gives up.
    """

    first_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_crashes: int = 5
    window_s: float = 60.0

    def next_delay(self, crash_times: Sequence[float], now: float) -> float | None:
        """Seconds until the next start after the latest crash, or None: give up."""
        recent = sum(1 for crashed in crash_times if now - crashed <= self.window_s)
        if recent >= self.max_crashes:
            return None
        return min(self.max_backoff_s, self.first_backoff_s * 2.0 ** max(0, recent - 1))


class ChildState(Enum):
    STARTING = "starting"
    SERVING = "serving"
    WAITING_TO_RESTART = "waiting to restart"
    GIVEN_UP = "given up"


@dataclass
class Child:
    name: str
    endpoint: str
    command: list[str]
    env: dict[str, str]
    is_serving: Callable[[], bool]
    quiet: bool = False  # Ray's head logs to its session directory; a service's stderr shows here
    process: subprocess.Popen[bytes] | None = None
    state: ChildState = ChildState.STARTING
    crash_times: list[float] = field(default_factory=list)
    restart_at: float = 0.0

    def spawn(self) -> None:
        self.process = subprocess.Popen(
            self.command, env=self.env, start_new_session=True, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if self.quiet else None,
        )
        self.state = ChildState.STARTING

    def exit_status(self) -> int | None:
        """The exit status if the process ended (negative: killed by that signal)."""
        return None if self.process is None else self.process.poll()


_SHORT_TEMP_ROOT = "/tmp" if Path("/tmp").is_dir() else None

# Each keeps state in its own process that replicas would not share: ranking's model and
# index (services/ranking/README.md).
SINGLE_PROCESS_SERVICES = frozenset({"ranking"})


@dataclass(frozen=True)
class Replicas:
    """How many processes each service runs as (1 unless named)."""

    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Replicas:
        """`gifts=2,shop=2` (empty: one of each)."""
        counts: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            service, _, count = item.partition("=")
            if service not in config.SERVICES:
                raise ValueError(f"unknown service {service!r} in --replicas; choose from {', '.join(config.SERVICES)}")
            if not count.isdigit() or int(count) < 1:
                raise ValueError(f"--replicas {item!r}: the count must be a whole number of at least 1")
            if int(count) > 1 and service in SINGLE_PROCESS_SERVICES:
                raise ValueError(f"{service} runs as one process: its model lives in process memory")
            counts[service] = int(count)
        return cls(counts)

    def of(self, service: str) -> int:
        return self.counts.get(service, 1)

    @property
    def any(self) -> bool:
        return any(count > 1 for count in self.counts.values())


@dataclass
class Platform:
    data_root: Path
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    replicas: Replicas = field(default_factory=Replicas)
    postgres: bool = False
    """Run every store on PostgreSQL even without replicas."""
    children: list[Child] = field(default_factory=list)
    ray_address: str = ""
    _ray_temp_dir: Path | None = None
    _postgres: PostgresCluster | None = None

    def start(self, say: Say) -> None:
        transport = prepare_transport(self.data_root)
        env = {**os.environ, "LIMELIGHT_DATA_DIR": str(self.data_root)}
        # Before Ray opens its many connections: every port any replica binds.
        ports = replica_environments(env, self.replicas, tls=transport.tls)
        env.update(ports.targets)
        if (self.postgres or self.replicas.any) and not env.get(DATABASE_URL_ENV):
            env[DATABASE_URL_ENV] = self._start_postgres(env)
            assert self._postgres is not None
            say(f"{'postgres':<11} {env[DATABASE_URL_ENV].rsplit('@', 1)[1]:<22} every store (a cluster in "
                f"{self._postgres.root}, loopback only)")
        if self.replicas.of("gifts") > 1 and not env.get("LIMELIGHT_GIFTS_ROOM_BUS"):
            env["LIMELIGHT_GIFTS_ROOM_BUS"] = f"redis://127.0.0.1:{free_port()}"
        self.ray_address = os.environ.get("RAY_ADDRESS", "")
        if self.ray_address:
            say(f"joining the Ray cluster at {self.ray_address}")
        else:
            env.update(ray_cluster.local_head_environment(self.data_root))
            self.ray_address = self._start_ray_head(env)
            say(f"{'ray':<11} {self.ray_address:<22} local head (loopback, token auth)")
        env["RAY_ADDRESS"] = self.ray_address
        redis_port = local_redis_port(env.get("LIMELIGHT_GIFTS_ROOM_BUS", ""))
        if redis_port is not None and not port_open(redis_port):
            self._start_redis(env, redis_port)
            say(f"{'redis':<11} {f'127.0.0.1:{redis_port}':<22} LIVE rooms' bus (Redis Streams, loopback)")
        services = [
            Child(
                name=replica.name,
                endpoint=replica.endpoint,
                command=[sys.executable, "-m", "tools.cli", "serve", replica.service],
                env={**env, **replica.ports},
                is_serving=_health_probe(transport, replica.service, replica.endpoint),
            )
            for replica in ports.replicas
        ]
        for child in services:
            child.spawn()
            self.children.append(child)
        for child, replica in zip(services, ports.replicas, strict=True):
            self._wait_until_serving(child)
            child.state = ChildState.SERVING
            say(f"{child.name:<11} {child.endpoint:<22} SERVING {_transport_note(transport, replica)}")
        for service in config.SERVICES:
            if self.replicas.of(service) > 1:
                say(f"{service}: {self.replicas.of(service)} replicas, round robin at {env[_target_variable(service)]}")
        if transport.tls:
            say(f"TLS: clients verify the services with the CA certificate {transport.pki.ca_certificate}")

    def _start_ray_head(self, env: dict[str, str]) -> str:
        gcs_port = free_port()
        # mkdtemp: private (0700) and short, since Ray puts Unix sockets below it (108-byte limit);
        # directly under /tmp, as a TMPDIR can be long (Bazel's per-test one is).
        temp_dir = self._ray_temp_dir = Path(tempfile.mkdtemp(prefix="limelight-ray-", dir=_SHORT_TEMP_ROOT))
        address = f"{LOOPBACK}:{gcs_port}"
        head = Child(
            name="ray",
            endpoint=address,
            command=ray_cluster.head_command(gcs_port=gcs_port, client_server_port=free_port(), temp_dir=temp_dir),
            env=env,
            # The file alone would also be there after a crash, from before it.
            is_serving=lambda: ray_cluster.head_started(temp_dir) and port_open(gcs_port),
            quiet=True,
        )
        head.spawn()
        self.children.append(head)
        self._wait_until_serving(head)
        head.state = ChildState.SERVING
        return address

    def _start_postgres(self, env: dict[str, str]) -> str:
        """The platform's own PostgreSQL, made on first use; its URL."""
        cluster = self._postgres = PostgresCluster.for_platform(self.data_root, free_port())
        cluster.initialise()
        child = Child(
            name="postgres",
            endpoint=f"127.0.0.1:{cluster.port}",
            command=cluster.command(),
            env=env,
            is_serving=cluster.accepting,
            quiet=True,
        )
        child.spawn()
        self.children.append(child)
        self._wait_until_serving(child)
        child.state = ChildState.SERVING
        cluster.create_database()
        return cluster.url

    def _start_redis(self, env: dict[str, str], port: int) -> None:
        """Debian's redis-server for the rooms' bus: loopback only, nothing persisted (a room's
        history is in gifts' room store; the bus only carries it between replicas)."""
        redis_dir = self.data_root / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        child = Child(
            name="redis",
            endpoint=f"127.0.0.1:{port}",
            command=[shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", str(redis_dir)],
            env=env,
            is_serving=lambda: port_open(port),
            quiet=True,
        )
        child.spawn()
        self.children.append(child)
        self._wait_until_serving(child)
        child.state = ChildState.SERVING

    def _wait_until_serving(self, child: Child) -> None:
        deadline = time.monotonic() + SERVICE_START_TIMEOUT
        while not child.is_serving():
            status = child.exit_status()
            if status is not None:
                raise RuntimeError(f"{child.name} exited with status {status} while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not start within {SERVICE_START_TIMEOUT:.0f} s")
            time.sleep(0.1)

    def supervise(self, stop_requested: threading.Event, say: Say, *, interval: float = WATCH_INTERVAL) -> None:
        """Watch every child until `stop_requested`: restart the crashed, give up on the hopeless."""
        while not stop_requested.wait(interval):
            for child in self.children:
                self._watch(child, say, time.monotonic())

    def _watch(self, child: Child, say: Say, now: float) -> None:
        if child.state in (ChildState.STARTING, ChildState.SERVING):
            status = child.exit_status()
            if status is not None:
                self._on_exit(child, status, say, now)
            elif child.state is ChildState.STARTING and child.is_serving():
                child.state = ChildState.SERVING
                say(f"{child.name:<11} {child.endpoint:<22} SERVING again (restart {len(child.crash_times)})")
        elif child.state is ChildState.WAITING_TO_RESTART and now >= child.restart_at:
            say(f"{child.name}: restarting")
            child.spawn()

    def _on_exit(self, child: Child, status: int, say: Say, now: float) -> None:
        assert child.process is not None
        _kill_group(child.process)  # whatever it spawned goes with it
        child.process = None  # reaped: its pid may belong to someone else from now on
        child.crash_times.append(now)
        delay = self.restart_policy.next_delay(child.crash_times, now)
        if delay is None:
            child.state = ChildState.GIVEN_UP
            say(f"{child.name} exited with status {status}; it crashed {self.restart_policy.max_crashes} times "
                f"within {self.restart_policy.window_s:g} s: giving up on it (the rest keep running)")
            return
        child.state = ChildState.WAITING_TO_RESTART
        child.restart_at = now + delay
        say(f"{child.name} exited with status {status}; next try in {delay:g} s")

    def given_up(self) -> list[str]:
        return [child.name for child in self.children if child.state is ChildState.GIVEN_UP]

    def stop(self) -> None:
        """SIGTERM the services' process groups (they drain their calls), and once they are gone
        what they use (Redis, Ray, PostgreSQL: a store must outlive the calls that write it),
        SIGKILL what is left of each."""
        services = [child for child in self.children if child.name not in INFRASTRUCTURE]
        used = [child for child in reversed(self.children) if child.name in INFRASTRUCTURE]
        for tier in (services, used):
            running = [child.process for child in tier if child.process is not None]
            for process in running:
                _signal_group(process, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            for process in running:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
                # The group leader may be gone while its children (Ray workers) linger.
                _kill_group(process)
        if self._ray_temp_dir is not None:
            shutil.rmtree(self._ray_temp_dir, ignore_errors=True)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    _signal_group(process, signal.SIGKILL)
    process.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def local_redis_port(url: str) -> int | None:
    """The port of a `redis://127.0.0.1:N` (or localhost) URL the platform should serve itself; None otherwise."""
    match = re.fullmatch(r"redis://(?:127\.0\.0\.1|localhost):(\d+)(?:/\d+)?", url)
    return int(match.group(1)) if match else None


def prepare_transport(data_root: Path) -> Transport:
    """The environment's transport; with TLS on, the development PKI made (or renewed) first.

    An operator's PKI (a CA certificate without the CA key beside it) is left alone: the
    development CA must never replace it.
    """
    transport = Transport.from_environment(data_root)
    files = pki_files(data_root)
    if transport.tls and (files.ca_key.exists() or not files.ca_certificate.exists()):
        ensure_dev_pki(data_root)
    return transport


@dataclass(frozen=True)
class Replica:
    service: str
    name: str  # `gifts`, or `gifts-2` for the second of several
    endpoint: str
    mesh_endpoint: str
    ports: dict[str, str]
    """This process's own LIMELIGHT_<SERVICE>_PORT and _MESH_PORT."""


@dataclass(frozen=True)
class ReplicaPorts:
    replicas: list[Replica]
    targets: dict[str, str]
    """What every process dials: LIMELIGHT_<SERVICE>_TARGET and _MESH_TARGET, naming all replicas."""


def _target_variable(service: str, mesh: bool = False) -> str:
    return f"LIMELIGHT_{service.upper()}_{'MESH_' if mesh else ''}TARGET"


def replica_environments(env: dict[str, str], replicas: Replicas, *, tls: bool) -> ReplicaPorts:
    """Ports for every replica of every service, reserved now, and the targets that name them.

    A service's first replica keeps its configured ports (`LIMELIGHT_<SERVICE>_PORT`, default
    `libs.kit.config`; `_MESH_PORT`, default a free one); the others get free ones. A
    configured `_TARGET` (a load balancer in front, say) is kept as it is.
    """
    every: list[Replica] = []
    targets: dict[str, str] = {}
    for service in config.SERVICES:
        upper = service.upper()
        count = replicas.of(service)
        user_ports = [reserve_port(int(env.get(f"LIMELIGHT_{upper}_PORT") or config.DEFAULT_PORTS[service]))]
        user_ports += [reserve_port() for _ in range(count - 1)]
        mesh_ports = [reserve_port(int(env.get(f"LIMELIGHT_{upper}_MESH_PORT") or 0))]
        mesh_ports += [reserve_port() for _ in range(count - 1)]
        for index, (user_port, mesh_port) in enumerate(zip(user_ports, mesh_ports, strict=True)):
            every.append(Replica(
                service=service,
                name=service if count == 1 else f"{service}-{index + 1}",
                endpoint=f"{LOOPBACK}:{user_port}",
                mesh_endpoint=f"{LOOPBACK}:{mesh_port}",
                ports={f"LIMELIGHT_{upper}_PORT": str(user_port), f"LIMELIGHT_{upper}_MESH_PORT": str(mesh_port)},
            ))
        targets[_target_variable(service)] = env.get(_target_variable(service)) or _all_of(user_ports)
        if tls:
            targets[_target_variable(service, mesh=True)] = (env.get(_target_variable(service, mesh=True))
                                                             or _all_of(mesh_ports))
    return ReplicaPorts(every, targets)


def _all_of(ports: list[int]) -> str:
    if len(ports) == 1:
        return f"{LOOPBACK}:{ports[0]}"
    return "ipv4:" + ",".join(f"{LOOPBACK}:{port}" for port in ports)


def _transport_note(transport: Transport, replica: Replica) -> str:
    if not transport.tls:
        return "(plaintext, loopback only)"
    return f"(TLS; services: mutual TLS on {replica.mesh_endpoint})"


def _health_probe(transport: Transport, service: str, target: str) -> Callable[[], bool]:
    def is_serving() -> bool:
        with transport.blocking_user_channel(service, target) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=HEALTH_PROBE_TIMEOUT,
                )
            except grpc.RpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    return is_serving


def start_service_process(service: str, data_root: Path, port: int,
                          environment: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """One service as its own process (`limelight serve`), returned once it listens (tests, benchmarks).

    The child imports this checkout's code and stubs first, whatever the environment's
    editable install points at; `environment` adds its settings. Its output stays readable on `stdout`.
    """
    repo_root = repository_root()
    env = {
        **os.environ,
        **(environment or {}),
        "LIMELIGHT_DATA_DIR": str(data_root),
        f"LIMELIGHT_{service.upper()}_PORT": str(port),
        "PYTHONPATH": os.pathsep.join([str(repo_root), str(repo_root / "gen")]),
    }
    process = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", service], cwd=repo_root, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if "listening on" in line:
            return process
    raise RuntimeError(f"{service} did not start (exit status {process.wait()})")
