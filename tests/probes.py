"""Probes for a running platform: its processes and where they listen (from /proc, Linux), and
what its Ray head answers a caller without the token.

A platform's processes are found by an environment entry every one of them inherits
(its private `LIMELIGHT_DATA_DIR`): Ray's daemons and workers too, which are not
children of the process that started them once `ray start` has detached them.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

_LISTEN = "0A"
# Any GCS method will do: the token check runs before the handler.
GCS_CLUSTER_ID = "/ray.rpc.NodeInfoGcsService/GetClusterId"


def eventually(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def gcs_answer(address: str, token: str | None) -> grpc.StatusCode:
    """The status Ray's GCS gives a bare gRPC call, with or without the cluster's token."""
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    with grpc.insecure_channel(address) as channel:
        try:
            call = channel.unary_unary(GCS_CLUSTER_ID, request_serializer=bytes, response_deserializer=bytes)
            call(b"", timeout=10, metadata=metadata)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code
        return grpc.StatusCode.OK


@dataclass(frozen=True)
class ListeningSocket:
    pid: int
    process: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int

    @property
    def loopback_only(self) -> bool:
        mapped = self.address.ipv4_mapped if isinstance(self.address, ipaddress.IPv6Address) else None
        return (mapped or self.address).is_loopback

    def __str__(self) -> str:
        return f"{self.process}[{self.pid}] on {self.address}:{self.port}"


def processes_with_environment(entry: str) -> list[int]:
    """Pids (other than this one) whose environment holds exactly `entry` (NAME=value)."""
    wanted = entry.encode()
    found = []
    for process in Path("/proc").iterdir():
        if not process.name.isdigit() or int(process.name) == os.getpid():
            continue
        try:
            if wanted in (process / "environ").read_bytes().split(b"\0"):
                found.append(int(process.name))
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return found


def process_name(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return "?"


def listening_sockets(pids: list[int]) -> list[ListeningSocket]:
    """Every TCP socket in LISTEN state that one of `pids` holds open."""
    listening = _listening_by_inode()
    found = []
    for pid in pids:
        for inode in _socket_inodes(pid):
            if inode in listening:
                address, port = listening[inode]
                found.append(ListeningSocket(pid, process_name(pid), address, port))
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    descriptors = Path("/proc") / str(pid) / "fd"
    try:
        entries = list(descriptors.iterdir())
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        return inodes
    for descriptor in entries:
        try:
            target = os.readlink(descriptor)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def _listening_by_inode() -> dict[int, tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    listening: dict[int, tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if state == _LISTEN:
                listening[inode] = _parse_address(local)
    return listening


def _parse_address(hex_address: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """`0100007F:1F90` -> 127.0.0.1, 8080: the kernel prints each 32-bit word in host (little-endian) order."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    words = b"".join(raw[index:index + 4][::-1] for index in range(0, len(raw), 4))
    address = ipaddress.IPv4Address(words) if len(words) == 4 else ipaddress.IPv6Address(words)
    return address, int(port, 16)
