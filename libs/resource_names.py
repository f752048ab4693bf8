"""Resource names (AIP-122) parsed and formatted from the API's own pattern strings.

    GIFT_TRANSFER = ResourcePattern("creators/{creator}/lives/{live}/giftTransfers/{gift_transfer}")
    GIFT_TRANSFER.format(creator="ada", live="l1", gift_transfer="g7")
        # -> "creators/ada/lives/l1/giftTransfers/g7"
    GIFT_TRANSFER.parse(request.name)          # -> {"creator": "ada", "live": "l1", "gift_transfer": "g7"}
    GIFT_TRANSFER.parse(request.parent, field="parent")
    GIFT_TRANSFER.matches(name)                # -> bool

An id is what the protos' patterns allow: 1 to 63 characters, lowercase letters, digits
and hyphens, starting and ending with a letter or digit. `parse` refuses anything else with
`InvalidArgument` on the field it was given (reason `RESOURCE_NAME_INVALID`) and a message
a person can act on: the expected shape, which segment is wrong and what an id may
contain, never a regular expression. `wildcard=True` also accepts "-" for an id (AIP-159:
"every creator"), returned as "-".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from libs.errors import InvalidArgument

RESOURCE_NAME_INVALID = "RESOURCE_NAME_INVALID"
WILDCARD = "-"
MAX_ID_LENGTH = 63
ID_RULE = ("1 to 63 lowercase letters (a-z), digits (0-9) or hyphens, "
           "starting and ending with a letter or digit")

_ID_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def is_valid_id(text: str) -> bool:
    """Whether `text` may be the id segment of a resource name (see ID_RULE)."""
    return (0 < len(text) <= MAX_ID_LENGTH and _ID_CHARACTERS.issuperset(text)
            and not text.startswith("-") and not text.endswith("-"))


@dataclass(frozen=True)
class _Segment:
    text: str  # a collection literal, or the variable's name
    variable: bool


class ResourcePattern:
    """One resource name pattern, e.g. "users/{user}/payouts/{payout}" or "users/{user}/wallet"."""

    def __init__(self, pattern: str) -> None:
        segments: list[_Segment] = []
        for part in pattern.split("/"):
            if part.startswith("{") and part.endswith("}") and len(part) > 2:
                segments.append(_Segment(part[1:-1], True))
            elif part and "{" not in part and "}" not in part:
                segments.append(_Segment(part, False))
            else:
                raise ValueError(f"bad segment {part!r} in resource pattern {pattern!r}")
        variables = [s.text for s in segments if s.variable]
        if len(set(variables)) != len(variables):
            raise ValueError(f"resource pattern {pattern!r} names a variable twice")
        self.pattern = pattern
        self._segments = tuple(segments)
        self.variables: tuple[str, ...] = tuple(variables)

    def __repr__(self) -> str:
        return f"ResourcePattern({self.pattern!r})"

    def format(self, **ids: str) -> str:
        """The name for `ids`; ValueError (a programming error) for a missing or invalid id."""
        if set(ids) != set(self.variables):
            raise ValueError(f"{self.pattern} needs exactly {', '.join(self.variables)}; got {', '.join(ids)}")
        parts = []
        for segment in self._segments:
            if segment.variable:
                value = ids[segment.text]
                if not is_valid_id(value):
                    raise ValueError(f"{value!r} is not a valid {segment.text} id: an id is {ID_RULE}")
                parts.append(value)
            else:
                parts.append(segment.text)
        return "/".join(parts)

    def parse(self, name: str, *, field: str = "name", wildcard: bool = False) -> dict[str, str]:
        """The ids in `name`, by variable; InvalidArgument on `field` if it does not fit the pattern."""
        problem = self._problem(name, wildcard=wildcard)
        if problem is not None:
            raise InvalidArgument.for_field(field, problem, reason=RESOURCE_NAME_INVALID)
        return {segment.text: part for segment, part in zip(self._segments, name.split("/"), strict=True)
                if segment.variable}

    def matches(self, name: str, *, wildcard: bool = False) -> bool:
        return self._problem(name, wildcard=wildcard) is None

    def parent_of(self, ids: Mapping[str, str]) -> str:
        """The parent's name: "creators/ada/lives/l1" for a gift transfer, "users/u1" for "users/u1/wallet"."""
        kept = self._segments[:-2] if self._segments[-1].variable else self._segments[:-1]
        return "/".join(ids[s.text] if s.variable else s.text for s in kept)

    def _problem(self, name: str, *, wildcard: bool) -> str | None:
        shape = f"must be a name like {self.pattern}"
        if not name:
            return f"is empty; it {shape}"
        parts = name.split("/")
        if len(parts) != len(self._segments):
            return f"{shape} ({len(self._segments)} segments separated by '/'), not {len(parts)}"
        for segment, part in zip(self._segments, parts, strict=True):
            if not segment.variable:
                if part != segment.text:
                    return f"{shape}: expected {segment.text!r} where it says {part[:64]!r}"
            elif not (is_valid_id(part) or (wildcard and part == WILDCARD)):
                return (f"{shape}: the {segment.text} id {part[:64]!r} is not valid; an id is {ID_RULE}"
                        + (", or '-' for any" if wildcard else ""))
        return None
