"""Loopback ports for the servers a machine runs: ours (gRPC) and others' (Ray, Redis, PostgreSQL)."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"

_reservations: dict[int, socket.socket] = {}


def free_port() -> int:
    """A loopback port that is free right now, for a program of others to bind."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def reserve_port(port: int = 0) -> int:
    """A loopback port (`port`, or one the kernel picks) held for one of our gRPC servers for
    the rest of this process's life.

    A port that is merely free now was, on a busy machine, handed to an outgoing connection
    or another test's bind(0) before the service bound it ('Address already in use'). Here a
    socket stays bound to it with SO_REUSEPORT, which gRPC's servers set as well: the service,
    and every restart of it, binds on top, while the kernel gives the port to nobody else.
    """
    if port in _reservations:
        return port
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        holder.bind((LOOPBACK, port))
    except OSError as error:
        holder.close()
        raise RuntimeError(f"port {port} on {LOOPBACK} is taken by another program: {error}") from None
    bound = int(holder.getsockname()[1])
    _reservations[bound] = holder
    return bound


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((LOOPBACK, port)) == 0
