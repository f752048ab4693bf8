"""SendGift and Checkout through two replicas over PostgreSQL against one replica over SQLite,
and the durable audit append rate on both engines, in one run.

    python -m tools.bench.replicas [--seconds 5] [--rounds 2] [--in-flight 64]

One PostgreSQL server (`libs.storage.postgres_cluster`, fsync on) serves every PostgreSQL
case. Each server is its own process (`limelight serve <service>`), tracing on every call;
each load is a separate process (`tools.bench.send_gift load`, `tools.bench.checkout load`)
keeping `--in-flight` calls in flight, spread over a case's replicas by gRPC's round robin.
Rounds are interleaved and the best of each case is kept:

- traced bare grpc.aio echo: the baseline every ratio is taken against (`send_gift`'s);
- SendGift: gifts over SQLite (one process), and two gifts replicas over PostgreSQL;
- Checkout: the shop over SQLite (one process), and two shop replicas over PostgreSQL;
- AppendEvents: durable audit events per second through one compliance process, on SQLite
  and on PostgreSQL (`audit_append_rpc`: 64 writers, 1 and 16 events per call).

Server CPU per call sums every process of a case (both replicas, and the ledger processes
gifts starts); PostgreSQL's own CPU per call is printed beside it. No compliance serves the
gifts and shop cases: their audit events stay in their outboxes, and personal fields are
sealed under each process's own in-memory keys.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from libs.ports import free_port, reserve_port
from libs.storage.database import DATABASE_URL_ENV
from libs.storage.postgres_cluster import PostgresCluster
from tools.bench import audit_append_rpc, checkout, send_gift
from tools.bench.grpc_load import LoadResult, on_plaintext_loopback, process_cpu_seconds, ratio_table, run_load_process
from tools.supervisor import start_service_process

BASELINE = "traced bare grpc.aio echo"
SEND_GIFT = "/limelight.gifts.v1.GiftService/SendGift"
BUYERS = 2_000
SERVICE_SETTINGS = {
    "LIMELIGHT_TRACE_SAMPLE_RATIO": "1.0",
    "LIMELIGHT_DATA_KEYS": "ephemeral",
    "LIMELIGHT_GIFTS_AUDIT_SHIPPING": "off",
    "LIMELIGHT_SHOP_AUDIT_SHIPPING": "off",
}


@dataclasses.dataclass
class Case:
    label: str
    module: str  # whose `load` drives it
    servers: list[subprocess.Popen[str]]
    ports: list[int]
    root: Path
    on_postgres: bool
    arguments: list[str] = dataclasses.field(default_factory=list)
    """The load's arguments after the target and before in-flight and seconds (method, LIVE)."""
    trailing: list[str] = dataclasses.field(default_factory=list)

    @property
    def target(self) -> str:
        if len(self.ports) == 1:
            return f"127.0.0.1:{self.ports[0]}"
        return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in self.ports)


def _tree(pid: int) -> list[int]:
    """A process and every process it started, from /proc."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += _tree(int(child))
    return found


def _cpu(pids: list[int]) -> float:
    return sum(process_cpu_seconds(pid) for pid in pids)


def measure(case: Case, database_pid: int, in_flight: int, seconds: float) -> tuple[LoadResult, float]:
    """One load run: the result with the case's own CPU per call, and PostgreSQL's CPU per call."""
    pids = [pid for server in case.servers for pid in _tree(server.pid)]
    database = _tree(database_pid) if case.on_postgres else []
    before, database_before = _cpu(pids), _cpu(database)
    os.environ["LIMELIGHT_DATA_DIR"] = str(case.root)  # the key the load signs its tokens with
    result = run_load_process(case.module, case.target, *case.arguments, str(in_flight), str(seconds),
                              *case.trailing, server_pid=case.servers[0].pid)
    calls = max(1, result.all_calls)
    own = dataclasses.replace(result, server_cpu_us_per_call=1e6 * (_cpu(pids) - before) / calls)
    return own, 1e6 * (_cpu(database) - database_before) / calls


def _serve(service: str, root: Path, replicas: int, database_url: str = "") -> tuple[list[subprocess.Popen[str]],
                                                                                       list[int]]:
    settings = {**SERVICE_SETTINGS, **({DATABASE_URL_ENV: database_url} if database_url else {})}
    ports = [reserve_port() for _ in range(replicas)]
    return [start_service_process(service, root, port, settings) for port in ports], ports


def _stop(servers: list[subprocess.Popen[str]]) -> None:
    for server in servers:
        server.send_signal(signal.SIGTERM)
    for server in servers:
        server.wait(timeout=30)


def audit_rates(root: Path, database_url: str, seconds: float) -> dict[str, float]:
    port = reserve_port()
    server = start_service_process("compliance", root, port, {DATABASE_URL_ENV: database_url} if database_url else {})
    try:
        return asyncio.run(audit_append_rpc.measure(f"127.0.0.1:{port}", root, 64, seconds, 16))
    finally:
        _stop([server])


def main() -> None:
    on_plaintext_loopback()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=64)
    arguments = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="limelight-bench-replicas-", dir="/tmp"))
    # Its own directory straight under /tmp: as root, the server runs as `postgres`, which must reach it.
    cluster = PostgresCluster(root=Path(tempfile.mkdtemp(prefix="limelight-pg-bench-", dir="/tmp")), port=free_port(),
                              durable=True)
    cluster.initialise()
    database = subprocess.Popen(cluster.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    cases: list[Case] = []
    try:
        cluster.wait_until_accepting(database)
        cluster.create_database()
        echo_port = reserve_port()
        echo = subprocess.Popen([sys.executable, "-m", send_gift.MODULE, "serve", "echo", str(echo_port)],
                                stdout=subprocess.PIPE, text=True)
        assert echo.stdout is not None and echo.stdout.readline().startswith("ready")
        cases.append(Case(BASELINE, send_gift.MODULE, [echo], [echo_port], scratch, False,
                          [f"/{send_gift.ECHO_SERVICE}/Echo", "lives/none"]))
        for engine, replicas, url in (("SQLite", 1, ""), ("PostgreSQL", 2, cluster.url)):
            for service, module in (("gifts", send_gift.MODULE), ("shop", checkout.MODULE)):
                root = scratch / f"{service}-{engine.lower()}"
                servers, ports = _serve(service, root, replicas, url)
                label = f"{'SendGift' if service == 'gifts' else 'Checkout'}, {replicas} x {service} / {engine}"
                case = Case(label, module, servers, ports, root, bool(url))
                cases.append(case)
                if service == "gifts":
                    case.arguments = [SEND_GIFT, asyncio.run(send_gift.prepare_gifts(case.target, root))]
                else:
                    asyncio.run(checkout.seed(case.target, root))
                    case.arguments, case.trailing = [checkout.CHECKOUT_METHOD], [str(BUYERS)]
        results: dict[str, list[tuple[LoadResult, float]]] = defaultdict(list)
        for round_number in range(arguments.rounds):
            for case in cases:
                results[case.label].append(measure(case, database.pid, arguments.in_flight, arguments.seconds))
                print(f"round {round_number + 1}: {case.label}: {results[case.label][-1][0].per_second:.0f} calls/s",
                      file=sys.stderr)
        for case in cases:
            _stop(case.servers)
        cases = []
        audit = {engine: audit_rates(scratch / f"audit-{engine}", url, arguments.seconds)
                 for engine, url in (("SQLite", ""), ("PostgreSQL", cluster.url))}
    finally:
        for case in cases:
            _stop(case.servers)
        database.send_signal(signal.SIGTERM)
        database.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(cluster.root, ignore_errors=True)
    best = {label: max(runs, key=lambda run: run[0].per_second) for label, runs in results.items()}
    print(f"Replicas over PostgreSQL vs one process over SQLite, {arguments.in_flight} in flight, "
          f"{arguments.seconds:.0f} s per run, best of {arguments.rounds} interleaved rounds, tracing on, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print(ratio_table([(label, result) for label, (result, _) in best.items()], best[BASELINE][0]))
    for label, (_, database_us) in best.items():
        if database_us:
            print(f"  {label}: PostgreSQL server CPU {database_us:.0f} us/call on top")
    for name in ("SendGift", "Checkout"):
        one, two = (next(result for label, (result, _) in best.items() if label.startswith(name) and engine in label)
                    for engine in ("SQLite", "PostgreSQL"))
        print(f"{name}: 2 replicas on PostgreSQL / 1 on SQLite = {two.per_second / one.per_second:.2f}x; "
              f"vs the traced echo {one.per_second / best[BASELINE][0].per_second:.2f}x (SQLite), "
              f"{two.per_second / best[BASELINE][0].per_second:.2f}x (PostgreSQL)")
    print("Durable audit appends through one compliance process (64 writers):")
    for engine, rates in audit.items():
        for name, rate in rates.items():
            print(f"  {engine:<10} {name:<32} {rate:8.0f}/s")


if __name__ == "__main__":
    main()
