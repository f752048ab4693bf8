"""The disclosure case table (`testdata/disclosure_cases.json`) as domain commands, for the tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.compliance.disclosure.model import (
    CommercialDeclaration,
    DisclosureContent,
    Market,
    Placement,
    Relationship,
    Verdict,
)

CASES = Path(__file__).with_name("testdata") / "disclosure_cases.json"


@dataclass(frozen=True)
class DisclosureCase:
    case_id: str
    market: Market
    content: DisclosureContent
    verdict: Verdict
    advertising: bool
    rule: str
    reason: str


def load_cases(path: Path = CASES) -> list[DisclosureCase]:
    return [_case(entry) for entry in json.loads(path.read_text(encoding="utf-8"))]


def _case(entry: dict[str, Any]) -> DisclosureCase:
    content = DisclosureContent(
        content=f"creators/casebook/videos/{entry['id']}",
        caption=entry["caption"],
        hashtags=tuple(entry.get("hashtags", ())),
        declaration=CommercialDeclaration(Relationship(entry["relationship"]), entry.get("brand", "")),
        product_tags=tuple(entry.get("product_tags", ())),
        affiliate_links=tuple(entry.get("affiliate_links", ())),
        label_text=entry.get("label_text", ""),
        label_placement=Placement(entry.get("label_placement", "NONE")),
    )
    return DisclosureCase(entry["id"], Market(entry["market"]), content, Verdict(entry["verdict"]),
                          bool(entry["advertising"]), entry.get("rule", ""), entry["reason"])
