"""Settings every plain `pytest` session shares, before any test module is imported.

Unit and integration tests talk to servers on loopback only, and run them in plaintext
by explicit choice (`LIMELIGHT_TLS=off`, which `libs.kit.transport` allows on loopback
only). Bazel's pytest targets make the same choice in their environment
(`tools/bazel/pytest.bzl`), since they may not load this file. Tests of TLS itself pass
their transport explicitly (`libs/kit/test_transport.py`), and the whole-platform test
runs `limelight up` with `LIMELIGHT_TLS=on`, the default a person gets
(`tests/test_platform_up.py`).
"""

from __future__ import annotations

import os

os.environ["LIMELIGHT_TLS"] = "off"
