"""The kit's edge validation: protovalidate's rules as field violations a person can read."""

from __future__ import annotations

from limelight.ingest.v1 import ingest_pb2

from libs.kit.validation import describe_pattern_violation, violations_of
from libs.resource_names import ID_RULE

ID = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"


def test_a_resource_name_with_capitals_gets_the_id_rule_not_a_regular_expression() -> None:
    request = ingest_pb2.UploadVideoRequest(start=ingest_pb2.UploadStart(parent="creators/Ada"))
    [violation] = [v for v in violations_of(request) if v.field == "start.parent"]
    assert violation.reason == "string.pattern"  # the rule stays machine-readable
    assert violation.description == (f"must be a name like creators/{{creator}}: the creator id 'Ada' is not "
                                      f"valid; an id is {ID_RULE}")
    assert "[a-z0-9]" not in violation.description and "regex" not in violation.description


def test_pattern_violations_are_described_in_words() -> None:
    assert describe_pattern_violation(f"^creators/{ID}/videos/{ID}$", "creators/ada/clips/v1") == (
        "must be a name like creators/{creator}/videos/{video}: expected 'videos' where it says 'clips'")
    assert describe_pattern_violation(f"^{ID}$", "Upload_1") == f"is not a valid id: an id is {ID_RULE}"
    assert describe_pattern_violation(f"^users/(?:-|{ID})$", "users/X").endswith("or '-' for any")
    assert describe_pattern_violation("^[A-Z]{2}$", "de") == (
        "does not have the expected form: 2 uppercase letters (A-Z)")
    assert describe_pattern_violation("^[A-Za-z0-9_-]{16,128}$", "short") == (
        "does not have the expected form: 16 to 128 uppercase letters (A-Z), lowercase letters (a-z), "
        "digits (0-9), underscores or hyphens")
    # Anything more involved is still no regular expression.
    assert describe_pattern_violation("^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", "x") == (
        "does not have the expected form: it does not fit the format this field documents")
