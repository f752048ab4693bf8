"""Ray for Limelight: a local head that only this machine's user can reach, or the cluster at `RAY_ADDRESS`.

Ray's own defaults suit a private cluster network, not a developer's machine: on Linux
it resolves `127.0.0.1` to the machine's external address, so the GCS, raylet, workers,
agents and client server listen on every interface, with fixed ports (10001, 52365,
44217, 44227) that collide between two platforms on one host. Whoever reaches one of
them runs code as the platform user. So a local head here is:

- **loopback only**: `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` makes Ray keep a loopback node
  address (its single-machine mode), and with a loopback node address every component
  binds 127.0.0.1 (the C++ servers bind loopback exactly when the node address is
  loopback; the agents and metrics servers follow the node address);
- **on free ports**: every port is left to the kernel (`0`) where Ray allows it; the
  GCS and the client server, which Ray wants named, get ports probed free just before;
- **token-authenticated**: `RAY_AUTH_MODE=token` with the token in the data directory
  (`ray/auth_token`, mode 0600, `RAY_AUTH_TOKEN_PATH`) instead of `~/.ray/auth_token`,
  so each platform has its own and nothing is written to HOME.

Every process of a local head (the `ray start` child of `limelight up`, the services that
drive it, Ray's workers) gets `local_head_environment`; `connect` applies it to the
calling process too when it starts an embedded Ray itself (tests, a service run alone).

With `RAY_ADDRESS` set, `connect` joins that cluster as configured by its operator
(`RAY_AUTH_MODE=token` and `RAY_AUTH_TOKEN_PATH` or `RAY_AUTH_TOKEN`, `RAY_USE_TLS` and
its certificate variables) and changes nothing of it; `docs/security.md` says
what a real cluster needs.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from libs.ports import LOOPBACK
from libs.storage.paths import REPO_ROOT, data_dir, private_dir
from libs.storage.secret_files import read_or_create_secret

NAMESPACE = "limelight"
# What a cluster's nodes do not need of this repository when it ships as the job's working directory.
WORKING_DIR_EXCLUDES = (".git", ".venv", ".data", "gen", "node_modules", "bazel-*", "**/__pycache__",
                        ".pytest_cache", ".hypothesis", ".mypy_cache")


def auth_token_path(data_root: Path) -> Path:
    return data_root / "ray" / "auth_token"


def ensure_auth_token(data_root: Path) -> Path:
    """The local head's token file (created once, 0600, in a 0700 directory)."""
    path = auth_token_path(data_root)
    private_dir(path.parent)
    read_or_create_secret(path, lambda: secrets.token_hex(32).encode())
    return path


def local_head_environment(data_root: Path) -> dict[str, str]:
    """Environment for every process of a local head and its drivers: loopback, free ports, token auth."""
    return {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(ensure_auth_token(data_root)),
        "AUTOSCALER_METRIC_PORT": "0",
        "DASHBOARD_METRIC_PORT": "0",
    }


def head_command(*, gcs_port: int, client_server_port: int, temp_dir: Path, num_cpus: int | None = None) -> list[str]:
    """`ray start --head --block` bound to loopback, every other port chosen by the kernel."""
    command = [
        sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
        f"--node-ip-address={LOOPBACK}",
        f"--port={gcs_port}",
        f"--ray-client-server-port={client_server_port}",  # Ray insists on a named port here
        "--node-manager-port=0", "--object-manager-port=0",
        "--min-worker-port=0", "--max-worker-port=0",
        "--dashboard-agent-listen-port=0", "--dashboard-port=0",
        "--include-dashboard=false", "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
    ]
    if num_cpus is not None:
        command.append(f"--num-cpus={num_cpus}")
    return command


def head_started(temp_dir: Path) -> bool:
    """Whether the head in `temp_dir` is up: `ray start` writes this file once its raylet has registered."""
    return (temp_dir / "ray_current_cluster").exists()


def connect(*, num_cpus: int | None = None, data_root: Path | None = None) -> bool:
    """Join `RAY_ADDRESS` if set, else start an embedded local Ray (loopback, token auth) sized to this machine.

    Returns False when this process was already connected (someone else owns the
    connection and will shut it down), True when this call connected.
    """
    import ray  # here, not at the top: `limelight up` and the tests' port helper need no Ray in-process

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        # The cluster's nodes get this repository as the job's working directory.
        ray.init(address=address, namespace=NAMESPACE, runtime_env={
            "working_dir": str(REPO_ROOT), "excludes": list(WORKING_DIR_EXCLUDES),
        })
        return True
    _use_local_head_environment(local_head_environment(data_root or data_dir()))
    ray.init(
        num_cpus=num_cpus or os.cpu_count() or 1,
        include_dashboard=False,
        namespace=NAMESPACE,
        configure_logging=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}},
        _node_ip_address=LOOPBACK,
    )
    return True


def _use_local_head_environment(environment: dict[str, str]) -> None:
    """Put `environment` into this process, for Ray's code here and for the processes `ray.init` starts.

    Ray reads two of these settings once, when it is imported, and this process imported
    it before it could know: the single-machine switch (kept as a module constant) and the
    auth mode (in its C++ config). Both are read again here.
    """
    import ray._private.ray_constants as ray_constants
    from ray._raylet import Config as RayConfig  # type: ignore[attr-defined]  # the compiled module has no stub for it

    os.environ.update(environment)
    ray_constants.ENABLE_RAY_CLUSTER = False
    RayConfig.initialize("")
