"""Input validation at the edge: protovalidate rules from the protos, as field violations.

Shape checks live in the protos and run here, before any handler; business rules live in
the domain.
"""

from __future__ import annotations

from typing import Any

import protovalidate
from google.protobuf.message import Message

from libs.errors import FieldViolation, InvalidArgument

_validator = protovalidate.Validator()


def field_path(path: Any) -> str:
    """Render a `buf.validate.FieldPath` as `items[2].sku` or `labels["k"]`."""
    rendered = ""
    for element in path.elements:
        if rendered:
            rendered += "."
        rendered += element.field_name
        subscript = element.subscript
        if subscript is None:
            continue
        if subscript.field == "string_key":
            rendered += f'["{subscript.value}"]'
        else:
            rendered += f"[{subscript.value}]"
    return rendered


def violations_of(message: Message) -> list[FieldViolation]:
    violations = []
    for violation in _validator.collect_violations(message):
        proto = violation.proto
        violations.append(
            # A cross-field rule has no field path; its rule id is the best name for it.
            FieldViolation(field=field_path(proto.field) or proto.rule_id, description=proto.message, reason=proto.rule_id)
        )
    return violations


def validate(message: Message) -> None:
    """Raise `InvalidArgument` naming every bad field, or return if the message is valid."""
    violations = violations_of(message)
    if violations:
        summary = "; ".join(f"{v.field or '(message)'}: {v.description}" for v in violations)
        raise InvalidArgument(f"invalid request: {summary}", violations=violations)
