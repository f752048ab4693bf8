"""What tests share: raw-bytes calls, reading `google.rpc` details off an error, and a service
running as a child process (crash tests)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

DetailT = TypeVar("DetailT", bound=Message)


def raw_unary(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    """A unary method of bytes in, bytes out: enough to exercise the kit without generated stubs."""
    return channel.unary_unary(method)


def status_detail(error: grpc.aio.AioRpcError, detail_type: type[DetailT]) -> DetailT:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status in the trailers"
    for packed in status.details:
        detail = detail_type()
        if packed.Unpack(detail):
            return detail
    raise AssertionError(f"no {detail_type.__name__} detail")


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    return status_detail(error, error_details_pb2.ErrorInfo)


class ServiceProcess:
    """A service running as a child process on `port` over the data directory `root`, for tests
    that kill -9 it and start it again. `environment` adds the service's own settings (targets,
    data keys). The child gets this interpreter's path, so it finds the code and the stubs
    wherever they are (a checkout with gen/, or Bazel's runfiles); its output goes to
    `<root>/<label>.log` (the label: the service's name unless given, e.g. one per replica)."""

    def __init__(self, service: str, root: Path, port: int, environment: Mapping[str, str] | None = None,
                 *, label: str = "") -> None:
        self.service, self.root, self.port = service, root, port
        self.label = label or service
        self.target = f"127.0.0.1:{port}"
        self._environment = dict(environment or {})
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / f"{self.label}.log"

    def start(self) -> None:
        env = {**os.environ, "LIMELIGHT_DATA_DIR": str(self.root),
               f"LIMELIGHT_{self.service.upper()}_PORT": str(self.port),
               "PYTHONPATH": os.pathsep.join(path for path in sys.path if path), **self._environment}
        code = ("from libs.kit.server import run_service_process\n"
                f"from services.{self.service}.server import build\n"
                f"run_service_process({self.service!r}, build)\n")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=log)

    async def wait_serving(self, *, seconds: float = 60.0) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < deadline:
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.service} did not come up: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)
