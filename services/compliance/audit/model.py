"""The audit log's domain: what is logged, who may append or read it, and how refusals are counted.

Plain data and rules, no I/O. The rules a regulator relies on are stated here once:

- **Who may call what** (`METHOD_ROLES`, `PUBLIC_METHODS`): what a verifier needs
  (key, checkpoints, inclusion and consistency proofs) is public and read-only; only
  services append; only compliance officers query or export, and each of their looks is
  itself logged (`officer_access_event`) before they see anything.
- **Whose events a service may append** (`require_own_events`): the actor rule below.
- **Refused calls**: an authenticated refusal is logged as its own event; refusals of
  calls that carried no valid token are counted per peer, method and reason within a
  window and logged as one counted event (`UnauthenticatedDenials`), so a flood of
  tokenless calls cannot grow the log without bound.

The AppendEvents actor rule. A call authenticated as `services/{S}` may append an event
only when:

1. its action is one of S's own, `{S}.<Method>`: a service records what happened in it,
   never what another service did (`compliance.*` events are written by compliance
   alone). Otherwise PERMISSION_DENIED `AUDIT_ACTION_MISMATCH`.
2. its actor is S itself or a principal S authenticated on the call it records (a user,
   or a service that called S), and its `on_behalf_of`, when set, goes with an actor that
   is a service (a user acts for nobody else). When the append call itself carries a
   delegation the kit verified, an event that names an `on_behalf_of` must name that
   user. Otherwise PERMISSION_DENIED `AUDIT_ACTOR_MISMATCH`.

Why not more: services ship events later, in batches from an outbox, outside the call
they describe, so compliance cannot re-check the token S saw. What remains trusted is
that S names its own callers truthfully: S can still claim that some user (or some
service) called S. It can no longer speak for another service's actions, which is
where a forgery misleads most (an officer's query, a publication decision).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass, field

from libs.audit.events import AuditEvent, Outcome
from libs.auth.principal import Principal, Role
from libs.errors import PermissionDenied

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

PUBLIC_METHODS = ("GetPublicKey", "GetCheckpoint", "GetInclusionProof", "GetConsistencyProof")
"""Anyone holding the log's public key may check it: these answer without a token and change nothing."""

METHOD_ROLES: Mapping[str, frozenset[Role]] = {
    "AppendEvents": frozenset({Role.SERVICE}),
    "QueryEvents": frozenset({Role.COMPLIANCE_OFFICER}),
    "ExportEvents": frozenset({Role.COMPLIANCE_OFFICER}),
}
"""The roles of which a caller needs one; the log's contents are for officers only."""

SERVICE_PREFIX = "services/"


@dataclass(frozen=True)
class SequencedEvent:
    leaf_index: int
    event: AuditEvent
    logged_at: dt.datetime
    """When the log made it durable (the commit's time)."""


@dataclass(frozen=True)
class Appended:
    event_id: str
    leaf_index: int
    newly_appended: bool
    """False when the event id was already logged (a retry)."""


@dataclass(frozen=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: bytes
    signed_note: str
    published_at: dt.datetime


@dataclass(frozen=True)
class EventFilter:
    """Each field that is set must match; the event time range is [start_time, end_time).

    `resource` matches exactly, or as a prefix when it ends with `/`
    (`creators/ada/` selects everything under that creator).
    """

    subject_ref: str = ""
    actor: str = ""
    action: str = ""
    resource: str = ""
    outcome: Outcome | None = None
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None

    @property
    def is_empty(self) -> bool:
        return self == EventFilter()

    def fingerprint(self) -> str:
        """Ties a page token to the filter it was issued for."""
        return hashlib.sha256(repr(astuple(self)).encode()).hexdigest()[:16]

    def searched(self) -> dict[str, str]:
        """What an officer searched for, as attributes of the event that logs their look."""
        return {name: value for name, value in (
            ("filter_actor", self.actor), ("filter_action", self.action), ("filter_resource", self.resource),
            ("filter_outcome", self.outcome.value if self.outcome else ""),
            ("filter_start_time", self.start_time.isoformat() if self.start_time else ""),
            ("filter_end_time", self.end_time.isoformat() if self.end_time else ""),
        ) if value}


@dataclass(frozen=True)
class EventPage:
    events: list[SequencedEvent]
    next_page_token: str


@dataclass(frozen=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    hashes: list[bytes]


@dataclass(frozen=True)
class ConsistencyProof:
    first_size: int
    second_size: int
    hashes: list[bytes]


@dataclass(frozen=True)
class ExportedRecord:
    leaf_index: int
    logged: SequencedEvent | None
    """None when the tree has a leaf here but the store has lost its record."""
    logged_leaf_hash: bytes
    inclusion_proof: list[bytes]


@dataclass(frozen=True)
class AuditExport:
    checkpoint: StoredCheckpoint
    complete_range: tuple[int, int] | None
    """[start, end) for an unfiltered export, which then holds every leaf in that range.

    A claim for the reader, not a proof: the offline verifier proves completeness from
    the leaves themselves (`libs.tlog.export`)."""
    records: Iterator[ExportedRecord] = field(repr=False)


# -- who may append what -------------------------------------------------------------


def require_own_events(caller: Principal, events: Sequence[AuditEvent]) -> None:
    """Refuse events the calling service has no standing to record (the actor rule above)."""
    # The verified identity (the service role and, with mutual TLS, the certificate), never the subject's shape.
    service = caller.service if caller.is_service else ""
    delegated = caller.on_behalf_of.subject if caller.on_behalf_of is not None else ""
    for position, event in enumerate(events):
        metadata = {"caller": caller.subject, "event_id": event.event_id, "position": str(position)}
        if not service or event.action.partition(".")[0] != service:
            raise PermissionDenied(
                f"{caller.subject} may append only its own actions ({service or '<service>'}.*), "
                f"not {event.action}",
                reason="AUDIT_ACTION_MISMATCH", metadata={**metadata, "action": event.action},
            )
        if event.on_behalf_of and not event.actor.startswith(SERVICE_PREFIX):
            raise PermissionDenied(
                f"event {event.event_id}: only a service acts on behalf of a user, not {event.actor}",
                reason="AUDIT_ACTOR_MISMATCH", metadata={**metadata, "actor": event.actor},
            )
        if delegated and event.on_behalf_of and event.on_behalf_of != delegated:
            raise PermissionDenied(
                f"event {event.event_id} claims to act for {event.on_behalf_of}, but this call acts for {delegated}",
                reason="AUDIT_ACTOR_MISMATCH", metadata={**metadata, "on_behalf_of": event.on_behalf_of},
            )


# -- the log's own events ------------------------------------------------------------------


def access_event(
    principal: Principal | None, *, event_id: str, action: str, outcome: Outcome, reason: str, trace_id: str,
    at: dt.datetime, subject_ref: str = "", attributes: Mapping[str, str] | None = None,
) -> AuditEvent:
    """An event about a call to the log itself: an officer's look, or a refused call."""
    on_behalf_of = principal.on_behalf_of.subject if principal and principal.on_behalf_of else ""
    return AuditEvent(
        event_id=event_id, actor=principal.subject if principal else "", on_behalf_of=on_behalf_of,
        action=action, resource="", outcome=outcome, reason=reason, trace_id=trace_id,
        event_time=at, subject_ref=subject_ref, attributes=attributes or {},
    )


def action_of_method(method: str) -> str:
    """`/limelight.compliance.v1.AuditService/QueryEvents` -> `compliance.QueryEvents`."""
    return f"compliance.{method.rsplit('/', 1)[-1]}"


# -- refusals without a token -------------------------------------------------------------

OTHER_PEERS = "other-peers"
"""The peer under which denials are counted once `max_peers` distinct peers are counting."""


@dataclass(frozen=True)
class DenialCount:
    """`count` refusals from `peer` for `method` with `reason`, between `first` and `last`."""

    peer: str
    method: str
    reason: str
    count: int
    first: dt.datetime
    last: dt.datetime


@dataclass
class _Counting:
    count: int
    first: dt.datetime
    last: dt.datetime


class UnauthenticatedDenials:
    """Counts refused calls that carried no valid token, one window per (peer, method, reason).

    A window opens with its first refusal and closes `window` later; `due` hands over the
    closed ones, each to be logged as one counted event. At most `max_peers` peers count
    at once; refusals from further peers are counted under `OTHER_PEERS`, so the log grows
    by a bounded number of events per window however many addresses a flood comes from.
    Refusals come from the event loop and windows close on the log's writer thread,
    hence the lock.
    """

    def __init__(self, *, window: dt.timedelta, max_peers: int) -> None:
        self._window = window
        self._max_peers = max_peers
        self._open: dict[tuple[str, str, str], _Counting] = {}
        self._peers: dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, *, peer: str, method: str, reason: str, at: dt.datetime) -> None:
        """One refusal; `peer` names the caller's host (`libs.kit.shedding.peer_host`), not a connection."""
        with self._lock:
            host = peer
            if host not in self._peers and len(self._peers) >= self._max_peers:
                host = OTHER_PEERS
            key = (host, method, reason)
            counting = self._open.get(key)
            if counting is None:
                self._open[key] = _Counting(1, at, at)
                self._peers[host] = self._peers.get(host, 0) + 1
            else:
                counting.count += 1
                counting.last = max(counting.last, at)

    def due(self, now: dt.datetime) -> list[DenialCount]:
        """The windows that have closed by `now`, removed from counting."""
        with self._lock:
            closed = [key for key, counting in self._open.items() if now - counting.first >= self._window]
            return [self._close(key) for key in closed]

    def drain(self) -> list[DenialCount]:
        """Every window, closed or not (the service is stopping)."""
        with self._lock:
            return [self._close(key) for key in list(self._open)]

    def _close(self, key: tuple[str, str, str]) -> DenialCount:
        counting = self._open.pop(key)
        host = key[0]
        self._peers[host] -= 1
        if not self._peers[host]:
            del self._peers[host]
        return DenialCount(host, key[1], key[2], counting.count, counting.first, counting.last)


def denial_count_event(counted: DenialCount, *, event_id: str, peer_ref: str) -> AuditEvent:
    """One event for a window of refused tokenless calls: how many, from whom (pseudonymously), when."""
    return AuditEvent(
        event_id=event_id, actor="", action=action_of_method(counted.method), resource="", outcome=Outcome.DENIED,
        reason=counted.reason, event_time=counted.last,
        attributes={"denials": str(counted.count), "peer_ref": peer_ref,
                    "first_denied_at": counted.first.isoformat(), "last_denied_at": counted.last.isoformat()},
    )
