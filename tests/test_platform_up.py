"""`limelight up` as a person runs it: all six SERVING, and nothing left after Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.kit.config import SERVICES
from tools.supervisor import free_port

pytestmark = pytest.mark.timeout(240)


def processes_marked_with(marker: str) -> list[int]:
    """Pids whose environment carries `marker` (every child of `up` inherits the data dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return found


async def health_of(target: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        return int(reply.status)


def test_up_serves_all_six_and_stops_without_leftovers(tmp_path: Path) -> None:
    marker = f"LIMELIGHT_DATA_DIR={tmp_path}"
    ports = {service: free_port() for service in SERVICES}
    env = {
        **os.environ,
        "LIMELIGHT_DATA_DIR": str(tmp_path),
        **{f"LIMELIGHT_{service.upper()}_PORT": str(port) for service, port in ports.items()},
    }
    env.pop("RAY_ADDRESS", None)
    up = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output: list[str] = []
    try:
        assert up.stdout is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            assert line, "limelight up exited early:\n" + "".join(output)
            output.append(line)
            if "limelight is up" in line:
                break
        printed = "".join(output)
        for service, port in ports.items():
            assert f"127.0.0.1:{port}" in printed and service in printed
            assert asyncio.run(health_of(f"127.0.0.1:{port}")) == health_pb2.HealthCheckResponse.SERVING
        assert "local head" in printed
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
    assert up.returncode == 0, "".join(output)
    # `up` has exited; the kernel may still be reaping its children, so wait for that, bounded.
    deadline = time.monotonic() + 30
    while processes_marked_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_marked_with(marker) == []
