"""`limelight up` as a person runs it: all six SERVING over TLS, reachable only from this machine,
kept running through crashes, and nothing left after Ctrl-C.

Each platform here is a real `limelight up` subprocess with its own data directory, ports
and HOME, with the default a person gets, `LIMELIGHT_TLS=on` (set explicitly: every other
test runs plaintext on loopback), and with restart backoffs shortened so a crash test waits
for seconds, not minutes. The test is a client like any other: it trusts the CA that
`limelight up` made under the data directory.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc
from limelight.gifts.v1 import standing_pb2, standing_pb2_grpc

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.clients import ServiceTokenSource
from libs.kit.config import SERVICES
from libs.kit.testing import error_info
from libs.kit.transport import TLS_ENV, Transport
from libs.ports import reserve_port
from tests.probes import eventually, gcs_answer, listening_sockets, processes_with_environment

pytestmark = pytest.mark.timeout(300)

START_TIMEOUT = 180.0
FAST_RESTARTS = ["--restart-backoff-s", "0.2", "--max-restart-backoff-s", "1", "--max-crashes", "3", "--crash-window-s", "60"]


class LimelightUp:
    """One `limelight up` subprocess; a thread collects its output so tests can wait for a line."""

    def __init__(self, root: Path, *arguments: str) -> None:
        self.data_root = root / "data"
        self.home = root / "home"
        self.home.mkdir()
        self.ports = {service: reserve_port() for service in SERVICES}
        env = {
            **os.environ,
            "LIMELIGHT_DATA_DIR": str(self.data_root),
            "HOME": str(self.home),
            TLS_ENV: "on",
            **{f"LIMELIGHT_{service.upper()}_PORT": str(port) for service, port in self.ports.items()},
        }
        for inherited in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "LIMELIGHT_PKI_DIR",
                          *(f"LIMELIGHT_{service.upper()}_MESH_{what}" for service in SERVICES
                            for what in ("PORT", "TARGET"))):
            env.pop(inherited, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "up", *arguments],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for_line("limelight is up", timeout=START_TIMEOUT)
        # What a client of this platform trusts: the CA it made (clients never present a certificate).
        self.transport = Transport.mutual_tls(self.data_root)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self._lines)

    @property
    def environment_marker(self) -> str:
        return f"LIMELIGHT_DATA_DIR={self.data_root}"

    def target(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def mesh_target(self, service: str) -> str:
        """The mutual-TLS port `limelight up` chose for `service`, as it printed it."""
        return self.wait_for_line(rf"^{service}\s+\S+\s+SERVING \(TLS; services: mutual TLS on (\S+)\)",
                                  timeout=0).group(1)

    def mesh_ports(self) -> set[int]:
        """Every replica's mutual-TLS port, as printed."""
        self.wait_for_line("limelight is up", timeout=0)
        return {int(found.group(1)) for line in self._lines
                if (found := re.search(r"SERVING \(TLS; services: mutual TLS on \S+:(\d+)\)", line))}

    def user_channel(self, service: str) -> grpc.aio.Channel:
        """What an end user dials: server-authenticated TLS to the service port."""
        return self.transport.user_channel(service, self.target(service))

    def mesh_channel(self, service: str, *, as_service: str = "") -> grpc.aio.Channel:
        """A TLS channel to the mesh port, presenting `as_service`'s certificate (none when '')."""
        return self.transport.service_channel(service, self.mesh_target(service), as_service=as_service)

    def is_serving(self, service: str) -> bool:
        return health_answer(lambda: self.user_channel(service)) == "SERVING"

    def bearer(self, subject: str, *roles: Role) -> tuple[tuple[str, str], ...]:
        claims = TokenClaims(subject=subject, roles=frozenset(roles), birth_date=dt.date(1990, 1, 1))
        token = mint_token(platform_signing_key(self.data_root), claims, ttl=dt.timedelta(minutes=10))
        return (("authorization", f"Bearer {token}"),)

    def wait_for_line(self, pattern: str, *, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self._lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.process.poll() is not None and not self._reader.is_alive():
                raise AssertionError(f"limelight up exited before printing {pattern!r}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no line matching {pattern!r} within {timeout:.0f} s:\n{self.output}")
            time.sleep(0.05)

    def pids(self) -> list[int]:
        return processes_with_environment(self.environment_marker)

    def service_pid(self, service: str) -> int | None:
        for pid in self.pids():
            try:
                command = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
            except (FileNotFoundError, ProcessLookupError):
                continue
            if command[-3:-1] == [b"serve", service.encode()]:
                return pid
        return None

    def ray_head_address(self) -> str:
        return self.wait_for_line(r"^ray\s+(\S+)\s+local head", timeout=0).group(1)

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        returncode = self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        return returncode

    def assert_nothing_left(self) -> None:
        eventually(lambda: self.pids() == [], timeout=20, what=f"every process of {self.data_root} to exit")


OpenChannel = Callable[[], grpc.aio.Channel]


def answer(open_channel: OpenChannel, call: Callable[[grpc.aio.Channel], Awaitable[Any]]) -> str:
    """'OK' or the status code's name; the channel is opened inside the event loop that uses it."""
    async def run() -> str:
        async with open_channel() as channel:
            try:
                await call(channel)
            except grpc.aio.AioRpcError as error:
                return str(error.code().name)
        return "OK"

    return asyncio.run(run())


def health_answer(open_channel: OpenChannel) -> str:
    """'SERVING' (or another health status), or the status code's name when the call fails."""
    statuses: list[str] = []

    async def check(channel: grpc.aio.Channel) -> None:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        statuses.append(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    code = answer(open_channel, check)
    return statuses[0] if code == "OK" else code


def assert_loopback_only(up: LimelightUp) -> None:
    sockets = listening_sockets(up.pids())
    listeners = {socket.process for socket in sockets}
    # Not vacuous: the services and Ray's own servers are among what was inspected.
    assert {"gcs_server", "raylet"} <= listeners, sockets
    assert {socket.port for socket in sockets} >= set(up.ports.values()) | up.mesh_ports(), sockets
    exposed = [str(socket) for socket in sockets if not socket.loopback_only]
    assert exposed == [], f"listening beyond loopback: {exposed}"


@pytest.fixture(scope="module")
def platform_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimelightUp]:
    up = LimelightUp(tmp_path_factory.mktemp("up"), *FAST_RESTARTS)
    try:
        yield up
    finally:
        if up.process.poll() is None:
            up.interrupt()


def test_up_serves_all_six(platform_up: LimelightUp) -> None:
    for service in SERVICES:
        assert f"{platform_up.target(service)}" in platform_up.output and service in platform_up.output
        assert platform_up.is_serving(service)
    assert "local head" in platform_up.output


def test_up_says_it_serves_tls_and_where_clients_find_the_ca(platform_up: LimelightUp) -> None:
    ca = platform_up.data_root / "pki" / "ca.pem"
    assert f"clients verify the services with the CA certificate {ca}" in platform_up.output
    for service in SERVICES:
        assert platform_up.mesh_target(service).startswith("127.0.0.1:")
    assert len(platform_up.mesh_ports() - set(platform_up.ports.values())) == len(SERVICES)


def test_the_service_ports_speak_only_tls(platform_up: LimelightUp) -> None:
    for service in SERVICES:
        for target in (platform_up.target(service), platform_up.mesh_target(service)):
            assert health_answer(functools.partial(grpc.aio.insecure_channel, target)) == "UNAVAILABLE"


def test_a_call_with_a_valid_token_works_over_tls(platform_up: LimelightUp) -> None:
    officer = platform_up.bearer("users/olga", Role.COMPLIANCE_OFFICER)
    assert answer(lambda: platform_up.user_channel("compliance"), lambda channel: audit_pb2_grpc.AuditServiceStub(
        channel).QueryEvents(audit_pb2.QueryEventsRequest(), metadata=officer, timeout=10)) == "OK"
    assert answer(lambda: platform_up.user_channel("compliance"), lambda channel: audit_pb2_grpc.AuditServiceStub(
        channel).QueryEvents(audit_pb2.QueryEventsRequest(), timeout=10)) == "UNAUTHENTICATED"


def test_the_mesh_port_admits_only_a_services_certificate(platform_up: LimelightUp) -> None:
    assert health_answer(lambda: platform_up.mesh_channel("compliance")) == "UNAVAILABLE"
    assert health_answer(lambda: platform_up.mesh_channel("compliance", as_service="gifts")) == "SERVING"

    gifts_token = ServiceTokenSource("gifts", platform_signing_key(platform_up.data_root))()
    service_call = (("authorization", f"Bearer {gifts_token}"),)
    refusals: list[str] = []

    async def checkpoint(channel: grpc.aio.Channel) -> None:
        try:
            await audit_pb2_grpc.AuditServiceStub(channel).GetCheckpoint(
                audit_pb2.GetCheckpointRequest(), metadata=service_call, timeout=10)
        except grpc.aio.AioRpcError as error:
            refusals.append(error_info(error).reason)
            raise

    assert answer(lambda: platform_up.mesh_channel("compliance", as_service="gifts"), checkpoint) == "OK"
    # The same service token without its certificate (a stolen one, or sent to the end users' port).
    assert answer(lambda: platform_up.user_channel("compliance"), checkpoint) == "UNAUTHENTICATED"
    assert refusals == ["SERVICE_CERTIFICATE_REQUIRED"]


def test_services_call_each_other_over_the_mesh(platform_up: LimelightUp) -> None:
    """gifts audits a refused call at compliance, which it reaches only over mutual TLS with its certificate."""
    intruder = f"users/mallory-{uuid.uuid4().hex[:8]}"
    request = standing_pb2.UpdateAccountStandingRequest(
        standing=standing_pb2.AccountStanding(name="users/host/standing", follower_count=1))
    assert answer(lambda: platform_up.user_channel("gifts"), lambda channel: standing_pb2_grpc.AccountStandingServiceStub(
        channel).UpdateAccountStanding(request, metadata=platform_up.bearer(intruder, Role.VIEWER),
                                       timeout=10)) == "PERMISSION_DENIED"
    officer = platform_up.bearer("users/olga", Role.COMPLIANCE_OFFICER)
    found: list[audit_pb2.LoggedEvent] = []

    async def query(channel: grpc.aio.Channel) -> None:
        reply = await audit_pb2_grpc.AuditServiceStub(channel).QueryEvents(
            audit_pb2.QueryEventsRequest(filter=audit_pb2.EventFilter(actor=intruder)), metadata=officer, timeout=10)
        found.extend(reply.events)

    def audited() -> bool:
        assert answer(lambda: platform_up.user_channel("compliance"), query) == "OK"
        return bool(found)

    eventually(audited, timeout=60, what=f"gifts' record of {intruder}'s refused call at compliance")


def test_the_clis_reach_the_services_over_tls_with_the_dev_ca(platform_up: LimelightUp, tmp_path: Path) -> None:
    """`limelight audit` and `limelight upload` as an operator runs them beside `limelight up`."""
    def limelight(*arguments: str, tls: str = "on") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, TLS_ENV: tls, "LIMELIGHT_DATA_DIR": str(platform_up.data_root),
               "HOME": str(platform_up.home)}
        return subprocess.run([sys.executable, "-m", "tools.cli", *arguments], env=env, capture_output=True,
                              text=True, timeout=120)

    key = limelight("audit", "key", "--target", platform_up.target("compliance"))
    assert key.returncode == 0 and re.fullmatch(r"\S+\+[0-9a-f]{8}\+\S+\n", key.stdout), key
    plaintext = limelight("audit", "key", "--target", platform_up.target("compliance"), tls="off")
    assert plaintext.returncode == 1 and "UNAVAILABLE" in plaintext.stdout, plaintext

    notes = tmp_path / "holiday.mp4"
    notes.write_text("not a video\n" * 100)
    # Refused by ingest itself, for what the file holds: the connection and the token were accepted.
    upload = limelight("upload", str(notes), "--creator", "ada", "--target", platform_up.target("ingest"))
    assert upload.returncode == 1 and "upload refused (INVALID_ARGUMENT)" in upload.stderr, upload


def test_no_process_of_the_platform_listens_beyond_loopback(platform_up: LimelightUp) -> None:
    assert_loopback_only(platform_up)


def test_the_local_ray_head_demands_the_platforms_own_token(platform_up: LimelightUp) -> None:
    token_file = platform_up.data_root / "ray" / "auth_token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert not (platform_up.home / ".ray").exists(), "Ray wrote its token into HOME"
    address = platform_up.ray_head_address()
    assert gcs_answer(address, token=None) == grpc.StatusCode.UNAUTHENTICATED
    assert gcs_answer(address, token="not-the-token") == grpc.StatusCode.UNAUTHENTICATED
    assert gcs_answer(address, token=token_file.read_text()) == grpc.StatusCode.OK


def test_the_data_directory_is_the_platform_users_alone(platform_up: LimelightUp) -> None:
    assert stat.S_IMODE(platform_up.data_root.stat().st_mode) == 0o700
    readable_by_others = [
        f"{path} {stat.S_IMODE(path.stat().st_mode):o}"
        for path in [platform_up.data_root, *platform_up.data_root.rglob("*")]
        if stat.S_IMODE(path.lstat().st_mode) & 0o077
    ]
    assert readable_by_others == []
    # Not vacuous: stores, keys, traces and Ray's token were among what was inspected.
    made = {path.name for path in platform_up.data_root.iterdir()}
    assert {"gifts", "compliance", "keys", "traces", "ray"} <= made, made


def test_a_second_platform_with_replicas_over_postgres_starts_beside_the_first(
        platform_up: LimelightUp, tmp_path: Path) -> None:
    """One platform start proves both (CI time): a second platform coexists with the first, and
    `--replicas` runs two processes of a service over a PostgreSQL the platform started."""
    second = LimelightUp(tmp_path, "--replicas", "gifts=2,shop=2")
    try:
        assert second.ray_head_address() != platform_up.ray_head_address()
        second.wait_for_line(r"^postgres\s+127\.0\.0\.1:\d+/limelight\s+every store", timeout=0)
        for service in SERVICES:
            assert second.is_serving(service) and platform_up.is_serving(service)
        assert_loopback_only(second)
        for service in ("gifts", "shop"):
            endpoints = [second.wait_for_line(rf"^{service}-{index}\s+(\S+)\s+SERVING", timeout=0).group(1)
                         for index in (1, 2)]
            assert len(set(endpoints)) == 2
            assert second.wait_for_line(rf"^{service}: 2 replicas, round robin at ipv4:(\S+)", timeout=0).group(1) \
                == ",".join(endpoints)
        gifts = [second.wait_for_line(rf"^gifts-{index}\s+(\S+)", timeout=0).group(1) for index in (1, 2)]
        admin = second.bearer("users/ops", Role.ADMIN)
        update = standing_pb2.UpdateAccountStandingRequest(
            standing=standing_pb2.AccountStanding(name="users/carol/standing", follower_count=4_321))
        update.update_mask.paths.append("follower_count")
        assert answer(lambda: second.transport.user_channel("gifts", gifts[0]), lambda channel: (
            standing_pb2_grpc.AccountStandingServiceStub(channel).UpdateAccountStanding(
                update, metadata=admin, timeout=10))) == "OK"
        read: list[int] = []

        async def read_standing(channel: grpc.aio.Channel) -> None:
            reply = await standing_pb2_grpc.AccountStandingServiceStub(channel).GetAccountStanding(
                standing_pb2.GetAccountStandingRequest(name="users/carol/standing"), metadata=admin, timeout=10)
            read.append(reply.standing.follower_count)

        assert answer(lambda: second.transport.user_channel("gifts", gifts[1]), read_standing) == "OK"
        assert read == [4_321], "the second replica reads what the first wrote"
    finally:
        assert second.interrupt() == 0, second.output
        cluster = re.search(r"^postgres\s+\S+\s+every store \(a cluster in (\S+),", second.output, re.M)
        if cluster:  # outside the data directory when we are root: under the postgres user's home
            shutil.rmtree(cluster.group(1), ignore_errors=True)
    second.assert_nothing_left()
    assert platform_up.is_serving("gifts")


def test_a_killed_service_comes_back_serving(platform_up: LimelightUp) -> None:
    killed = platform_up.service_pid("gifts")
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    platform_up.wait_for_line(r"gifts exited with status -9; next try in 0\.2 s", timeout=30)
    platform_up.wait_for_line(r"gifts\s+\S+\s+SERVING again", timeout=60)
    assert platform_up.service_pid("gifts") not in (None, killed)
    assert platform_up.is_serving("gifts")


def test_ctrl_c_stops_everything_without_leftovers(platform_up: LimelightUp) -> None:
    assert platform_up.interrupt() == 0, platform_up.output
    assert "stopped." in platform_up.output
    platform_up.assert_nothing_left()


def test_a_service_that_keeps_crashing_is_given_up_on_and_reported(tmp_path: Path) -> None:
    up = LimelightUp(tmp_path, *FAST_RESTARTS)
    try:
        # The gifts store's directory becomes a plain file, so every restart fails at its first open.
        gifts_dir = up.data_root / "gifts"
        shutil.move(gifts_dir, up.data_root / "gifts.moved")
        gifts_dir.write_text("not a directory")
        gifts = up.service_pid("gifts")
        assert gifts is not None
        os.kill(gifts, signal.SIGKILL)
        up.wait_for_line(r"gifts exited with status -9; next try in 0\.2 s", timeout=30)
        up.wait_for_line(r"gifts exited with status 1; next try in 0\.4 s", timeout=90)
        up.wait_for_line(r"gifts exited with status 1; it crashed 3 times within 60 s: giving up on it", timeout=90)
        assert up.service_pid("gifts") is None
        assert all(up.is_serving(service) for service in SERVICES if service != "gifts")
    finally:
        returncode = up.interrupt()
    assert returncode == 1, up.output
    assert "gave up on: gifts" in up.output
    up.assert_nothing_left()
