"""The authorisation matrix: every RPC of every built service, called by every kind of caller.

The expectation is the README's "Who may call what" section itself: this test parses it
and asserts each cell against the real in-process platform, and each row's kit rule against
the policy the kit enforces, so the documentation and the rules cannot drift apart. Every
caller names resources it would plausibly name: a user its own, staff and services a user's
(`mx-owner`), and the intruder of the last column the owner's, with the owner's LIVE and
upload real (made through the API first).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pool, duration_pb2
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from limelight.affiliate.v1 import commissions_pb2, links_pb2, programs_pb2
from limelight.compliance.v1 import ads_pb2, audit_pb2, consent_pb2, disclosure_pb2, privacy_pb2
from limelight.gifts.v1 import (
    gifts_pb2,
    live_pb2,
    live_pb2_grpc,
    payouts_pb2,
    room_pb2,
    standing_pb2,
    standing_pb2_grpc,
    wallet_pb2,
)
from limelight.ingest.v1 import ingest_pb2
from limelight.privacy.v1 import subject_data_pb2
from limelight.ranking.v1 import (
    candidates_pb2,
    feed_pb2,
    follows_pb2,
    follows_pb2_grpc,
    signals_pb2,
)
from limelight.shop.v1 import catalog_pb2, inventory_pb2, live_pins_pb2, orders_pb2

from libs.auth.principal import Role
from libs.kit.config import SERVICES
from libs.kit.registry import package_of, proto_services
from libs.kit.validation import validate
from tests.conftest import InProcessPlatform
from tools.repository import repository_file

README = repository_file("README.md")
ACCESS_SECTION = "## Who may call what\n"


def access_section() -> str:
    """The README's access section, up to the next top-level heading: the table and its lists."""
    text = README.read_text()
    start = text.index(ACCESS_SECTION)
    end = text.find("\n## ", start + len(ACCESS_SECTION))
    return text[start:end if end >= 0 else len(text)]
OWNER = "mx-owner"
REFUSALS = {"UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND"}
STREAM_WAIT_S = 0.5  # a stream that sends nothing this long was admitted and is waiting for data


@dataclass(frozen=True)
class Caller:
    """One column: who calls (`subject`, `roles`; no token when `subject` is empty) and whose resources."""

    column: str
    subject: str
    roles: tuple[Role, ...]
    owner: str


CALLERS = (
    Caller("anonymous", "", (), OWNER),
    Caller("viewer", "users/mx-viewer", (Role.VIEWER,), "mx-viewer"),
    Caller("creator", "users/mx-creator", (Role.CREATOR,), "mx-creator"),
    Caller("merchant", "users/mx-merchant", (Role.MERCHANT,), "mx-merchant"),
    Caller("compliance_officer", "users/mx-officer", (Role.COMPLIANCE_OFFICER,), OWNER),
    Caller("service", "services/gifts", (Role.SERVICE,), OWNER),
    Caller("admin", "users/mx-admin", (Role.ADMIN,), OWNER),
    Caller("other user", "users/mx-intruder", (Role.VIEWER, Role.CREATOR, Role.MERCHANT), OWNER),
)


# -- the table -------------------------------------------------------------------------------


def row_key(method: str, server: str) -> str:
    """A method as the table names it: its path where `server` is its own package's server, and the
    path with `(server)` for a shared service of another package (`limelight.privacy.v1`'s
    SubjectDataService, which every service holding personal data serves)."""
    return method if method.split(".")[1] == server else f"{method} ({server})"


def split_row_key(key: str) -> tuple[str, str]:
    """(method path, the service that serves it) of a row key."""
    method, _, server = key.partition(" (")
    return method, server.removesuffix(")") or method.split(".")[1]


def _cells(line: str) -> list[str]:
    return [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]


@dataclass(frozen=True)
class Row:
    rule: str
    """The kit's role rule, as `MethodAccess.rule` words it."""
    answers: dict[str, str]
    """{caller column: answer}."""


def expected_matrix(text: str) -> dict[str, Row]:
    """{row key: row} from the access table (the only table in the file)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = _cells(lines[0])
    assert header[2:] == [caller.column for caller in CALLERS], "the columns after the rule are the callers, in order"
    matrix: dict[str, Row] = {}
    for line in lines[2:]:
        method, rule, *answers = _cells(line)
        assert method not in matrix, f"{method} is listed twice"
        assert len(answers) == len(CALLERS), f"{method}: one answer per caller"
        assert set(answers) <= REFUSALS | {"ok"}, f"{method}: unknown answer in {answers}"
        matrix[method] = Row(rule, dict(zip(header[2:], answers, strict=True)))
    return matrix


def unimplemented_services(text: str) -> list[str]:
    """The services listed as `- `limelight.x.v1.Service`: UNIMPLEMENTED …`, one line each."""
    return re.findall(r"^- `([\w.]+)`: UNIMPLEMENTED", text, flags=re.MULTILINE)


def answer_of(code: grpc.StatusCode, expected: str) -> str:
    """A status as the table writes it: UNAUTHENTICATED and PERMISSION_DENIED by name, anything else `ok`
    (the handler answered), except NOT_FOUND where the table promises the resource is hidden."""
    if code.name in REFUSALS - {"NOT_FOUND"} or (code is grpc.StatusCode.NOT_FOUND and expected == "NOT_FOUND"):
        return code.name
    return "ok"


# -- requests, well-formed, naming `owner`'s resources ---------------------------------------


def _uuid() -> str:
    return str(uuid.uuid4())


METADATA = ingest_pb2.VideoMetadata(
    caption="matrix", commercial_declaration=disclosure_pb2.CommercialDeclaration(
        relationship=disclosure_pb2.COMMERCIAL_RELATIONSHIP_NONE),
    ai_declaration=disclosure_pb2.AiDeclaration(usage=disclosure_pb2.AI_USAGE_NONE))


@dataclass(frozen=True)
class Resources:
    """What the requests name: `owner`'s resources, and the owner's real LIVE where it is theirs."""

    owner: str
    live: str
    upload: str

    @property
    def user(self) -> str:
        return f"users/{self.owner}"

    @property
    def creator(self) -> str:
        return f"creators/{self.owner}"

    @property
    def merchant(self) -> str:
        return f"merchants/{self.owner}"


def _upload(r: Resources) -> list[Message]:
    data = b"x"
    return [ingest_pb2.UploadVideoRequest(start=ingest_pb2.UploadStart(
        parent=r.creator, upload_id=r.upload.rsplit("/", 1)[-1], metadata=METADATA, size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(), filename="clip.mp4"))]


def _audit_event() -> audit_pb2.AuditEvent:
    event = audit_pb2.AuditEvent(event_id=_uuid(), actor="services/gifts", action="gifts.SendGift",
                                 outcome=audit_pb2.OUTCOME_SUCCEEDED)
    event.event_time.FromDatetime(dt.datetime.now(dt.UTC).replace(microsecond=0))
    return event


def _reach() -> ads_pb2.AdReach:
    reach = ads_pb2.AdReach(member_state="DE", impressions=1)
    reach.day.FromDatetime(dt.datetime.combine(dt.date.today(), dt.time(), dt.UTC))
    return reach


def _product(name: str = "") -> catalog_pb2.Product:
    return catalog_pb2.Product(name=name, title="matrix", price_minor=100, currency_code="EUR",
                               type=catalog_pb2.PRODUCT_TYPE_DIGITAL)


def _record_consent(r: Resources) -> consent_pb2.RecordConsentRequest:
    request = consent_pb2.RecordConsentRequest(
        parent=r.user, request_id=_uuid(), purpose=consent_pb2.CONSENT_PURPOSE_PERSONALISED_CONTENT,
        decision=consent_pb2.CONSENT_DECISION_GRANTED, notice_version="matrix",
        method=consent_pb2.CONSENT_METHOD_SETTINGS_TOGGLE, source="matrix")
    request.decision_time.FromDatetime(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=5))
    return request


def _standing_update(r: Resources) -> standing_pb2.UpdateAccountStandingRequest:
    request = standing_pb2.UpdateAccountStandingRequest(
        standing=standing_pb2.AccountStanding(name=f"{r.user}/standing", follower_count=5_000))
    request.update_mask.paths.append("follower_count")
    return request


AD = ads_pb2.Ad(kind=ads_pb2.AD_KIND_COMMERCIAL_CONTENT, content="creators/mx-owner/videos/v1",
                summary="Werbung | matrix", advertiser="Matrix GmbH", payer="Matrix GmbH", brand="Matrix",
                creator="creators/mx-owner", targeting=ads_pb2.AdTargeting(member_states=["DE"]))

def _registration(r: Resources) -> candidates_pb2.RegisterVideoRequest:
    request = candidates_pb2.RegisterVideoRequest(video=f"{r.creator}/videos/v1")
    request.duration.FromTimedelta(dt.timedelta(seconds=10))
    request.publish_time.FromDatetime(dt.datetime.now(dt.UTC).replace(microsecond=0))
    return request


def _signals(r: Resources) -> signals_pb2.RecordSignalsRequest:
    signal = signals_pb2.Signal(event_id=_uuid(), video=f"{r.creator}/videos/v1", type=signals_pb2.SIGNAL_TYPE_LIKE)
    signal.occur_time.FromDatetime(dt.datetime.now(dt.UTC).replace(microsecond=0))
    return signals_pb2.RecordSignalsRequest(viewer=r.user, signals=[signal])


RANKING = "/limelight.ranking.v1"
RANKING_REQUESTS: dict[str, Callable[[Resources], Message | list[Message]]] = {
    f"{RANKING}.CandidateService/RegisterVideo": _registration,
    f"{RANKING}.CandidateService/UnregisterVideo": lambda r: candidates_pb2.UnregisterVideoRequest(
        video=f"{r.creator}/videos/gone", reason=candidates_pb2.REMOVAL_REASON_TAKEN_DOWN),
    f"{RANKING}.CandidateService/GetCandidate": lambda r: candidates_pb2.GetCandidateRequest(
        name=f"{r.creator}/videos/v1/candidate"),
    f"{RANKING}.SignalService/RecordSignals": _signals,
    f"{RANKING}.SignalService/GetLiveEngagement": lambda r: signals_pb2.GetLiveEngagementRequest(
        name=f"{r.creator}/lives/none/engagement"),
    f"{RANKING}.FollowService/FollowCreator": lambda r: follows_pb2.FollowCreatorRequest(
        follower=r.user, creator="creators/mx-star"),
    f"{RANKING}.FollowService/UnfollowCreator": lambda r: follows_pb2.UnfollowCreatorRequest(
        name=f"{r.user}/follows/mx-star"),
    f"{RANKING}.FollowService/GetFollowStats": lambda r: follows_pb2.GetFollowStatsRequest(
        name=f"{r.creator}/followStats"),
    f"{RANKING}.FollowService/ListFollowers": lambda r: follows_pb2.ListFollowersRequest(parent=r.creator),
    f"{RANKING}.FollowService/ListFollowing": lambda r: follows_pb2.ListFollowingRequest(parent=r.user),
    f"{RANKING}.FeedService/GetFeed": lambda r: feed_pb2.GetFeedRequest(viewer=r.user),
    f"{RANKING}.FeedService/ExplainFeedItem": lambda r: feed_pb2.ExplainFeedItemRequest(
        name=f"{r.user}/feedItems/none"),
    f"{RANKING}.FeedService/GetRankingParameters": lambda r: feed_pb2.GetRankingParametersRequest(),
    f"{RANKING}.FeedService/GetFeedSettings": lambda r: feed_pb2.GetFeedSettingsRequest(
        name=f"{r.user}/feedSettings"),
    f"{RANKING}.FeedService/UpdateFeedSettings": lambda r: feed_pb2.UpdateFeedSettingsRequest(
        settings=feed_pb2.FeedSettings(name=f"{r.user}/feedSettings", default_mode=feed_pb2.FEED_MODE_PERSONALISED)),
}

def _affiliate_program(name: str = "") -> programs_pb2.Program:
    return programs_pb2.Program(
        name=name, display_name="matrix", commission_rate_bps=500, currency_code="EUR",
        attribution_window=duration_pb2.Duration(seconds=86_400 * 7), attribution_model=programs_pb2.ATTRIBUTION_MODEL_LAST_CLICK,
        return_window=duration_pb2.Duration(seconds=86_400))


def _now_stamp(minus: dt.timedelta = dt.timedelta(0)) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(dt.datetime.now(dt.UTC).replace(microsecond=0) - minus)
    return stamp


AFFILIATE = "/limelight.affiliate.v1."
AFFILIATE_REQUESTS: dict[str, Callable[[Resources], Message | list[Message]]] = {
    f"{AFFILIATE}ProgramService/CreateProgram": lambda r: programs_pb2.CreateProgramRequest(
        parent=r.merchant, program=_affiliate_program()),
    f"{AFFILIATE}ProgramService/GetProgram": lambda r: programs_pb2.GetProgramRequest(name=f"{r.merchant}/programs/none"),
    f"{AFFILIATE}ProgramService/ListPrograms": lambda r: programs_pb2.ListProgramsRequest(parent="merchants/-"),
    f"{AFFILIATE}ProgramService/UpdateProgram": lambda r: programs_pb2.UpdateProgramRequest(
        program=_affiliate_program(f"{r.merchant}/programs/none")),
    f"{AFFILIATE}LinkService/CreateTrackingLink": lambda r: links_pb2.CreateTrackingLinkRequest(
        parent=r.creator, program="merchants/mx-owner/programs/none"),
    f"{AFFILIATE}LinkService/GetTrackingLink": lambda r: links_pb2.GetTrackingLinkRequest(
        name=f"{r.creator}/trackingLinks/none"),
    f"{AFFILIATE}LinkService/ListTrackingLinks": lambda r: links_pb2.ListTrackingLinksRequest(parent=r.creator),
    f"{AFFILIATE}LinkService/SetLinkCommissionRate": lambda r: links_pb2.SetLinkCommissionRateRequest(
        name=f"{r.creator}/trackingLinks/none", commission_rate_bps=100),
    # A well-formed token that does not verify: the caller check comes first.
    f"{AFFILIATE}LinkService/RecordClick": lambda r: links_pb2.RecordClickRequest(
        request_id=_uuid(), token="v1.k1.bm9uZXhpc3Q.bm9uZXhpc3Q", click_time=_now_stamp()),
    f"{AFFILIATE}LinkService/ReviewLinkDisclosure": lambda r: links_pb2.ReviewLinkDisclosureRequest(
        tracking_link=f"{r.creator}/trackingLinks/none", content=f"{r.creator}/videos/v1", brand_name="Matrix"),
    f"{AFFILIATE}CommissionService/AttributeOrder": lambda r: commissions_pb2.AttributeOrderRequest(
        request_id=_uuid(), order=f"{r.user}/orders/matrix", merchant="merchants/mx-shop", currency_code="EUR",
        lines=[commissions_pb2.AttributedLine(product="merchants/mx-shop/products/p", paid_minor=100)],
        order_time=_now_stamp()),
    f"{AFFILIATE}CommissionService/RecordOrderEvent": lambda r: commissions_pb2.RecordOrderEventRequest(
        request_id=_uuid(), order=f"{r.user}/orders/matrix", type=commissions_pb2.ORDER_EVENT_TYPE_FULFILLED,
        event_time=_now_stamp()),
    f"{AFFILIATE}CommissionService/GetCommission": lambda r: commissions_pb2.GetCommissionRequest(
        name=f"{r.creator}/commissions/none"),
    f"{AFFILIATE}CommissionService/ListCommissions": lambda r: commissions_pb2.ListCommissionsRequest(parent=r.creator),
    f"{AFFILIATE}CommissionService/SettleCommissions": lambda r: commissions_pb2.SettleCommissionsRequest(
        request_id=_uuid(), settle_before_time=_now_stamp(dt.timedelta(seconds=5))),
    f"{AFFILIATE}CommissionService/FreezeCommission": lambda r: commissions_pb2.FreezeCommissionRequest(
        request_id=_uuid(), name=f"{r.creator}/commissions/none", reason="MATRIX"),
    f"{AFFILIATE}CommissionService/UnfreezeCommission": lambda r: commissions_pb2.UnfreezeCommissionRequest(
        request_id=_uuid(), name=f"{r.creator}/commissions/none"),
    f"{AFFILIATE}CommissionService/GetEarnings": lambda r: commissions_pb2.GetEarningsRequest(parent=r.creator),
    f"{AFFILIATE}CommissionService/PayOutCommissions": lambda r: commissions_pb2.PayOutCommissionsRequest(
        request_id=_uuid(), parent=r.creator),
}

REQUESTS: dict[str, Callable[[Resources], Message | list[Message]]] = {
    **AFFILIATE_REQUESTS,
    **RANKING_REQUESTS,
    "/limelight.ingest.v1.IngestService/UploadVideo": _upload,
    "/limelight.ingest.v1.IngestService/GetUpload": lambda r: ingest_pb2.GetUploadRequest(name=r.upload),
    "/limelight.ingest.v1.IngestService/GetVideo": lambda r: ingest_pb2.GetVideoRequest(name=f"{r.creator}/videos/v1"),
    "/limelight.ingest.v1.IngestService/ListVideos": lambda r: ingest_pb2.ListVideosRequest(parent=r.creator),
    "/limelight.ingest.v1.IngestService/WatchVideo": lambda r: ingest_pb2.WatchVideoRequest(
        name=f"{r.creator}/videos/v1"),
    "/limelight.gifts.v1.GiftService/ListGifts": lambda r: gifts_pb2.ListGiftsRequest(),
    "/limelight.gifts.v1.GiftService/SendGift": lambda r: gifts_pb2.SendGiftRequest(
        request_id=_uuid(), live=r.live, gift="gifts/rose", count=1),
    "/limelight.gifts.v1.GiftService/ResolveHeldGift": lambda r: gifts_pb2.ResolveHeldGiftRequest(
        request_id=_uuid(), name=f"{r.live}/giftTransfers/none", decision=gifts_pb2.HELD_GIFT_DECISION_VOID,
        reason="FRAUD"),
    "/limelight.gifts.v1.GiftService/StreamGifts": lambda r: gifts_pb2.StreamGiftsRequest(live=r.live),
    "/limelight.gifts.v1.GiftService/GetLiveLeaderboard": lambda r: gifts_pb2.GetLiveLeaderboardRequest(live=r.live),
    "/limelight.gifts.v1.GiftService/GetPeriodLeaderboard": lambda r: gifts_pb2.GetPeriodLeaderboardRequest(
        kind=gifts_pb2.LEADERBOARD_KIND_TOP_GIFTERS, period=gifts_pb2.LEADERBOARD_PERIOD_DAY),
    "/limelight.gifts.v1.LiveService/StartLive": lambda r: live_pb2.StartLiveRequest(
        parent=r.creator, request_id=_uuid(), title="matrix"),
    "/limelight.gifts.v1.LiveService/EndLive": lambda r: live_pb2.EndLiveRequest(name=r.live),
    "/limelight.gifts.v1.LiveService/GetLiveSession": lambda r: live_pb2.GetLiveSessionRequest(name=r.live),
    "/limelight.gifts.v1.LiveService/ListLiveSessions": lambda r: live_pb2.ListLiveSessionsRequest(parent=r.creator),
    "/limelight.gifts.v1.LiveService/GetLiveEligibility": lambda r: live_pb2.GetLiveEligibilityRequest(
        creator=r.creator),
    "/limelight.gifts.v1.PayoutService/RequestPayout": lambda r: payouts_pb2.RequestPayoutRequest(
        request_id=_uuid(), parent=r.user, diamonds=1_000, currency_code="EUR", payout_method="sepa"),
    "/limelight.gifts.v1.PayoutService/GetPayoutPolicy": lambda r: payouts_pb2.GetPayoutPolicyRequest(),
    "/limelight.gifts.v1.PayoutService/GetPayout": lambda r: payouts_pb2.GetPayoutRequest(name=f"{r.user}/payouts/p1"),
    "/limelight.gifts.v1.PayoutService/ListPayouts": lambda r: payouts_pb2.ListPayoutsRequest(parent=r.user),
    "/limelight.gifts.v1.PayoutService/SettlePayout": lambda r: payouts_pb2.SettlePayoutRequest(
        request_id=_uuid(), name=f"{r.user}/payouts/p1", outcome=payouts_pb2.PAYOUT_OUTCOME_PAID,
        provider_reference="ref-1"),
    "/limelight.gifts.v1.AccountStandingService/GetAccountStanding": lambda r: standing_pb2.GetAccountStandingRequest(
        name=f"{r.user}/standing"),
    "/limelight.gifts.v1.AccountStandingService/UpdateAccountStanding": _standing_update,
    "/limelight.gifts.v1.WalletService/GetWallet": lambda r: wallet_pb2.GetWalletRequest(name=f"{r.user}/wallet"),
    "/limelight.gifts.v1.WalletService/ListTransactions": lambda r: wallet_pb2.ListTransactionsRequest(
        parent=f"{r.user}/wallet"),
    "/limelight.gifts.v1.WalletService/ListCoinPacks": lambda r: wallet_pb2.ListCoinPacksRequest(),
    "/limelight.gifts.v1.WalletService/TopUpCoins": lambda r: wallet_pb2.TopUpCoinsRequest(
        request_id=_uuid(), wallet=f"{r.user}/wallet", coin_pack="coinPacks/starter",
        receipt=wallet_pb2.PaymentReceipt(provider="local", receipt="not-a-receipt")),
    "/limelight.gifts.v1.WalletService/ReverseTopUp": lambda r: wallet_pb2.ReverseTopUpRequest(
        request_id=_uuid(), top_up=f"{r.user}/wallet/transactions/1", kind=wallet_pb2.REVERSAL_KIND_REFUND,
        provider_reference="ref-1"),
    "/limelight.compliance.v1.AdRepositoryService/RegisterAd": lambda r: ads_pb2.RegisterAdRequest(
        request_id=_uuid(), ad=AD),
    "/limelight.compliance.v1.AdRepositoryService/RecordAdImpressions": lambda r: ads_pb2.RecordAdImpressionsRequest(
        ad="ads/none", request_id=_uuid(), reach=[_reach()]),
    "/limelight.compliance.v1.AdRepositoryService/GetAd": lambda r: ads_pb2.GetAdRequest(name="ads/none"),
    "/limelight.compliance.v1.AdRepositoryService/SearchAds": lambda r: ads_pb2.SearchAdsRequest(),
    "/limelight.compliance.v1.AdRepositoryService/CheckAdTargeting": lambda r: ads_pb2.CheckAdTargetingRequest(
        viewer=r.user, targeting=ads_pb2.AdTargeting(member_states=["DE"])),
    "/limelight.compliance.v1.ConsentService/RecordConsent": _record_consent,
    "/limelight.compliance.v1.ConsentService/WithdrawConsent": lambda r: consent_pb2.WithdrawConsentRequest(
        parent=r.user, request_id=_uuid(), purpose=consent_pb2.CONSENT_PURPOSE_PERSONALISED_CONTENT, source="matrix"),
    "/limelight.compliance.v1.ConsentService/ListConsentRecords": lambda r: consent_pb2.ListConsentRecordsRequest(
        parent=r.user),
    "/limelight.compliance.v1.ConsentService/GetConsentState": lambda r: consent_pb2.GetConsentStateRequest(
        parent=r.user),
    # A well-formed string the decoder refuses (truncated): the caller check comes first.
    "/limelight.compliance.v1.ConsentService/RecordTcfConsent": lambda r: consent_pb2.RecordTcfConsentRequest(
        parent=r.user, request_id=_uuid(), tc_string="CPxxxxxxxxxxxxxxxxxxxxxxxxxx", notice_version="matrix",
        source="matrix"),
    "/limelight.compliance.v1.ConsentService/CheckConsent": lambda r: consent_pb2.CheckConsentRequest(
        parent=r.user, purposes=[consent_pb2.CONSENT_PURPOSE_PERSONALISED_CONTENT]),
    "/limelight.compliance.v1.ConsentService/WatchConsentChanges": lambda r: consent_pb2.WatchConsentChangesRequest(),
    "/limelight.privacy.v1.SubjectDataService/ExportSubjectData": lambda r: subject_data_pb2.ExportSubjectDataRequest(
        subject=r.user),
    "/limelight.privacy.v1.SubjectDataService/EraseSubjectData": lambda r: subject_data_pb2.EraseSubjectDataRequest(
        subject=r.user),
    "/limelight.privacy.v1.SubjectDataService/DescribeProcessing":
        lambda r: subject_data_pb2.DescribeProcessingRequest(),
    "/limelight.gifts.v1.RoomService/SendChatMessage": lambda r: room_pb2.SendChatMessageRequest(
        live=r.live, request_id=_uuid(), text="matrix"),
    "/limelight.gifts.v1.RoomService/StreamRoom": lambda r: room_pb2.StreamRoomRequest(live=r.live),
    "/limelight.gifts.v1.RoomService/DeleteChatMessage": lambda r: room_pb2.DeleteChatMessageRequest(
        name=f"{r.live}/chatMessages/m1", reason="matrix"),
    "/limelight.gifts.v1.RoomService/MuteViewer": lambda r: room_pb2.MuteViewerRequest(
        live=r.live, user="users/mx-muted", duration=duration_pb2.Duration(seconds=60), reason="matrix"),
    "/limelight.gifts.v1.RoomService/BanViewer": lambda r: room_pb2.BanViewerRequest(
        parent=r.creator, user="users/mx-banned", reason="matrix"),
    "/limelight.gifts.v1.RoomService/UnbanViewer": lambda r: room_pb2.UnbanViewerRequest(
        name=f"{r.creator}/bans/mx-banned"),
    "/limelight.gifts.v1.RoomService/AppointModerator": lambda r: room_pb2.AppointModeratorRequest(
        parent=r.creator, user="users/mx-moderator"),
    "/limelight.gifts.v1.RoomService/RemoveModerator": lambda r: room_pb2.RemoveModeratorRequest(
        name=f"{r.creator}/moderators/mx-moderator"),
    "/limelight.gifts.v1.RoomService/UpdateKeywordFilter": lambda r: room_pb2.UpdateKeywordFilterRequest(
        keyword_filter=room_pb2.KeywordFilter(name=f"{r.creator}/keywordFilter", keywords=["matrix"])),
    "/limelight.gifts.v1.RoomService/GetKeywordFilter": lambda r: room_pb2.GetKeywordFilterRequest(
        name=f"{r.creator}/keywordFilter"),
    "/limelight.gifts.v1.RoomService/UpdateRoomSettings": lambda r: room_pb2.UpdateRoomSettingsRequest(
        room_settings=room_pb2.RoomSettings(name=f"{r.live}/roomSettings")),
    "/limelight.gifts.v1.RoomService/SubmitQuestion": lambda r: room_pb2.SubmitQuestionRequest(
        live=r.live, request_id=_uuid(), text="matrix?"),
    "/limelight.gifts.v1.RoomService/UpvoteQuestion": lambda r: room_pb2.UpvoteQuestionRequest(
        name=f"{r.live}/questions/q1"),
    "/limelight.gifts.v1.RoomService/UpdateQuestionState": lambda r: room_pb2.UpdateQuestionStateRequest(
        name=f"{r.live}/questions/q1", state=room_pb2.QUESTION_STATE_ANSWERED),
    "/limelight.gifts.v1.RoomService/InviteCoHost": lambda r: room_pb2.InviteCoHostRequest(
        live=r.live, creator="creators/mx-cohost"),
    "/limelight.gifts.v1.RoomService/AcceptCoHostInvitation": lambda r: room_pb2.AcceptCoHostInvitationRequest(
        name=f"{r.live}/coHosts/mx-cohost"),
    "/limelight.gifts.v1.RoomService/EndCoHosting": lambda r: room_pb2.EndCoHostingRequest(
        name=f"{r.live}/coHosts/mx-cohost"),
    "/limelight.compliance.v1.PersonalDataKeyService/GetDataKey": lambda r: privacy_pb2.GetDataKeyRequest(
        subject=r.user),
    "/limelight.compliance.v1.DataSubjectService/CreateDataSubjectRequest":
        lambda r: privacy_pb2.CreateDataSubjectRequestRequest(
            parent=r.user, request_id=_uuid(), type=privacy_pb2.DATA_SUBJECT_REQUEST_TYPE_ACCESS),
    "/limelight.compliance.v1.DataSubjectService/GetDataSubjectRequest":
        lambda r: privacy_pb2.GetDataSubjectRequestRequest(name=f"{r.user}/dataSubjectRequests/none"),
    "/limelight.compliance.v1.DataSubjectService/ListDataSubjectRequests":
        lambda r: privacy_pb2.ListDataSubjectRequestsRequest(parent=r.user),
    "/limelight.compliance.v1.DataSubjectService/ExtendDataSubjectRequest":
        lambda r: privacy_pb2.ExtendDataSubjectRequestRequest(
            name=f"{r.user}/dataSubjectRequests/none", extension_months=1, reason="many records to gather"),
    "/limelight.compliance.v1.DataSubjectService/RejectDataSubjectRequest":
        lambda r: privacy_pb2.RejectDataSubjectRequestRequest(
            name=f"{r.user}/dataSubjectRequests/none", reason="manifestly unfounded, see the notice"),
    "/limelight.compliance.v1.DataSubjectService/DownloadDataExport":
        lambda r: privacy_pb2.DownloadDataExportRequest(name=f"{r.user}/dataSubjectRequests/none"),
    "/limelight.compliance.v1.DataSubjectService/ListProcessingActivities":
        lambda r: privacy_pb2.ListProcessingActivitiesRequest(),
    "/limelight.compliance.v1.AuditService/AppendEvents": lambda r: audit_pb2.AppendEventsRequest(
        events=[_audit_event()]),
    "/limelight.compliance.v1.AuditService/GetCheckpoint": lambda r: audit_pb2.GetCheckpointRequest(),
    "/limelight.compliance.v1.AuditService/GetInclusionProof": lambda r: audit_pb2.GetInclusionProofRequest(
        event_id=_uuid()),
    "/limelight.compliance.v1.AuditService/GetConsistencyProof": lambda r: audit_pb2.GetConsistencyProofRequest(
        first_size=1, second_size=2),
    "/limelight.compliance.v1.AuditService/QueryEvents": lambda r: audit_pb2.QueryEventsRequest(page_size=1),
    "/limelight.compliance.v1.AuditService/ExportEvents": lambda r: audit_pb2.ExportEventsRequest(),
    "/limelight.compliance.v1.AuditService/GetPublicKey": lambda r: audit_pb2.GetPublicKeyRequest(),
    "/limelight.compliance.v1.DisclosureService/EvaluateDisclosure": lambda r: disclosure_pb2.EvaluateDisclosureRequest(
        market=disclosure_pb2.MARKET_GERMANY, content=disclosure_pb2.DisclosureContent(
            content=f"{r.creator}/videos/v1", caption="matrix",
            declaration=disclosure_pb2.CommercialDeclaration(relationship=disclosure_pb2.COMMERCIAL_RELATIONSHIP_NONE))),
    "/limelight.compliance.v1.DisclosureService/AssessAiContent": lambda r: disclosure_pb2.AssessAiContentRequest(
        content=f"{r.creator}/videos/v1", declaration=disclosure_pb2.AiDeclaration(usage=disclosure_pb2.AI_USAGE_NONE),
        c2pa=disclosure_pb2.C2paEvidence(validation=disclosure_pb2.C2PA_VALIDATION_ABSENT),
        market=disclosure_pb2.MARKET_GERMANY),
    "/limelight.compliance.v1.DisclosureService/ListDisclosureRules": lambda r: disclosure_pb2.ListDisclosureRulesRequest(),
    "/limelight.shop.v1.CatalogService/CreateProduct": lambda r: catalog_pb2.CreateProductRequest(
        parent=f"merchants/{r.owner}", product=_product()),
    "/limelight.shop.v1.CatalogService/GetProduct": lambda r: catalog_pb2.GetProductRequest(
        name=f"merchants/{r.owner}/products/none"),
    "/limelight.shop.v1.CatalogService/ListProducts": lambda r: catalog_pb2.ListProductsRequest(
        parent=f"merchants/{r.owner}"),
    "/limelight.shop.v1.CatalogService/UpdateProduct": lambda r: catalog_pb2.UpdateProductRequest(
        product=_product(name=f"merchants/{r.owner}/products/none")),
    "/limelight.shop.v1.InventoryService/GetInventory": lambda r: inventory_pb2.GetInventoryRequest(
        name=f"merchants/{r.owner}/products/none/variants/default/inventory"),
    "/limelight.shop.v1.InventoryService/AdjustInventory": lambda r: inventory_pb2.AdjustInventoryRequest(
        request_id=_uuid(), name=f"merchants/{r.owner}/products/none/variants/default/inventory", delta=1,
        reason=inventory_pb2.ADJUSTMENT_REASON_RESTOCK),
    "/limelight.shop.v1.InventoryService/ReserveStock": lambda r: inventory_pb2.ReserveStockRequest(
        request_id=_uuid(), product=f"merchants/{r.owner}/products/none", quantity=1, holder=r.user),
    "/limelight.shop.v1.InventoryService/ReleaseReservation": lambda r: inventory_pb2.ReleaseReservationRequest(
        request_id=_uuid(), name=f"merchants/{r.owner}/reservations/none"),
    "/limelight.shop.v1.InventoryService/GetReservation": lambda r: inventory_pb2.GetReservationRequest(
        name=f"merchants/{r.owner}/reservations/none"),
    "/limelight.shop.v1.LivePinService/PinProduct": lambda r: live_pins_pb2.PinProductRequest(
        parent=r.live, product=f"merchants/{r.owner}/products/none"),
    "/limelight.shop.v1.LivePinService/UnpinProduct": lambda r: live_pins_pb2.UnpinProductRequest(
        name=f"{r.live}/pins/none"),
    "/limelight.shop.v1.LivePinService/ListLivePins": lambda r: live_pins_pb2.ListLivePinsRequest(parent=r.live),
    "/limelight.shop.v1.OrderService/Checkout": lambda r: orders_pb2.CheckoutRequest(
        request_id=_uuid(), buyer=r.user, items=[orders_pb2.CheckoutItem(
            product=f"merchants/{r.owner}/products/none", quantity=1)],
        payment_method=orders_pb2.PaymentMethod(provider="local", token="tok_debit"), expected_total_minor=100,
        currency_code="EUR"),
    "/limelight.shop.v1.OrderService/CaptureOrder": lambda r: orders_pb2.CaptureOrderRequest(
        request_id=_uuid(), name=f"{r.user}/orders/none"),
    "/limelight.shop.v1.OrderService/FulfillOrder": lambda r: orders_pb2.FulfillOrderRequest(
        request_id=_uuid(), name=f"{r.user}/orders/none", fulfillment=orders_pb2.Fulfillment(carrier="DHL")),
    "/limelight.shop.v1.OrderService/CancelOrder": lambda r: orders_pb2.CancelOrderRequest(
        request_id=_uuid(), name=f"{r.user}/orders/none", reason=orders_pb2.CANCEL_REASON_BUYER_REQUESTED),
    "/limelight.shop.v1.OrderService/RefundOrder": lambda r: orders_pb2.RefundOrderRequest(
        request_id=_uuid(), name=f"{r.user}/orders/none", reason="matrix"),
    "/limelight.shop.v1.OrderService/GetOrder": lambda r: orders_pb2.GetOrderRequest(name=f"{r.user}/orders/none"),
    "/limelight.shop.v1.OrderService/ListOrders": lambda r: orders_pb2.ListOrdersRequest(parent=r.user),
    "/limelight.shop.v1.OrderService/GetSpendingLimits": lambda r: orders_pb2.GetSpendingLimitsRequest(
        name=f"{r.user}/spendingLimits"),
    "/limelight.shop.v1.OrderService/RecordParentalConsent": lambda r: orders_pb2.RecordParentalConsentRequest(
        request_id=_uuid(), minor=r.user, granted=True, evidence_reference="matrix"),
}


# -- calling ---------------------------------------------------------------------------------


def _method_descriptor(path: str) -> Any:
    service, method = path.strip("/").split("/")
    return descriptor_pool.Default().FindServiceByName(service).methods_by_name[method]


async def _first_or_end(responses: AsyncIterator[Any]) -> None:
    """Read one message; a stream still open after STREAM_WAIT_S was admitted and waits for data."""
    try:
        await asyncio.wait_for(anext(responses, None), STREAM_WAIT_S)
    except TimeoutError:
        pass


async def status_of(channel: grpc.aio.Channel, path: str, request: Message | list[Message],
                    metadata: Sequence[tuple[str, str]]) -> grpc.StatusCode:
    descriptor = _method_descriptor(path)
    codec: Mapping[str, Any] = {
        "request_serializer": lambda message: message.SerializeToString(),
        "response_deserializer": GetMessageClass(descriptor.output_type).FromString,
    }
    try:
        if descriptor.client_streaming:
            assert isinstance(request, list)
            await channel.stream_unary(path, **codec)(iter(request), metadata=metadata, timeout=10)
        elif descriptor.server_streaming:
            call = channel.unary_stream(path, **codec)(request, metadata=metadata, timeout=10)
            await _first_or_end(call.__aiter__())
            call.cancel()
        else:
            await channel.unary_unary(path, **codec)(request, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _metadata(platform: InProcessPlatform, caller: Caller) -> list[tuple[str, str]]:
    if not caller.subject:
        return []
    return [("authorization", f"Bearer {platform.token(caller.subject, *caller.roles)}")]


OWNERS_LIVE_REQUEST = "0b7e7d4a-3f0c-4b8e-9a34-2f1d7c0e9c01"
OWNERS_UPLOAD = f"creators/{OWNER}/uploads/0b7e7d4a-3f0c-4b8e-9a34-2f1d7c0e9c02"


async def _followed_enough_to_go_live(platform: InProcessPlatform, needed: int = 1_000) -> None:
    """Gifts reads follower counts from ranking: the owner gets real followers there."""
    async with grpc.aio.insecure_channel(platform.target("ranking")) as channel:
        follows = follows_pb2_grpc.FollowServiceStub(channel)
        stats = await follows.GetFollowStats(follows_pb2.GetFollowStatsRequest(name=f"creators/{OWNER}/followStats"),
                                             metadata=[("authorization", f"Bearer {platform.token()}")], timeout=10)
        for batch in range(stats.stats.follower_count, needed, 100):  # fans are numbered: ask for the rest
            await asyncio.gather(*(follows.FollowCreator(
                follows_pb2.FollowCreatorRequest(follower=f"users/mx-fan-{n}", creator=f"creators/{OWNER}"),
                metadata=[("authorization", f"Bearer {platform.token(f'users/mx-fan-{n}')}")], timeout=10)
                for n in range(batch, min(batch + 100, needed))))


async def owners_resources(platform: InProcessPlatform) -> Resources:
    """The owner's real LIVE and upload, made through the API, so hiding and host checks meet real ones.

    Both are idempotent (the LIVE under a fixed request id, the upload under a fixed id, left
    incomplete), so each test may ask again.
    """
    admin = Caller("admin", "users/mx-admin", (Role.ADMIN,), OWNER)
    owner = Caller("owner", f"users/{OWNER}", (Role.CREATOR,), OWNER)
    await _followed_enough_to_go_live(platform)
    async with grpc.aio.insecure_channel(platform.target("gifts")) as channel:
        await standing_pb2_grpc.AccountStandingServiceStub(channel).UpdateAccountStanding(
            _standing_update(Resources(OWNER, "", "")), metadata=_metadata(platform, admin), timeout=10)
        response = await live_pb2_grpc.LiveServiceStub(channel).StartLive(
            live_pb2.StartLiveRequest(parent=f"creators/{OWNER}", request_id=OWNERS_LIVE_REQUEST, title="matrix"),
            metadata=_metadata(platform, owner), timeout=10)
    resources = Resources(OWNER, response.live_session.name, OWNERS_UPLOAD)
    async with grpc.aio.insecure_channel(platform.target("ingest")) as channel:
        # The declared byte never comes: the upload stays open, waiting to be resumed.
        assert await status_of(channel, "/limelight.ingest.v1.IngestService/UploadVideo", _upload(resources),
                               _metadata(platform, owner)) is grpc.StatusCode.INVALID_ARGUMENT
    return resources


def _resources(caller: Caller, owners: Resources) -> Resources:
    if caller.owner == OWNER:
        return owners
    return Resources(caller.owner, f"creators/{caller.owner}/lives/none", f"creators/{caller.owner}/uploads/{_uuid()}")


async def answers_of(platform: InProcessPlatform, callers: Sequence[Caller],
                     expected: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """{row key: {column: answer}} of every row in `expected`, called by each of `callers`."""
    owners = await owners_resources(platform)
    channels = {service: grpc.aio.insecure_channel(platform.target(service)) for service in SERVICES}
    observed: dict[str, dict[str, str]] = {}
    try:
        for key, cells in expected.items():
            method, server = split_row_key(key)
            channel = channels[server]
            for caller in callers:
                request = REQUESTS[method](_resources(caller, owners))
                for message in request if isinstance(request, list) else [request]:
                    validate(message)  # so an INVALID_ARGUMENT is the handler's, never the validator's
                code = await status_of(channel, method, request, _metadata(platform, caller))
                observed.setdefault(key, {})[caller.column] = answer_of(code, cells.get(caller.column, "ok"))
    finally:
        for channel in channels.values():
            await channel.close()
    return observed


# -- the tests -------------------------------------------------------------------------------


def _built_methods(platform: InProcessPlatform) -> dict[str, list[str]]:
    """{service row key: the row keys of its methods whose servicer overrides the generated base}:
    what each server really serves, its own package's services and the shared ones."""
    built: dict[str, list[str]] = {}
    for server in SERVICES:
        recorder = _Recorder()
        definition = platform.services[server].definition
        definition.register(recorder)
        for package in sorted({package_of(name) for name in definition.service_names}):
            for proto in proto_services(package):
                if proto.full_name not in definition.service_names:
                    continue
                handlers = recorder.handlers[proto.full_name]
                built[row_key(proto.full_name, server)] = [
                    row_key(f"/{proto.full_name}/{name}", server) for name, handler in handlers.items()
                    if _behaviour(handler).__func__ is not getattr(proto.servicer_base, name)
                ]
    return built


class _Recorder:
    def __init__(self) -> None:
        self.handlers: dict[str, dict[str, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        pass

    def add_registered_method_handlers(self, service_name: str, handlers: dict[str, Any]) -> None:
        self.handlers[service_name] = handlers


def _behaviour(handler: Any) -> Any:
    return handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream


def test_the_table_lists_every_built_rpc_and_each_unbuilt_service_in_one_line(platform: InProcessPlatform) -> None:
    text = access_section()
    built = _built_methods(platform)
    assert sorted(expected_matrix(text)) == sorted(method for methods in built.values() for method in methods)
    unbuilt = [service for service, methods in built.items() if not methods]
    listed = unimplemented_services(text)
    assert sorted(listed) == sorted(unbuilt) and len(listed) == len(set(listed))
    partly_built = [service for service, methods in built.items() if methods and len(methods) != len(
        descriptor_pool.Default().FindServiceByName(split_row_key(service)[0]).methods)]
    assert partly_built == [], "a service is built whole or listed as UNIMPLEMENTED"
    listed_methods = {split_row_key(key)[0] for key in expected_matrix(text)}
    assert set(REQUESTS) == listed_methods, "every listed RPC has one request to call it with"


async def test_every_caller_gets_exactly_the_documented_answer(platform: InProcessPlatform) -> None:
    expected = {method: row.answers for method, row in expected_matrix(access_section()).items()}
    observed = await answers_of(platform, CALLERS, expected)
    differences = {method: {column: (expected[method][column], answer) for column, answer in answers.items()
                            if expected[method][column] != answer}
                   for method, answers in observed.items()}
    assert {method: cells for method, cells in differences.items() if cells} == {}, "(documented, observed)"


def test_the_role_rules_are_the_kits_own(platform: InProcessPlatform) -> None:
    """The kit refuses by role before any handler runs; a handler's second check must not hide a
    loosened policy, so the table states each policy rule too."""
    documented = {method: row.rule for method, row in expected_matrix(access_section()).items()}
    enforced = {row_key(rule.method, service): rule.rule for service in SERVICES
                for rule in platform.services[service].definition.access_table()
                if row_key(rule.method, service) in documented}
    assert enforced == documented


IMPOSTOR = Caller("impostor", "services/gifts", (Role.VIEWER,), OWNER)


async def test_a_service_name_without_the_service_role_gets_no_more_than_another_user(
    platform: InProcessPlatform,
) -> None:
    """Issue 9 finding 2: a token for subject `services/gifts` holding only the viewer role is an
    ordinary caller; wherever another user is refused, so is it."""
    matrix = expected_matrix(access_section())
    refused_to_others = {method: {IMPOSTOR.column: row.answers["other user"]} for method, row in matrix.items()
                         if row.answers["other user"] != "ok"}
    observed = await answers_of(platform, [IMPOSTOR], refused_to_others)
    assert {method for method, answers in observed.items() if answers[IMPOSTOR.column] == "ok"} == set()
