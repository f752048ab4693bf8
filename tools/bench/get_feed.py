"""GetFeed through the running ranking service, against the traced kit echo in the same run.

    python -m tools.bench.get_feed [--videos 100000] [--users 10000] [--seconds 5] [--rounds 1]

Seeding (documented shortcut): the catalogue and histories are bulk-loaded straight into
ranking's SQLite store before the server starts (`RankingStore.put_candidates_now`,
`insert_signals_now`, `put_follows_now`): `--videos` videos by 5,000 creators over 200
hashtags, engagement counts drawn at random, and `--users` viewers with 20 engaged videos of
their favourite hashtag each and 3 follows. Consent to personalised content is recorded for
every viewer through compliance's real RecordConsent. The ranking server then starts as it
always does (loads the store, trains, builds the ANN index, starts local Ray and its scoring
actor) with tracing on every call.

Measured, each from its own load process (`tools.bench.grpc_load`):
(a) 8 GetFeed calls in flight, viewers in turn: p50/p99 (target p99 <= 50 ms);
(b) 64 in flight, interleaved rounds against the kit echo (a GetFeedRequest handler answering
    a fixed page): feeds/s (target >= 500) and the ratio to the echo; latency is queueing;
(c) PSS of the ranking process and every process under it (Ray's GCS, raylet, workers);
(d) RecordSignals with batches of 100 WATCH signals, 8 in flight: signals/s;
(e) the online-update delay: a viewer watches and likes five videos of a hashtag new to them;
    the time from sending RecordSignals until a GetFeed page shows two videos of that hashtag.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from google.protobuf.duration_pb2 import Duration
from limelight.compliance.v1 import consent_pb2, consent_pb2_grpc
from limelight.ranking.v1 import feed_pb2, signals_pb2, signals_pb2_grpc

from libs.auth.principal import Role, birth_date_for_age
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.clock import utc_now
from libs.ports import reserve_port
from services.compliance.server import build as build_compliance
from services.ranking.model import Candidate, EngagementCounts, Follow, SignalKind, StoredSignal, VideoRegistration
from services.ranking.server import build as build_ranking
from services.ranking.store import RankingStore
from tools.bench.grpc_load import (
    ECHO_METHOD,
    LoadResult,
    drive,
    interleaved_rounds,
    kit_echo,
    on_plaintext_loopback,
    print_result,
    ratio_table,
    run_load_process,
    serve_until_sigterm,
    spawn_server,
    stop_servers,
)

MODULE = "tools.bench.get_feed"
KIT_ECHO = "kit echo (tracing, auth, validation)"
FEED = "GetFeed (ranking, Ray scoring)"
FEED_METHOD = "/limelight.ranking.v1.FeedService/GetFeed"
SIGNALS_METHOD = "/limelight.ranking.v1.SignalService/RecordSignals"
CREATORS = 5_000
TOPICS = 200
HISTORY = 20

_REPLY = feed_pb2.GetFeedResponse(items=[feed_pb2.FeedItem(
    name=f"users/u0/feedItems/{n}", video=f"creators/c{n}/videos/v{n}", creator=f"creators/c{n}", position=n)
    for n in range(10)]).SerializeToString()


def topic_of_creator(creator: int) -> int:
    return creator % TOPICS


def bearer(root: Path, subject: str, role: Role = Role.VIEWER) -> tuple[tuple[str, str], ...]:
    claims = TokenClaims(subject, frozenset({role}), birth_date=birth_date_for_age(30, dt.date.today()), country="DE")
    return (("authorization", f"Bearer {mint_token(platform_signing_key(root), claims, ttl=dt.timedelta(hours=2))}"),)


def seed_store(root: Path, videos: int, users: int) -> None:
    chooser = random.Random(11)
    now = utc_now()
    store = RankingStore.open(root)
    try:
        by_topic: dict[int, list[str]] = {}
        batch: list[Candidate] = []
        for n in range(videos):
            creator = n % CREATORS
            topic = topic_of_creator(creator)
            registration = VideoRegistration(
                f"c{creator}", f"v{n}", dt.timedelta(seconds=chooser.randint(10, 120)), (f"t{topic}",), (), False,
                "de", chooser.choice(("DE", "AT", "FR")), now - dt.timedelta(hours=chooser.uniform(0, 168)))
            impressions = chooser.randint(0, 600)
            counts = EngagementCounts(impressions=impressions, views=impressions, completions=impressions // 3,
                                      likes=impressions // 10, comments=impressions // 100, shares=impressions // 200)
            batch.append(Candidate(registration, now, counts=counts))
            by_topic.setdefault(topic, []).append(registration.key)
            if len(batch) == 10_000:
                store.put_candidates_now(batch)
                batch = []
        store.put_candidates_now(batch)
        signals: list[StoredSignal] = []
        follows: list[Follow] = []
        for user in range(users):
            topic = user % TOPICS
            for key in chooser.sample(by_topic[topic], min(HISTORY, len(by_topic[topic]))):
                signals.append(StoredSignal(str(uuid.uuid4()), f"u{user}", SignalKind.LIKE, key, now, 0.0, 0, None, "",
                                            now))
            for creator in chooser.sample(range(topic, CREATORS, TOPICS), 3):
                follows.append(Follow(f"u{user}", f"c{creator}", now))
            if len(signals) >= 50_000:
                store.insert_signals_now(signals)
                signals = []
        store.insert_signals_now(signals)
        store.put_follows_now(follows)
    finally:
        store.close()


async def seed_consent(target: str, root: Path, users: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = consent_pb2_grpc.ConsentServiceStub(channel)

        async def grant(user: int) -> None:
            request = consent_pb2.RecordConsentRequest(
                parent=f"users/u{user}", request_id=str(uuid.uuid4()),
                purpose=consent_pb2.CONSENT_PURPOSE_PERSONALISED_CONTENT, decision=consent_pb2.CONSENT_DECISION_GRANTED,
                notice_version="bench", method=consent_pb2.CONSENT_METHOD_IN_APP_DIALOG, source="bench")
            request.decision_time.FromDatetime(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=5))
            await stub.RecordConsent(request, metadata=bearer(root, f"users/u{user}"), timeout=60)

        for start in range(0, users, 64):
            await asyncio.gather(*(grant(user) for user in range(start, min(users, start + 64))))


# Servers -----------------------------------------------------------------------------------------


async def serve(which: str, port: int) -> None:
    builds = {"kit-echo": kit_echo(feed_pb2.GetFeedRequest, _REPLY), "compliance": build_compliance,
              "ranking": build_ranking}
    await serve_until_sigterm({"kit-echo": "bench-kit-echo"}.get(which, which), builds[which], port)


# Load --------------------------------------------------------------------------------------------


async def load(target: str, method: str, in_flight: int, seconds: float, users: int) -> LoadResult:
    root = Path(os.environ["LIMELIGHT_DATA_DIR"])
    tokens = [bearer(root, f"users/u{user}") for user in range(min(users, 2_000))]
    async with grpc.aio.insecure_channel(target) as channel:
        if method == SIGNALS_METHOD:
            record = channel.unary_unary(method, request_serializer=signals_pb2.RecordSignalsRequest.SerializeToString,
                                         response_deserializer=signals_pb2.RecordSignalsResponse.FromString)
            chooser = random.Random(3)

            async def signals(sequence: int) -> object:
                user = sequence % len(tokens)
                batch = []
                for _ in range(100):
                    signal = signals_pb2.Signal(event_id=str(uuid.uuid4()), type=signals_pb2.SIGNAL_TYPE_WATCH,
                                                video=f"creators/c{(n := chooser.randrange(100_000)) % CREATORS}"
                                                      f"/videos/v{n}", watch_time=Duration(seconds=5))
                    signal.occur_time.GetCurrentTime()
                    signal.occur_time.nanos = 0
                    batch.append(signal)
                return await record(signals_pb2.RecordSignalsRequest(viewer=f"users/u{user}", signals=batch),
                                    metadata=tokens[user], timeout=30)

            return await drive(signals, in_flight=in_flight, seconds=seconds)
        call = channel.unary_unary(method, request_serializer=feed_pb2.GetFeedRequest.SerializeToString,
                                   response_deserializer=feed_pb2.GetFeedResponse.FromString)

        async def get_feed(sequence: int) -> object:
            user = sequence % len(tokens)
            return await call(feed_pb2.GetFeedRequest(viewer=f"users/u{user}"), metadata=tokens[user], timeout=30)

        return await drive(get_feed, in_flight=in_flight, seconds=seconds)


async def online_delay(target: str, root: Path, user: int = 7) -> tuple[float, int]:
    """Seconds from sending RecordSignals to the first GetFeed page with two videos of the new hashtag."""
    new_topic = (user % TOPICS + 100) % TOPICS
    creators = list(range(new_topic, CREATORS, TOPICS))
    metadata = bearer(root, f"users/u{user}")
    signals = []
    for creator in creators[:5]:
        video = f"creators/c{creator}/videos/v{creator}"
        for kind in (signals_pb2.SIGNAL_TYPE_WATCH, signals_pb2.SIGNAL_TYPE_LIKE, signals_pb2.SIGNAL_TYPE_SHARE):
            signal = signals_pb2.Signal(event_id=str(uuid.uuid4()), type=kind, video=video)  # type: ignore[arg-type]
            if kind == signals_pb2.SIGNAL_TYPE_WATCH:
                signal.watch_time.FromTimedelta(dt.timedelta(seconds=10))
            signal.occur_time.FromDatetime(dt.datetime.now(dt.UTC).replace(microsecond=0))
            signals.append(signal)
    async with grpc.aio.insecure_channel(target) as channel:
        feed = channel.unary_unary(FEED_METHOD, request_serializer=feed_pb2.GetFeedRequest.SerializeToString,
                                   response_deserializer=feed_pb2.GetFeedResponse.FromString)
        started = time.perf_counter()
        await signals_pb2_grpc.SignalServiceStub(channel).RecordSignals(
            signals_pb2.RecordSignalsRequest(viewer=f"users/u{user}", signals=signals), metadata=metadata)
        for pages in range(1, 200):
            page = await feed(feed_pb2.GetFeedRequest(viewer=f"users/u{user}", page_size=10), metadata=metadata)
            hits = sum(1 for item in page.items if topic_of_creator(int(item.creator.split("/c")[1])) == new_topic)
            if hits >= 2:
                return time.perf_counter() - started, pages
    return float("nan"), 200


def pss_kib(pid: int) -> tuple[int, int]:
    """(PSS of `pid`, PSS of every process below it) in KiB, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))

    def pss(process: int) -> int:
        try:
            for line in Path(f"/proc/{process}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    below, stack = 0, list(children.get(pid, []))
    while stack:
        process = stack.pop()
        below += pss(process)
        stack.extend(children.get(process, []))
    return pss(pid), below


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    arguments = parser.parse_args()
    on_plaintext_loopback()
    ports = {name: reserve_port() for name in ("compliance", "ranking", "kit-echo")}
    targets = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".bench-get-feed-") as scratch:
        root = Path(scratch)
        os.environ["LIMELIGHT_DATA_DIR"] = str(root)
        os.environ["LIMELIGHT_COMPLIANCE_TARGET"] = targets["compliance"]
        os.environ["LIMELIGHT_RANKING_RETRAIN_SECONDS"] = "0"
        began = time.perf_counter()
        seed_store(root, arguments.videos, arguments.users)
        seeded = time.perf_counter() - began
        servers = {"compliance": spawn_server(MODULE, "compliance", ports["compliance"], root)}
        try:
            asyncio.run(seed_consent(targets["compliance"], root, arguments.users))
            began = time.perf_counter()
            servers["ranking"] = spawn_server(MODULE, "ranking", ports["ranking"], root)
            started = time.perf_counter() - began
            servers["kit-echo"] = spawn_server(MODULE, "kit-echo", ports["kit-echo"], root)
            users = str(arguments.users)
            serial = run_load_process(MODULE, targets["ranking"], FEED_METHOD, "8", str(arguments.seconds), users,
                                      server_pid=servers["ranking"].pid)
            best = interleaved_rounds(MODULE, {FEED: servers["ranking"], KIT_ECHO: servers["kit-echo"]},
                                      {FEED: targets["ranking"], KIT_ECHO: targets["kit-echo"]},
                                      {FEED: FEED_METHOD, KIT_ECHO: ECHO_METHOD}, "64", str(arguments.seconds), users,
                                      rounds=arguments.rounds)
            own, below = pss_kib(servers["ranking"].pid)
            ingest = run_load_process(MODULE, targets["ranking"], SIGNALS_METHOD, "8", str(arguments.seconds), users,
                                      server_pid=servers["ranking"].pid)
            delay, pages = asyncio.run(online_delay(targets["ranking"], root))
        finally:
            stop_servers(servers)
    print(f"GetFeed, plaintext loopback, tracing on, {arguments.videos} videos, {arguments.users} viewers with "
          f"history, local Ray, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print(f"seeding the store {seeded:.0f} s; ranking start (load, train, index, Ray) {started:.0f} s")
    print(f"(a) 8 in flight: p50 {serial.p50_ms:.1f} ms, p99 {serial.p99_ms:.1f} ms, {serial.per_second:.0f} feeds/s, "
          f"{serial.errors} errors (target p99 <= 50 ms)")
    print(f"(b) 64 in flight, {arguments.seconds:.0f} s per run, best of {arguments.rounds}:")
    print(ratio_table(list(best.items()), best[KIT_ECHO]))
    print(f"    GetFeed: {best[FEED].per_second:.0f} feeds/s (target >= 500)")
    print(f"(c) PSS: ranking process {own / 1024:.0f} MiB, its Ray processes {below / 1024:.0f} MiB")
    print(f"(d) RecordSignals, batches of 100, 8 in flight: {100 * ingest.per_second:.0f} signals/s "
          f"(p99 {ingest.p99_ms:.1f} ms per batch, {ingest.errors} errors)")
    print(f"(e) online update: RecordSignals -> a GetFeed page showing the new taste: {1000 * delay:.0f} ms "
          f"({pages} page(s))")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        asyncio.run(serve(sys.argv[2], int(sys.argv[3])))
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        print_result(asyncio.run(load(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]),
                                      int(sys.argv[6]))))
    else:
        main()
