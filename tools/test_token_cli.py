"""`limelight token --expired/--not-yet-valid`: tokens that tests expect to be refused (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from libs.auth.tokens import TokenVerifier, platform_signing_key
from libs.errors import Unauthenticated
from tools import cli


def token(root: Path, *flags: str) -> str:
    result = CliRunner().invoke(cli.app, ["token", "--subject", "users/alice", "--role", "viewer", *flags],
                                env={"LIMELIGHT_DATA_DIR": str(root)})
    assert result.exit_code == 0, result.output
    return result.output.strip()


@pytest.mark.parametrize(("flag", "reason"), [("--expired", "TOKEN_EXPIRED"), ("--not-yet-valid", "TOKEN_INVALID")])
def test_dev_tokens_for_tests_are_expired_or_not_yet_valid(tmp_path: Path, flag: str, reason: str) -> None:
    verifier = TokenVerifier(platform_signing_key(tmp_path).public_key())
    assert verifier.verify(token(tmp_path)).subject == "users/alice"
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify(token(tmp_path, flag))
    assert refused.value.reason == reason


def test_a_token_is_not_both_expired_and_not_yet_valid(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["token", "--subject", "users/a", "--role", "viewer", "--expired",
                                          "--not-yet-valid"], env={"LIMELIGHT_DATA_DIR": str(tmp_path)})
    assert result.exit_code != 0
