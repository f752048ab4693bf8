"""One LIVE room with N viewers' streams open while senders post 50 chat messages a second.

    python -m tools.bench.live_room [--viewers 500,1000,2500,5000] [--seconds 8] [--rate 50]

The gifts service runs as a process of its own (room store durable, synchronous=FULL; keys
for sealing chat from an in-memory key source, since no compliance runs here); a separate
load process opens N real StreamRoom streams (20 per HTTP/2 connection, since viewers each
have their own; joining 250 at a time) and, once every stream has its first response, posts
`--rate` messages a second through SendChatMessage (on a connection of their own), each
carrying its send time. Every 1 in N/200 streams reads the send time out of each
message it receives, so the latency is measured on 200-odd streams (all streams receive
everything: delivery to the others costs the same). Reported per N: delivery latency p50
and p99 from send to receipt, batches received, and the server's memory per open stream
(its RSS with the N streams open and idle, less its RSS before, over N), and the cores the
server and the load used while the senders ran. The answer is the largest N at which
p99 <= 500 ms.

Without batching (one gRPC message per event per viewer), 5,000 viewers at 50 messages/s
would be 250,000 messages a second out of one Python process; with a batch per viewer every
250 ms it is 20,000, and viewers at the same position share one rendered message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from limelight.gifts.v1 import live_pb2, live_pb2_grpc, room_pb2, room_pb2_grpc, standing_pb2, standing_pb2_grpc

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.ports import reserve_port

MODULE = "tools.bench.live_room"
STREAMS_PER_CHANNEL = 20
JOIN_WAVE = 250
MEASURED_STREAMS = 200
P99_TARGET_MS = 500.0


def _auth(root: Path, user: str, *roles: Role) -> tuple[tuple[str, str], ...]:
    claims = TokenClaims(f"users/{user}", frozenset({Role.VIEWER, *roles}), birth_date=dt.date(1990, 1, 1))
    return (("authorization", f"Bearer {mint_token(platform_signing_key(root), claims, ttl=dt.timedelta(hours=2))}"),)


# The server ------------------------------------------------------------------------------


async def serve(port: int) -> None:
    from libs.kit.server import ServiceDefinition, ServiceRuntime, start_service
    from libs.privacy.fields import EphemeralDataKeys, PersonalData
    from services.gifts.config import GiftsConfig
    from services.gifts.server import GiftsService

    config = dataclasses.replace(GiftsConfig.from_environment(), ledger_in_process=True, ship_audit=False)

    def build(runtime: ServiceRuntime) -> ServiceDefinition:
        return GiftsService(runtime, config=config, personal=PersonalData(EphemeralDataKeys())).definition()

    running = await start_service("gifts", build, port=port)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    print("ready", flush=True)
    await stopping.wait()
    await running.stop(0)


async def prepare(target: str, root: Path) -> str:
    async with grpc.aio.insecure_channel(target) as channel:
        request = standing_pb2.UpdateAccountStandingRequest(
            standing=standing_pb2.AccountStanding(name="users/host/standing", follower_count=10_000))
        request.update_mask.paths.append("follower_count")
        await standing_pb2_grpc.AccountStandingServiceStub(channel).UpdateAccountStanding(
            request, metadata=_auth(root, "ops", Role.ADMIN))
        live = await live_pb2_grpc.LiveServiceStub(channel).StartLive(live_pb2.StartLiveRequest(
            parent="creators/host", request_id=str(uuid.uuid4()), title="bench"), metadata=_auth(root, "host"))
        return str(live.live_session.name)


# The load ----------------------------------------------------------------------------------


async def load(target: str, live: str, viewers: int, seconds: float, rate: float) -> dict[str, object]:
    root = Path(os.environ["LIMELIGHT_DATA_DIR"])
    channels = [grpc.aio.insecure_channel(target) for _ in range(max(1, -(-viewers // STREAMS_PER_CHANNEL)))]
    every = max(1, viewers // MEASURED_STREAMS)
    latencies: list[float] = []
    batches = 0
    opened = 0
    all_open = asyncio.Event()

    async def watch(index: int) -> None:
        nonlocal batches, opened
        stub = room_pb2_grpc.RoomServiceStub(channels[index % len(channels)])
        call = stub.StreamRoom(room_pb2.StreamRoomRequest(live=live), metadata=_auth(root, f"w{index}"))
        first = True
        async for response in call:
            batches += 1
            if first:
                first = False
                opened += 1
                if opened == viewers:
                    all_open.set()
                continue
            if index % every == 0:
                now = time.time()
                latencies.extend(now - float(event.chat_message.text[2:]) for event in response.events
                                 if event.chat_message.text.startswith("t:"))

    started = time.monotonic()
    watchers: list[asyncio.Task[None]] = []
    for wave in range(0, viewers, JOIN_WAVE):  # viewers arrive in waves, not all in one millisecond
        watchers += [asyncio.create_task(watch(index)) for index in range(wave, min(viewers, wave + JOIN_WAVE))]
        while opened < len(watchers) and not any(task.done() for task in watchers):
            await asyncio.sleep(0.05)
    opening = asyncio.create_task(all_open.wait())
    while not opening.done():
        await asyncio.wait([opening], timeout=5)
        failed = [task for task in watchers if task.done() and task.exception() is not None]
        if failed:
            raise RuntimeError(f"{len(failed)} of {viewers} streams failed, {opened} open: {failed[0].exception()}")
        if time.monotonic() - started > 300:
            raise RuntimeError(f"only {opened} of {viewers} streams opened in 300 s")
    open_seconds = time.monotonic() - started
    print("open", flush=True)
    await asyncio.sleep(2.0)  # the parent samples the server's memory with the streams idle
    senders = [_auth(root, f"s{index}") for index in range(50)]
    load_cpu, load_wall = time.process_time(), time.monotonic()
    # The senders' own connection: behind the viewers' stream data on a shared one, their calls
    # would wait for the load process to read it (head-of-line blocking in the load, not the room).
    sending = grpc.aio.insecure_channel(target)
    stub = room_pb2_grpc.RoomServiceStub(sending)
    sent = 0
    pending: set[asyncio.Task[object]] = set()
    begin = time.monotonic()

    send_times: list[float] = []

    async def post(metadata: tuple[tuple[str, str], ...]) -> object:
        posted = time.time()
        request = room_pb2.SendChatMessageRequest(live=live, request_id=str(uuid.uuid4()), text=f"t:{posted:.6f}")
        response = await stub.SendChatMessage(request, metadata=metadata, timeout=10)
        send_times.append(time.time() - posted)
        return response

    while time.monotonic() - begin < seconds:
        task = asyncio.create_task(post(senders[sent % len(senders)]))
        pending.add(task)
        task.add_done_callback(pending.discard)
        sent += 1
        await asyncio.sleep(max(0.0, begin + sent / rate - time.monotonic()))
    await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.sleep(1.5)  # the last batches
    for watcher in watchers:
        watcher.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    for channel in [*channels, sending]:
        await channel.close()
    ordered = sorted(latencies)
    return {"load_cpu_share": round((time.process_time() - load_cpu) / (time.monotonic() - load_wall), 2),
            "viewers": viewers, "sent": sent, "open_seconds": round(open_seconds, 1), "batches": batches,
            "measured": len(ordered),
            "send_p50_ms": round(1000 * statistics.median(send_times), 1) if send_times else None,
            "p50_ms": round(1000 * statistics.median(ordered), 1) if ordered else None,
            "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 1) if ordered else None}


# The run -----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def spawn(arguments: list[str], root: Path, **settings: str) -> subprocess.Popen[str]:
    env = {**os.environ, "LIMELIGHT_DATA_DIR": str(root), "LIMELIGHT_TLS": "off",
           "LIMELIGHT_GIFTS_AUDIT_SHIPPING": "off", **settings}
    return subprocess.Popen([sys.executable, "-m", MODULE, *arguments], env=env, stdout=subprocess.PIPE, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", default="500,1000,2500,5000")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=50.0)
    arguments = parser.parse_args()
    port = reserve_port()
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="limelight-bench-room-") as scratch:
        root = Path(scratch)
        os.environ["LIMELIGHT_DATA_DIR"] = str(root)
        # An open stream is a call in flight: the kit's default bound (1,024) would shed the rest.
        server = spawn(["serve", str(port)], root, LIMELIGHT_GIFTS_MAX_CONCURRENT_CALLS="50000")
        assert server.stdout is not None
        for line in server.stdout:
            if line.startswith("ready"):
                break
        try:
            live = asyncio.run(prepare(f"127.0.0.1:{port}", root))
            for viewers in (int(value) for value in arguments.viewers.split(",")):
                before = rss_kib(server.pid)
                loader = spawn(["load", f"127.0.0.1:{port}", live, str(viewers), str(arguments.seconds),
                                str(arguments.rate)], root)
                assert loader.stdout is not None
                per_stream, busy_from, busy_since = 0.0, 0.0, 0.0
                for line in loader.stdout:
                    if line.startswith("open"):
                        time.sleep(1.0)
                        per_stream = (rss_kib(server.pid) - before) / viewers
                        time.sleep(1.0)
                        busy_from, busy_since = cpu_seconds(server.pid), time.monotonic()
                    elif line.startswith("{"):
                        result = json.loads(line)
                        result["server_kib_per_stream"] = round(per_stream, 1)
                        # The server's cores in use while the senders ran (and the last batches went out).
                        result["server_cpu_share"] = round((cpu_seconds(server.pid) - busy_from)
                                                           / (time.monotonic() - busy_since), 2)
                        results.append(result)
                        print(json.dumps(result), file=sys.stderr, flush=True)
                loader.wait(timeout=60)
        finally:
            server.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=30)
    print(f"LIVE room: N viewers' streams, {arguments.rate:.0f} chat messages/s for {arguments.seconds:.0f} s, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print("| viewers | p50 ms | p99 ms | batches received | server KiB per stream | server cores | load cores |"
          " streams opened in s |")
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        print(f"| {result['viewers']} | {result['p50_ms']} | {result['p99_ms']} | {result['batches']} | "
              f"{result['server_kib_per_stream']} | {result['server_cpu_share']} | {result['load_cpu_share']} | "
              f"{result['open_seconds']} |")
    passing = [int(str(result["viewers"])) for result in results
               if result["p99_ms"] is not None and float(str(result["p99_ms"])) <= P99_TARGET_MS]
    print(f"largest N with p99 <= {P99_TARGET_MS:.0f} ms: {max(passing) if passing else 'none measured'}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        asyncio.run(serve(int(sys.argv[2])))
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        print(json.dumps(asyncio.run(load(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]),
                                          float(sys.argv[6])))), flush=True)
    else:
        main()
