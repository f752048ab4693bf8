from __future__ import annotations

import base64

import pytest

from libs.tlog.checkpoint import Checkpoint, MalformedCheckpoint, open_checkpoint
from libs.tlog.note import (
    InvalidSignature,
    MalformedKey,
    MalformedNote,
    NoteSigner,
    NoteVerifier,
    UnverifiedNote,
    open_note,
)

# The example published in golang.org/x/mod/sumdb/note's package documentation:
# Ed25519 is deterministic, so our encoding must reproduce it byte for byte.
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIGNATURE = ("\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")
GO_COSIGNATURE = "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"


def test_signing_reproduces_the_go_reference_note() -> None:
    signer = NoteSigner.from_key_string(GO_SIGNER_KEY)
    assert signer.verifier.key_string() == GO_VERIFIER_KEY
    assert signer.key_string() == GO_SIGNER_KEY
    assert signer.sign(GO_TEXT) == GO_TEXT + "\n" + GO_SIGNATURE


def test_a_note_opens_with_its_verifier_key_and_ignores_unknown_cosigners() -> None:
    verifier = NoteVerifier.from_key_string(GO_VERIFIER_KEY)
    assert open_note(GO_TEXT + "\n" + GO_SIGNATURE + GO_COSIGNATURE, [verifier]) == GO_TEXT


def test_an_edited_text_fails_its_signature() -> None:
    verifier = NoteVerifier.from_key_string(GO_VERIFIER_KEY)
    edited = GO_TEXT.replace("answer", "solution")
    with pytest.raises(InvalidSignature):
        open_note(edited + "\n" + GO_SIGNATURE, [verifier])


def test_a_note_signed_only_by_strangers_is_unverified() -> None:
    stranger = NoteSigner.generate("PeterNeumann")  # same name, other key: other key id
    with pytest.raises(UnverifiedNote):
        open_note(stranger.sign(GO_TEXT), [NoteVerifier.from_key_string(GO_VERIFIER_KEY)])


MALFORMED_NOTES = {
    "no blank line": GO_TEXT + GO_SIGNATURE,
    "no signature": GO_TEXT + "\n",
    "hyphen instead of em dash": GO_TEXT + "\n" + GO_SIGNATURE.replace("\u2014", "-"),
    "control character": GO_TEXT.replace("problem", "prob\x07lem") + "\n" + GO_SIGNATURE,
    "signature not base64": GO_TEXT + "\n\u2014 PeterNeumann !!!\n",
    "missing final newline": GO_TEXT + "\n" + GO_SIGNATURE.rstrip("\n"),
}


@pytest.mark.parametrize("case", list(MALFORMED_NOTES))
def test_malformed_notes_are_rejected(case: str) -> None:
    with pytest.raises(MalformedNote):
        open_note(MALFORMED_NOTES[case], [NoteVerifier.from_key_string(GO_VERIFIER_KEY)])


@pytest.mark.parametrize("key", [
    "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key id
    "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # space in the name
    "PeterNeumann+c74f20a3+AhpjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+fw==",  # not Ed25519
    "PeterNeumann+c74f20a3",
])
def test_malformed_verifier_keys_are_rejected(key: str) -> None:
    with pytest.raises(MalformedKey):
        NoteVerifier.from_key_string(key)


def test_a_checkpoint_round_trips_through_a_signed_note() -> None:
    signer = NoteSigner.generate("limelight.test/audit")
    checkpoint = Checkpoint("limelight.test/audit", 1048576, bytes(range(32)))
    note = checkpoint.sign(signer)
    assert note.startswith("limelight.test/audit\n1048576\n" + base64.b64encode(bytes(range(32))).decode() + "\n\n\u2014 ")
    assert open_checkpoint(note, [signer.verifier]) == checkpoint


def test_a_checkpoint_of_another_log_signed_by_the_same_key_is_refused() -> None:
    signer = NoteSigner.generate("limelight.test/audit")
    note = Checkpoint("limelight.test/other", 3, bytes(32)).sign(signer)
    with pytest.raises(MalformedCheckpoint):
        open_checkpoint(note, [signer.verifier])


@pytest.mark.parametrize("text", [
    "origin\n007\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",  # leading zeros
    "origin\n-1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    "origin\n7\nAAAA\n",  # root too short
    "origin\n7\n",
    "origin\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n",  # empty extension line
])
def test_malformed_checkpoint_bodies_are_rejected(text: str) -> None:
    with pytest.raises(MalformedCheckpoint):
        Checkpoint.parse(text)
