"""Settings every test session shares, before any test module is imported."""

from __future__ import annotations

import os

# Tests talk to servers on loopback only; plaintext there is the explicit choice
# `libs.kit.transport` asks for. The kit's TLS tests pass their transport explicitly.
os.environ.setdefault("LIMELIGHT_TLS", "off")
