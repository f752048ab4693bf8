"""The room bus across replicas: Redis Streams against a real redis-server this test starts."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.gifts.conftest import START
from services.gifts.model.room import ChatMessage, ChatPosted, RoomEvent
from services.gifts.room_bus import RedisStreamsBus
from services.gifts.test_room import FAST, Room, Viewer, start_room

REDIS_SERVER = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (Debian package redis-server; tools/setup.sh installs it)")
    port = _free_port()
    server = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def chat(live_id: str, sequence: int) -> RoomEvent:
    at = START + dt.timedelta(seconds=sequence)
    return RoomEvent(live_id, sequence, at, ChatPosted(ChatMessage(f"m{sequence}", live_id, "carol", "bob",
                                                                   f"text {sequence}", at, sequence)))


async def until(condition: object, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_replicas_receive_a_rooms_events_in_order_and_a_late_one_resumes_after_its_sequence(
        redis_url: str) -> None:
    writer, reader, late = RedisStreamsBus(redis_url), RedisStreamsBus(redis_url), RedisStreamsBus(redis_url)
    for bus in (writer, reader, late):
        await bus.start()
    try:
        received: list[RoomEvent] = []
        reader.subscribe("l1", 0, received.extend)
        await asyncio.sleep(0.05)
        for start in (1, 4):
            writer.publish([chat("l1", sequence) for sequence in range(start, start + 3)])
        writer.publish([chat("other", 1)])
        await until(lambda: len(received) == 6)
        assert [event.sequence for event in received] == [1, 2, 3, 4, 5, 6]
        assert received[0] == chat("l1", 1)  # the whole event, text included, survives the trip
        resumed: list[RoomEvent] = []
        late.subscribe("l1", 4, resumed.extend)
        await until(lambda: len(resumed) == 2)
        assert [event.sequence for event in resumed] == [5, 6]
        reader.unsubscribe("l1", received.extend)
    finally:
        for bus in (writer, reader, late):
            await bus.stop()


async def test_a_room_served_over_the_redis_bus_delivers_its_chat(redis_url: str, tmp_path: Path) -> None:
    running, service, clock = await start_room(tmp_path, dataclasses.replace(FAST, room_bus_url=redis_url))
    room = Room(running, service, tmp_path, clock)
    try:
        assert isinstance(service.room_parts.bus, RedisStreamsBus)
        live = await room.go_live("carol")
        viewer = Viewer(room, live, "vera")
        await viewer.until(lambda v: len(v.responses) >= 1)
        for number in range(5):
            await room.say(live, "bob", f"over redis {number}")
        await viewer.until(lambda v: len(v.texts) == 5)
        assert viewer.texts == [f"over redis {number}" for number in range(5)]
        await viewer.close()
    finally:
        await room.close()
        await running.stop(grace=0)
