"""Input validation at the edge: protovalidate rules from the protos, as field violations.

Shape checks live in the protos and run here, before any handler; business rules live in
the domain.
"""

from __future__ import annotations

from typing import Any

import protovalidate
from google.protobuf.message import Message

from libs.errors import FieldViolation, InvalidArgument
from libs.resource_names import ID_RULE, ResourcePattern

_validator = protovalidate.Validator()


def field_path(path: Any) -> str:
    """Render a `buf.validate.FieldPath` as `items[2].sku` or `labels["k"]`; '' when there is none."""
    rendered = ""
    if path is None:  # a message-level (CEL) rule names no field
        return rendered
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


# The id rule of `libs.resource_names`, as the protos' patterns spell it.
_ID_REGEX = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_WILDCARD_ID_REGEX = f"(?:-|{_ID_REGEX})"
# Character classes of simple patterns, in words.
_CLASS_WORDS = {"A-Z": "uppercase letters (A-Z)", "a-z": "lowercase letters (a-z)", "0-9": "digits (0-9)",
                "_": "underscores", "-": "hyphens"}


def describe_pattern_violation(pattern: str, value: object) -> str:
    """What a `string.pattern` rule wants, in words, never the regular expression: the
    resource-name rule (`libs.resource_names`) for names and ids, else the simple shape."""
    body = pattern.removeprefix("^").removesuffix("$")
    wildcard = _WILDCARD_ID_REGEX in body
    segments = body.replace(_WILDCARD_ID_REGEX, _ID_REGEX).split("/")
    if _ID_REGEX in segments and all(s == _ID_REGEX or s.isalnum() for s in segments):
        if segments == [_ID_REGEX]:
            return f"is not a valid id: an id is {ID_RULE}"
        shape = "/".join("{" + _singular(segments[i - 1] if i else "") + "}" if s == _ID_REGEX else s
                         for i, s in enumerate(segments))
        try:
            ResourcePattern(shape).parse(str(value), wildcard=wildcard)
        except InvalidArgument as problem:
            return problem.violations[0].description
        except ValueError:  # a shape ResourcePattern cannot hold (the same collection twice)
            pass
        return f"does not have the expected form: a name like {shape}, where each id is {ID_RULE}"
    return f"does not have the expected form: {_simple_shape(body)}"


def _singular(collection: str) -> str:
    return collection.removesuffix("s") or "id"


def _simple_shape(body: str) -> str:
    """`[A-Z]{2}` as '2 uppercase letters (A-Z)'; anything more involved as a generic sentence."""
    if body.startswith("[") and "]" in body:
        characters, _, count = body[1:].partition("]")
        words = []
        rest = characters
        for token, word in _CLASS_WORDS.items():
            if token in rest:
                words.append(word)
                rest = rest.replace(token, "", 1)
        quantity = {"": "one of", "+": "one or more", "*": "any number of"}.get(count)
        if quantity is None and count.startswith("{") and count.endswith("}"):
            low, comma, high = count[1:-1].partition(",")
            quantity = low if not comma else f"{low} to {high}" if high else f"at least {low}"
        if words and not rest and quantity is not None:
            return f"{quantity} {', '.join(words[:-1]) + ' or ' if len(words) > 1 else ''}{words[-1]}"
    return "it does not fit the format this field documents"


def violations_of(message: Message) -> list[FieldViolation]:
    violations = []
    for violation in _validator.collect_violations(message):
        proto = violation.proto
        description = proto.message
        if proto.rule_id == "string.pattern" and isinstance(violation.rule_value, str):
            description = describe_pattern_violation(violation.rule_value, violation.field_value)
        violations.append(
            # A cross-field rule has no field path; its rule id is the best name for it.
            FieldViolation(field=field_path(proto.field) or proto.rule_id, description=description,
                           reason=proto.rule_id)
        )
    return violations


def validate(message: Message) -> None:
    """Raise `InvalidArgument` naming every bad field, or return if the message is valid."""
    violations = violations_of(message)
    if violations:
        summary = "; ".join(f"{v.field or '(message)'}: {v.description}" for v in violations)
        raise InvalidArgument(f"invalid request: {summary}", violations=violations)
