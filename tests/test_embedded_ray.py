"""The embedded Ray a service (ingest, or a test) starts itself: loopback only, token-authenticated, nothing in HOME.

It runs in a child process of its own, with a private data directory and HOME, so it
neither meets this session's Ray nor anything another test session started.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from libs.ray_cluster import local_head_environment
from tests.probes import eventually, gcs_answer, listening_sockets, processes_with_environment

pytestmark = pytest.mark.timeout(180)

DRIVER = """
import os, sys
import ray
from services.ingest.workers import connect_ray  # ingest's own path into libs.ray_cluster

assert connect_ray(num_cpus=1)

@ray.remote
def worker_pid() -> int:
    return os.getpid()

ray.get(worker_pid.remote())  # a worker process is up and listening too
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.readline()
ray.shutdown()
"""


JOINER = """
import sys
import ray
from services.ingest.workers import connect_ray

assert connect_ray()

@ray.remote
def one() -> int:
    return 1

assert ray.get(one.remote()) == 1
print("joined", flush=True)
sys.stdin.readline()
ray.shutdown()
"""


@contextlib.contextmanager
def driver_script(source: str, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run a Ray driver script until it printed its first line; then tell it to finish, and see it exit cleanly."""
    driver = subprocess.Popen([sys.executable, "-c", source], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout is not None and driver.stdin is not None
        first_line = driver.stdout.readline().strip()
        assert first_line, "the driver did not get as far as Ray"
        yield driver, first_line
        driver.stdin.write("done\n")
        driver.stdin.flush()
        assert driver.wait(timeout=60) == 0
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


def test_an_embedded_ray_and_a_driver_joining_it_listen_on_loopback_only_and_demand_the_token(tmp_path: Path) -> None:
    data_root, home = tmp_path / "data", tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "LIMELIGHT_DATA_DIR": str(data_root), "HOME": str(home)}
    for inherited in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(inherited, None)
    marker = f"LIMELIGHT_DATA_DIR={data_root}"
    with driver_script(DRIVER, env) as (driver, gcs_address):
        sockets = listening_sockets([driver.pid, *processes_with_environment(marker)])
        listeners = {socket.process for socket in sockets}
        assert {"gcs_server", "raylet"} <= listeners, sockets
        assert driver.pid in {socket.pid for socket in sockets}, "the driver's own core worker was not inspected"
        exposed = [str(socket) for socket in sockets if not socket.loopback_only]
        assert exposed == [], f"listening beyond loopback: {exposed}"

        token_file = data_root / "ray" / "auth_token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
        assert not (home / ".ray").exists(), "Ray wrote its token into HOME"
        assert gcs_answer(gcs_address, token=None) == grpc.StatusCode.UNAUTHENTICATED
        assert gcs_answer(gcs_address, token=token_file.read_text()) == grpc.StatusCode.OK

        # How ingest joins the head of `limelight up`: RAY_ADDRESS plus the head's environment.
        joiner_env = {**env, "RAY_ADDRESS": gcs_address, **local_head_environment(data_root)}
        with driver_script(JOINER, joiner_env) as (joiner, said):
            assert said == "joined"
            joined = listening_sockets([joiner.pid])
            assert joined, "the joining driver's core worker was not inspected"
            assert [str(socket) for socket in joined if not socket.loopback_only] == []
    eventually(lambda: processes_with_environment(marker) == [], timeout=30, what="the embedded Ray to exit")
