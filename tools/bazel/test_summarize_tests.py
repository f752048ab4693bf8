from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tools.bazel.summarize_tests import collect_results, main

PYTEST_LOG = """\
collected 6 items

libs/storage/test_sqlite.py ....s.                                     [100%]
==================== 4 passed, 1 failed, 1 skipped in 0.42s ====================
"""

JUNIT = """\
<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">
<testsuite name="pytest" errors="0" failures="1" skipped="1" tests="6" time="0.4"></testsuite>
</testsuites>
"""


def configured(label: str, tags: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "id": {"targetConfigured": {"label": label}},
        "configured": {"targetKind": "py_test rule", "testSize": "MEDIUM", "tag": list(tags)},
    }


def result_event(
    folder: Path, label: str, status: str, *, cached: bool = False, junit: str | None = JUNIT
) -> dict[str, Any]:
    folder.mkdir()
    (folder / "test.log").write_text(PYTEST_LOG)
    outputs = [{"name": "test.log", "uri": (folder / "test.log").as_uri()}]
    if junit is not None:
        (folder / "test.xml").write_text(junit)
        outputs.append({"name": "test.xml", "uri": (folder / "test.xml").as_uri()})
    result = {"status": status, "cachedLocally": cached, "testActionOutput": outputs}
    return {"id": {"testResult": {"label": label, "run": 1}}, "testResult": result}


def write_events(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path


def test_counts_come_from_each_targets_junit_file_and_the_closing_pytest_line(tmp_path: Path) -> None:
    events = write_events(
        tmp_path / "events.json",
        [
            configured("//:libs/storage/pytest"),
            result_event(tmp_path / "storage", "//:libs/storage/pytest", "FAILED"),
            configured("//:libs/tlog/pytest"),
            result_event(tmp_path / "tlog", "//:libs/tlog/pytest", "FAILED", cached=True),
        ],
    )
    storage, tlog = collect_results(events)
    assert (storage.passed, storage.failed, storage.skipped) == (4, 1, 1)
    assert storage.pytest_outcome == "4 passed, 1 failed, 1 skipped in 0.42s"
    assert tlog.cached and not storage.cached


def test_prints_the_total_and_fails_when_any_test_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = write_events(
        tmp_path / "events.json",
        [configured("//:a/pytest"), result_event(tmp_path / "a", "//:a/pytest", "FAILED", cached=True)],
    )
    assert main(events) == 1
    total = capsys.readouterr().out.splitlines()[-1]
    assert total == "bazel: 4 passed, 1 failed, 1 skipped in 1 test targets (1 cached)"


def test_a_target_killed_before_writing_junit_counts_as_one_failure(tmp_path: Path) -> None:
    events = write_events(
        tmp_path / "events.json",
        [
            configured("//:slow/pytest"),
            result_event(tmp_path / "slow", "//:slow/pytest", "TIMEOUT", junit=None),
        ],
    )
    [slow] = collect_results(events)
    assert (slow.status, slow.failed) == ("TIMEOUT", 1)


def test_a_test_target_that_never_ran_counts_as_a_failure(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.json", [configured("//:broken/pytest")])
    assert main(events) == 1
    [broken] = collect_results(events)
    assert (broken.status, broken.failed) == ("NOT_RUN", 1)


def test_a_manual_test_built_but_not_run_is_left_out(tmp_path: Path) -> None:
    passing = JUNIT.replace('failures="1"', 'failures="0"')
    events = write_events(
        tmp_path / "events.json",
        [
            configured("//:a/pytest"),
            result_event(tmp_path / "a", "//:a/pytest", "PASSED", junit=passing),
            configured("//tools:types", tags=("manual",)),
        ],
    )
    assert [result.label for result in collect_results(events)] == ["//:a/pytest"]
    assert main(events) == 0


def test_a_manual_test_named_on_the_command_line_is_counted(tmp_path: Path) -> None:
    events = write_events(
        tmp_path / "events.json",
        [
            configured("//tools:types", tags=("manual",)),
            result_event(tmp_path / "types", "//tools:types", "FAILED"),
        ],
    )
    assert main(events) == 1


def test_an_all_green_run_exits_zero(tmp_path: Path) -> None:
    passing = JUNIT.replace('failures="1"', 'failures="0"')
    events = write_events(
        tmp_path / "events.json",
        [configured("//:a/pytest"), result_event(tmp_path / "a", "//:a/pytest", "PASSED", junit=passing)],
    )
    assert main(events) == 0
