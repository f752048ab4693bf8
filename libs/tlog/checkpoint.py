"""C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint): a log's signed tree head.

The note text is the origin line, the tree size in decimal (no leading zeros), the
base64 root hash, and optional extension lines:

    limelight.example/audit
    1048576
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=

A log must never sign two checkpoints that no consistency proof can join; the
compliance service checks that before it signs (`services/compliance/audit/usecases.py`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

from libs.tlog.hashing import HASH_SIZE
from libs.tlog.note import MalformedNote, NoteSigner, NoteVerifier, open_note

_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")


class MalformedCheckpoint(MalformedNote):
    pass


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise MalformedCheckpoint("the origin is one non-empty line")
        if self.tree_size < 0:
            raise MalformedCheckpoint("tree size cannot be negative")
        if len(self.root_hash) != HASH_SIZE:
            raise MalformedCheckpoint(f"root hash must be {HASH_SIZE} bytes")
        if any(not line or "\n" in line for line in self.extensions):
            raise MalformedCheckpoint("extension lines are single non-empty lines")

    def text(self) -> str:
        lines = [self.origin, str(self.tree_size), base64.b64encode(self.root_hash).decode(), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.removesuffix("\n").split("\n")
        if not text.endswith("\n") or len(lines) < 3:
            raise MalformedCheckpoint("a checkpoint has an origin, a size and a root hash line")
        origin, size_text, root_text, *extensions = lines
        if not _TREE_SIZE.fullmatch(size_text):
            raise MalformedCheckpoint(f"tree size {size_text!r} is not a decimal without leading zeros")
        try:
            root_hash = base64.b64decode(root_text, validate=True)
        except binascii.Error as error:
            raise MalformedCheckpoint("root hash is not base64") from error
        return cls(origin, int(size_text), root_hash, tuple(extensions))

    def sign(self, signer: NoteSigner) -> str:
        return signer.sign(self.text())


def open_checkpoint(signed_note: str, verifiers: Iterable[NoteVerifier], *, origin: str | None = None) -> Checkpoint:
    """Verify the note's signature and read the checkpoint in it.

    `origin` defaults to the name of the (single) trusted key, which C2SP says should
    match: a checkpoint from another log signed by the same key must not pass as ours.
    """
    trusted = list(verifiers)
    checkpoint = Checkpoint.parse(open_note(signed_note, trusted))
    expected = origin if origin is not None else (trusted[0].name if len(trusted) == 1 else None)
    if expected is not None and checkpoint.origin != expected:
        raise MalformedCheckpoint(f"checkpoint is for origin {checkpoint.origin!r}, expected {expected!r}")
    return checkpoint
