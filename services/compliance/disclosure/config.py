"""DisclosureService's settings, from the environment.

    LIMELIGHT_DISCLOSURE_RULESETS   directory of versioned rule sets (`<version>.json`);
                                    default: the rule sets shipped beside this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.compliance.disclosure.rulebook import RULESETS


@dataclass(frozen=True)
class DisclosureConfig:
    rulesets: Path = field(default=RULESETS)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> DisclosureConfig:
        configured = environ.get("LIMELIGHT_DISCLOSURE_RULESETS")
        return cls(rulesets=Path(configured) if configured else RULESETS)
