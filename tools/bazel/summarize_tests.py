"""Sum up a `bazel test` run from its build event file, one pytest line per target.

Bazel's own summary counts targets; CI wants tests. Each target's pytest wrote a
JUnit file (test.xml) and a log, and the build event file names the ones this run
produced or took from cache, so results left over from deleted targets are ignored.

Usage: python3 tools/bazel/summarize_tests.py BUILD_EVENTS.json
Exit status: 0 when every target passed, 1 otherwise.
"""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

PYTEST_CLOSING_LINE = re.compile(r"^=+ (?P<outcome>.+ in [0-9.]+s.*?) =+$")


@dataclass(frozen=True)
class TargetResult:
    label: str
    status: str
    cached: bool
    tests: int = 0
    failed: int = 0
    skipped: int = 0
    pytest_outcome: str = ""

    @property
    def passed(self) -> int:
        return self.tests - self.failed - self.skipped


def local_file(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def read_junit_counts(junit_file: Path) -> tuple[int, int, int]:
    """(tests, failed, skipped); errors (broken fixtures, collection) count as failed."""
    tests = failed = skipped = 0
    for suite in ElementTree.parse(junit_file).getroot().iter("testsuite"):
        tests += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return tests, failed, skipped


def read_pytest_outcome(log_file: Path) -> str:
    for line in reversed(log_file.read_text(errors="replace").splitlines()):
        if match := PYTEST_CLOSING_LINE.match(line.strip()):
            return match["outcome"]
    return ""


def target_result(label: str, event: dict[str, Any]) -> TargetResult:
    outputs = {output["name"]: local_file(output["uri"]) for output in event.get("testActionOutput", [])}
    tests = failed = skipped = 0
    if "test.xml" in outputs and outputs["test.xml"].exists():
        tests, failed, skipped = read_junit_counts(outputs["test.xml"])
    status = event.get("status", "NO_STATUS")
    if status != "PASSED" and failed == 0:
        # Timed out or crashed before pytest could report a failing test.
        tests, failed = tests + 1, 1
    outcome = ""
    if "test.log" in outputs and outputs["test.log"].exists():
        outcome = read_pytest_outcome(outputs["test.log"])
    return TargetResult(label, status, event.get("cachedLocally", False), tests, failed, skipped, outcome)


def collect_results(build_events: Path) -> list[TargetResult]:
    results: dict[str, TargetResult] = {}
    test_targets: set[str] = set()
    for line in build_events.read_text().splitlines():
        event = json.loads(line)
        event_id = event.get("id", {})
        if "testResult" in event_id and "testResult" in event:
            label = event_id["testResult"]["label"]
            results[label] = target_result(label, event["testResult"])
        elif "targetConfigured" in event_id and "testSize" in event.get("configured", {}):
            # A "manual" test is built but not run by `//...` (.bazelrc: --build_manual_tests).
            if "manual" not in event["configured"].get("tag", []):
                test_targets.add(event_id["targetConfigured"]["label"])
    for label in test_targets - results.keys():
        # Never ran: it failed to build, or the build stopped before it.
        results[label] = TargetResult(label, "NOT_RUN", cached=False, tests=1, failed=1)
    return sorted(results.values(), key=lambda result: result.label)


def main(build_events: Path) -> int:
    results = collect_results(build_events)
    for result in results:
        from_cache = " (cached)" if result.cached else ""
        print(f"{result.label}: {result.status}{from_cache} {result.pytest_outcome}".rstrip())
    passed = sum(result.passed for result in results)
    failed = sum(result.failed for result in results)
    skipped = sum(result.skipped for result in results)
    cached = sum(result.cached for result in results)
    print(
        f"bazel: {passed} passed, {failed} failed, {skipped} skipped "
        f"in {len(results)} test targets ({cached} cached)"
    )
    all_passed = bool(results) and all(result.status == "PASSED" for result in results)
    return 0 if all_passed and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
