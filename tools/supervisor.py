"""`limelight up`: run the whole platform on one machine and take all of it down again.

Every child (the six services and, unless `RAY_ADDRESS` names a cluster, a local Ray
head) starts in its own process group, so stopping kills whatever the child spawned too
(Ray's raylet, GCS and workers) and nothing outlives the supervisor.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.kit import config
from tools.repository import repository_root

SERVICE_START_TIMEOUT = 60.0
STOP_GRACE = 15.0


@dataclass
class Child:
    name: str
    endpoint: str
    process: subprocess.Popen[bytes]


@dataclass
class Platform:
    data_root: Path
    children: list[Child] = field(default_factory=list)
    ray_address: str = ""

    def start(self, say: Callable[[str], None]) -> None:
        env = {**os.environ, "LIMELIGHT_DATA_DIR": str(self.data_root)}
        self.ray_address = os.environ.get("RAY_ADDRESS", "")
        if self.ray_address:
            say(f"joining the Ray cluster at {self.ray_address}")
        else:
            self.ray_address = self._start_ray_head(env)
            say(f"{'ray':<11} {self.ray_address:<22} local head")
        env["RAY_ADDRESS"] = self.ray_address
        services = [
            Child(
                service,
                config.target(service),
                subprocess.Popen(
                    [sys.executable, "-m", "tools.cli", "serve", service],
                    env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                ),
            )
            for service in config.SERVICES
        ]
        self.children.extend(services)
        for child in services:
            wait_until_serving(child)
            say(f"{child.name:<11} {child.endpoint:<22} SERVING")

    def _start_ray_head(self, env: dict[str, str]) -> str:
        port = free_port()
        process = subprocess.Popen(
            [
                sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                f"--port={port}", "--include-dashboard=false", "--disable-usage-stats",
                f"--temp-dir={Path('/tmp') / f'limelight-ray-{os.getpid()}'}",
            ],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        address = f"127.0.0.1:{port}"
        self.children.append(Child("ray", address, process))
        deadline = time.monotonic() + SERVICE_START_TIMEOUT
        while not port_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the local Ray head did not start")
            time.sleep(0.2)
        return address

    def stop(self) -> None:
        """SIGTERM every process group (services drain their calls), then SIGKILL what is left."""
        for child in reversed(self.children):
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The group leader may be gone while its children (Ray workers) linger.
            _signal_group(child.process, signal.SIGKILL)
            child.process.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_until_serving(child: Child) -> None:
    async def check() -> None:
        async with grpc.aio.insecure_channel(child.endpoint) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + SERVICE_START_TIMEOUT
            while True:
                if child.process.poll() is not None:
                    raise RuntimeError(f"{child.name} exited with status {child.process.returncode}")
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1, wait_for_ready=True)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.1)

    asyncio.run(check())


def start_service_process(service: str, data_root: Path, port: int) -> subprocess.Popen[str]:
    """One service as its own process (`limelight serve`), returned once it listens (tests, benchmarks).

    The child imports this checkout's code and stubs first, whatever the environment's
    editable install points at. Its output stays readable on `stdout`.
    """
    repo_root = repository_root()
    env = {
        **os.environ,
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
