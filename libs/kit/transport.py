"""How calls travel: TLS (one setting for every server and client) or plaintext on loopback.

`LIMELIGHT_TLS=on` (the default) or `off`.

With TLS on, a service listens on two ports of one server, both TLS with its certificate
from the development PKI (`libs.kit.pki`) or the operator's:

- the service port (`LIMELIGHT_<SERVICE>_PORT`): server-authenticated TLS, for end users
  (CLI, client teams) with a bearer token;
- the mesh port (`LIMELIGHT_<SERVICE>_MESH_PORT`, default service port + 100): mutual TLS,
  the client's certificate verified against the CA. Services call each other here.

grpcio cannot request a client certificate without requiring one, so the two kinds of
caller get a port each. A service identity is the certificate's SAN URI
(`spiffe://limelight/services/<name>`): a token with the service role is admitted only
over the mesh port and only when the certificate names the same service, so a stolen
service token without the certificate is no service.

With TLS off, there is one plaintext port and the token alone says who calls. Plaintext is
for loopback only: a server refuses to bind, and a client refuses to dial, a non-loopback
address unless `LIMELIGHT_ALLOW_PLAINTEXT_NETWORK=1` forces it, so tokens never cross a
network in the clear by accident.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from libs.kit.pki import PkiFiles, pki_files, service_from_identity_uri

TLS_ENV = "LIMELIGHT_TLS"
# A target may name several replicas (`ipv4:127.0.0.1:p1,127.0.0.1:p2`, or a DNS name with
# several addresses): spread calls over all of them, not only the first that answers.
_ROUND_ROBIN_CONFIG: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
ROUND_ROBIN = ("grpc.service_config", json.dumps(_ROUND_ROBIN_CONFIG))


def with_round_robin(options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """`options` whose service config (the caller's retry policy, say) also balances round robin."""
    merged: dict[str, Any] = dict(_ROUND_ROBIN_CONFIG)
    for name, value in options:
        if name == "grpc.service_config":
            merged.update(json.loads(value))
    return [*(option for option in options if option[0] != "grpc.service_config"),
            ("grpc.service_config", json.dumps(merged))]
ALLOW_PLAINTEXT_NETWORK_ENV = "LIMELIGHT_ALLOW_PLAINTEXT_NETWORK"


class TlsMode(enum.StrEnum):
    ON = "on"
    OFF = "off"


DEFAULT_TLS = TlsMode.ON


class PlaintextRefused(RuntimeError):
    """A plaintext server or client was asked to use a non-loopback address."""


def tls_mode() -> TlsMode:
    configured = os.environ.get(TLS_ENV, "").strip().lower()
    try:
        return TlsMode(configured) if configured else DEFAULT_TLS
    except ValueError as error:
        raise ValueError(f"{TLS_ENV} must be 'on' or 'off', not {configured!r}") from error


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_target(target: str) -> bool:
    """Whether a gRPC target (`host:port`, `dns:///host:port`, `ipv4:…`, `unix:…`) stays on this host."""
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    address = target
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if address.startswith(scheme):
            address = address.removeprefix(scheme)
            break
    addresses = address.split(",")
    return all(is_loopback_host(_host_of(one)) for one in addresses)


def _host_of(address: str) -> str:
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


@dataclass(frozen=True)
class Transport:
    """The transport settings of one process: TLS or not, and where the PKI lives."""

    tls: bool
    pki: PkiFiles
    allow_plaintext_network: bool = False

    @classmethod
    def from_environment(cls, data_root: Path | None = None) -> Transport:
        return cls(
            tls=tls_mode() is TlsMode.ON,
            pki=pki_files(data_root),
            allow_plaintext_network=os.environ.get(ALLOW_PLAINTEXT_NETWORK_ENV, "") == "1",
        )

    @classmethod
    def plaintext(cls, data_root: Path) -> Transport:
        return cls(tls=False, pki=pki_files(data_root))

    @classmethod
    def mutual_tls(cls, data_root: Path) -> Transport:
        return cls(tls=True, pki=pki_files(data_root))

    # Server side.

    def bind(self, server: grpc.aio.Server, service: str, *, host: str, port: int,
             mesh_port: int) -> tuple[int, int | None]:
        """Add the service's ports; (service port, mesh port or None when plaintext)."""
        if not self.tls:
            self.refuse_plaintext_listen(host)
            return server.add_insecure_port(f"{host}:{port}"), None
        identity = [(self._read(self.pki.key(service)), self._read(self.pki.certificate(service)))]
        ca = self._read(self.pki.ca_certificate)
        bound = server.add_secure_port(f"{host}:{port}", grpc.ssl_server_credentials(identity))
        bound_mesh = server.add_secure_port(
            f"{host}:{mesh_port}",
            grpc.ssl_server_credentials(identity, root_certificates=ca, require_client_auth=True),
        )
        return bound, bound_mesh

    def refuse_plaintext_listen(self, host: str) -> None:
        if not self.tls and not self.allow_plaintext_network and not is_loopback_host(host):
            raise PlaintextRefused(
                f"refusing to serve plaintext on {host}: set LIMELIGHT_TLS=on, or "
                f"{ALLOW_PLAINTEXT_NETWORK_ENV}=1 to force it"
            )

    # Client side.

    def service_channel(self, service: str, target: str, *, options: Sequence[tuple[str, Any]] = (),
                        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
                        as_service: str = "") -> grpc.aio.Channel:
        """A channel to `service` at `target`; with TLS it presents `as_service`'s certificate."""
        options = with_round_robin(options)
        if not self.tls:
            self.refuse_plaintext_network(target)
            return grpc.aio.insecure_channel(target, options=options, interceptors=list(interceptors))
        ca = self._read(self.pki.ca_certificate)
        credentials = (
            grpc.ssl_channel_credentials(ca, self._read(self.pki.key(as_service)),
                                         self._read(self.pki.certificate(as_service)))
            if as_service else grpc.ssl_channel_credentials(ca)
        )
        # The server must prove it is `service`, whatever address it was reached at.
        named = [*options, ("grpc.ssl_target_name_override", service)]
        return grpc.aio.secure_channel(target, credentials, options=named, interceptors=list(interceptors))

    def user_channel(self, service: str, target: str, *,
                     options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        """What an end user (CLI, client team) dials: server-authenticated TLS, or loopback plaintext."""
        return self.service_channel(service, target, options=options)

    def blocking_user_channel(self, service: str, target: str) -> grpc.Channel:
        """`user_channel` for synchronous callers (the audit CLI)."""
        if not self.tls:
            self.refuse_plaintext_network(target)
            return grpc.insecure_channel(target, options=[ROUND_ROBIN])
        credentials = grpc.ssl_channel_credentials(self._read(self.pki.ca_certificate))
        return grpc.secure_channel(target, credentials,
                                   options=[ROUND_ROBIN, ("grpc.ssl_target_name_override", service)])

    def refuse_plaintext_network(self, target: str) -> None:
        if not self.tls and not self.allow_plaintext_network and not is_loopback_target(target):
            raise PlaintextRefused(
                f"refusing to send a token in plaintext to {target}: set LIMELIGHT_TLS=on, or "
                f"{ALLOW_PLAINTEXT_NETWORK_ENV}=1 to force it"
            )

    @staticmethod
    def _read(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"{path} is missing: LIMELIGHT_TLS is on, so run `limelight up` (which calls "
                "libs.kit.pki.ensure_dev_pki) or install the operator's certificates, or set LIMELIGHT_TLS=off "
                "for loopback-only plaintext"
            ) from error


def certified_service(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The service the peer's verified client certificate names, or '' without one.

    `peer_identities()` (the certificate's SANs) costs under a microsecond;
    `auth_context()` would build every TLS property, PEM included, about ten times that.
    """
    for value in context.peer_identities() or ():
        service = service_from_identity_uri(value.decode() if isinstance(value, bytes) else str(value))
        if service:
            return service
    return ""
