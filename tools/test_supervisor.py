"""The restart policy of `limelight up`: backoff that doubles per recent crash, and when to give up."""

from __future__ import annotations

from tools.supervisor import RestartPolicy

POLICY = RestartPolicy(first_backoff_s=1.0, max_backoff_s=5.0, max_crashes=5, window_s=60.0)


def test_the_first_crash_waits_the_first_backoff() -> None:
    assert POLICY.next_delay([100.0], now=100.0) == 1.0


def test_each_recent_crash_doubles_the_wait_up_to_the_cap() -> None:
    crashes: list[float] = []
    delays = []
    for second in range(4):
        crashes.append(100.0 + second)
        delays.append(POLICY.next_delay(crashes, now=100.0 + second))
    assert delays == [1.0, 2.0, 4.0, 5.0]


def test_the_fifth_crash_within_the_window_gives_up() -> None:
    assert POLICY.next_delay([100.0, 101.0, 102.0, 103.0, 104.0], now=104.0) is None


def test_crashes_older_than_the_window_are_forgiven() -> None:
    crashes = [0.0, 1.0, 2.0, 3.0, 100.0]
    assert POLICY.next_delay(crashes, now=100.0) == 1.0
