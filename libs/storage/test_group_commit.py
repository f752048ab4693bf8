from __future__ import annotations

import threading

import pytest

from libs.errors import Unavailable
from libs.storage.group_commit import GroupCommitter


class Recorder:
    """A commit function that remembers its groups and can be held back or made to fail."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.fail_with: BaseException | None = None

    def commit(self, requests: list[int]) -> list[int | BaseException]:
        self.entered.set()
        self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.groups.append(requests)
        return [ValueError(f"odd {r}") if r % 2 else r * 10 for r in requests]


def test_requests_queued_during_a_commit_share_the_next_one() -> None:
    recorder = Recorder()
    committer: GroupCommitter[int, int] = GroupCommitter(recorder.commit, name="test")
    committer.start()
    recorder.release.clear()
    first = committer.submit(0)
    assert recorder.entered.wait(5)  # the writer is now inside the first commit
    waiting = [committer.submit(n) for n in (2, 4, 6)]
    recorder.release.set()
    assert first.result(timeout=5) == 0
    assert [future.result(timeout=5) for future in waiting] == [20, 40, 60]
    assert recorder.groups == [[0], [2, 4, 6]]
    committer.stop()


def test_a_request_can_fail_alone_and_a_failed_commit_fails_its_whole_group() -> None:
    recorder = Recorder()
    committer: GroupCommitter[int, int] = GroupCommitter(recorder.commit, name="test")
    committer.start()
    with pytest.raises(ValueError):
        committer.submit(3).result(timeout=5)
    recorder.fail_with = OSError("disk full")
    with pytest.raises(OSError):
        committer.submit(8).result(timeout=5)
    committer.stop()


def test_tick_runs_when_idle_and_stop_finishes_the_queue() -> None:
    recorder = Recorder()
    ticks: list[int] = []
    three_idle_ticks = threading.Event()

    def tick() -> None:
        ticks.append(1)
        if len(ticks) >= 3:
            three_idle_ticks.set()

    committer: GroupCommitter[int, int] = GroupCommitter(recorder.commit, name="test", tick=tick, idle_seconds=0.01)
    committer.start()
    assert three_idle_ticks.wait(5)
    assert len(ticks) >= 3
    recorder.release.clear()
    pending = [committer.submit(n) for n in (10, 12)]
    recorder.release.set()
    committer.stop()
    assert [future.result(timeout=0) for future in pending] == [100, 120]
    with pytest.raises(Unavailable):
        committer.submit(14)


def test_a_request_cancelled_while_queued_is_skipped_and_the_writer_keeps_serving() -> None:
    recorder = Recorder()
    committer: GroupCommitter[int, int] = GroupCommitter(recorder.commit, name="test")
    committer.start()
    recorder.release.clear()
    first = committer.submit(0)
    assert recorder.entered.wait(5)  # the writer is now inside the first commit
    abandoned = committer.submit(2)
    assert abandoned.cancel()
    kept = committer.submit(4)
    recorder.release.set()
    assert first.result(timeout=5) == 0
    assert kept.result(timeout=5) == 40
    assert committer.submit(6).result(timeout=5) == 60
    assert 2 not in [request for group in recorder.groups for request in group]
    committer.stop()
