"""`limelight up`'s restart policy (backoff that doubles per recent crash, and when to give up),
and the transport it prepares for its children."""

from __future__ import annotations

import socket
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from libs.kit.config import SERVICES
from libs.kit.pki import pki_files
from libs.kit.transport import TLS_ENV
from libs.ports import free_port, reserve_port
from tools.supervisor import Replicas, RestartPolicy, prepare_transport, replica_environments

POLICY = RestartPolicy(first_backoff_s=1.0, max_backoff_s=5.0, max_crashes=5, window_s=60.0)


def test_the_first_crash_waits_the_first_backoff() -> None:
    assert POLICY.next_delay([100.0], now=100.0) == 1.0


def test_each_recent_crash_doubles_the_wait_up_to_the_cap() -> None:
    crashes: list[float] = []
    delays = []
    for second in range(4):
        crashes.append(100.0 + second)
        delays.append(POLICY.next_delay(crashes, now=100.0 + second))
    assert delays == [1.0, 2.0, 4.0, 5.0]


def test_the_fifth_crash_within_the_window_gives_up() -> None:
    assert POLICY.next_delay([100.0, 101.0, 102.0, 103.0, 104.0], now=104.0) is None


def test_crashes_older_than_the_window_are_forgiven() -> None:
    crashes = [0.0, 1.0, 2.0, 3.0, 100.0]
    assert POLICY.next_delay(crashes, now=100.0) == 1.0


def test_with_tls_on_the_development_pki_is_made_before_anything_starts(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TLS_ENV, "on")
    monkeypatch.delenv("LIMELIGHT_PKI_DIR", raising=False)
    assert prepare_transport(tmp_path).tls
    files = pki_files(tmp_path)
    assert files.ca_key.exists() and all(files.certificate(service).exists() for service in SERVICES)


def test_an_operators_pki_without_the_ca_key_is_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TLS_ENV, "on")
    monkeypatch.delenv("LIMELIGHT_PKI_DIR", raising=False)
    files = pki_files(tmp_path)
    files.root.mkdir()
    files.ca_certificate.write_bytes(b"the operator's CA")
    prepare_transport(tmp_path)
    assert files.ca_certificate.read_bytes() == b"the operator's CA" and not files.ca_key.exists()


def test_with_tls_off_no_pki_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TLS_ENV, "off")
    monkeypatch.delenv("LIMELIGHT_PKI_DIR", raising=False)
    assert not prepare_transport(tmp_path).tls
    assert not pki_files(tmp_path).root.exists()


def test_every_service_gets_a_mesh_port_of_its_own_and_learns_the_others() -> None:
    configured = str(free_port())
    ports = replica_environments({"LIMELIGHT_GIFTS_MESH_PORT": configured,
                                  "LIMELIGHT_SHOP_MESH_TARGET": "shop.internal:443"}, Replicas(), tls=True)
    mesh = [replica.ports[f"LIMELIGHT_{replica.service.upper()}_MESH_PORT"] for replica in ports.replicas]
    assert len(set(mesh)) == len(SERVICES) == len(ports.replicas)
    gifts = next(replica for replica in ports.replicas if replica.service == "gifts")
    assert gifts.ports["LIMELIGHT_GIFTS_MESH_PORT"] == configured
    assert ports.targets["LIMELIGHT_GIFTS_MESH_TARGET"] == f"127.0.0.1:{configured}"
    assert ports.targets["LIMELIGHT_SHOP_MESH_TARGET"] == "shop.internal:443"


def test_replicas_get_ports_of_their_own_and_clients_a_target_naming_them_all() -> None:
    env = {f"LIMELIGHT_{service.upper()}_PORT": str(reserve_port()) for service in SERVICES}
    ports = replica_environments(env, Replicas.parse("gifts=3,shop=2"), tls=True)
    gifts = [replica for replica in ports.replicas if replica.service == "gifts"]
    assert [replica.name for replica in gifts] == ["gifts-1", "gifts-2", "gifts-3"]
    assert gifts[0].ports["LIMELIGHT_GIFTS_PORT"] == env["LIMELIGHT_GIFTS_PORT"]
    user_ports = [replica.ports["LIMELIGHT_GIFTS_PORT"] for replica in gifts]
    assert len(set(user_ports)) == 3
    assert ports.targets["LIMELIGHT_GIFTS_TARGET"] == "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in user_ports)
    assert ports.targets["LIMELIGHT_GIFTS_MESH_TARGET"].startswith("ipv4:127.0.0.1:")
    assert ports.targets["LIMELIGHT_INGEST_TARGET"] == f"127.0.0.1:{env['LIMELIGHT_INGEST_PORT']}"
    assert len(ports.replicas) == len(SERVICES) + 3


@pytest.mark.parametrize("text", ["gifts=0", "gifts=two", "nosuch=2", "ranking=2"])
def test_replica_counts_that_cannot_run_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Replicas.parse(text)


def test_a_reserved_port_is_bound_by_a_grpc_server_and_by_nobody_else() -> None:
    port = reserve_port()
    with socket.socket() as other_program:
        with pytest.raises(OSError):
            other_program.bind(("127.0.0.1", port))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    try:
        assert server.add_insecure_port(f"127.0.0.1:{port}") == port
    finally:
        server.stop(None)
    assert reserve_port(port) == port
