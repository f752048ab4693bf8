"""IAB TCF v2 TC strings: our own strict decoder and encoder, and the framework's rules on them.

The format is the IAB Tech Lab's "Consent string and vendor list formats v2": dot-separated
segments, each base64url (no padding) of a bit string padded with zero bits to a whole byte.
The first segment is the core string; every other one starts with a 3-bit segment type
(1 disclosed vendors, 2 allowed vendors, 3 publisher TC).

Strict means: a field that runs past the end of its segment is refused (a lenient decoder
reads the missing bits as zeros and turns a truncated string into "no consent to anything"),
leftover bits must be the zero padding of the last byte, base64url must be canonical, and a
segment type may appear once. `validate` then applies the framework's rules: version 2,
policy version 4 or 5, no legitimate interest for purposes 3-6 (TCF v2.2), and the
disclosed-vendors segment (TCF v2.3, mandatory from 28 February 2026; until then a v2.2
string without it was accepted, which is the transition rule `validate` applies by date).

Pure: no I/O. `encode(decode(s)) == s` for every string this module accepts.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from libs.errors import InvalidArgument

FIELD = "tc_string"
TCF_VERSION = 2
# TcfPolicyVersion 4 arrived with TCF v2.2 (May 2023); 5 is the current GVL's policy version.
ACCEPTED_POLICY_VERSIONS = frozenset({4, 5})
# TCF v2.3: from this moment every TC string must carry the disclosed-vendors segment.
DISCLOSED_VENDORS_MANDATORY_FROM = dt.datetime(2026, 2, 28, tzinfo=dt.UTC)
# TCF v2.2 removed legitimate interest as a legal basis for purposes 3 to 6 (profiles for ads and content).
CONSENT_ONLY_PURPOSES = frozenset({3, 4, 5, 6})
PURPOSE_COUNT = 24  # bits in the purpose fields; purposes 1-11 are defined
DEFINED_PURPOSES = 11
SPECIAL_FEATURE_COUNT = 12
DEFINED_SPECIAL_FEATURES = 2
MAX_CREATE_SKEW = dt.timedelta(minutes=5)

SEGMENT_DISCLOSED_VENDORS = 1
SEGMENT_ALLOWED_VENDORS = 2
SEGMENT_PUBLISHER_TC = 3
_SEGMENT_NAMES = {SEGMENT_DISCLOSED_VENDORS: "disclosed vendors", SEGMENT_ALLOWED_VENDORS: "allowed vendors",
                  SEGMENT_PUBLISHER_TC: "publisher TC"}
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_DECISECONDS = dt.timedelta(milliseconds=100)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def refused(reason: str, message: str) -> InvalidArgument:
    return InvalidArgument.for_field(FIELD, message, reason=reason)


@dataclass(frozen=True)
class PublisherRestriction:
    purpose: int
    restriction_type: int  # 0 not allowed, 1 require consent, 2 require legitimate interest
    vendors: frozenset[int]


@dataclass(frozen=True)
class VendorSet:
    """A vendor section: its ids, its MaxVendorId, and whether the string used range encoding."""

    vendors: frozenset[int] = frozenset()
    max_vendor_id: int = 0
    range_encoded: bool = False


@dataclass(frozen=True)
class PublisherTc:
    purposes_consent: frozenset[int] = frozenset()
    purposes_legitimate_interest: frozenset[int] = frozenset()
    custom_purpose_count: int = 0
    custom_purposes_consent: frozenset[int] = frozenset()
    custom_purposes_legitimate_interest: frozenset[int] = frozenset()


@dataclass(frozen=True)
class TcString:
    """Every field of a TC string, as encoded (ids are 1-based, as in the specification)."""

    created: dt.datetime
    last_updated: dt.datetime
    cmp_id: int
    cmp_version: int
    consent_screen: int
    consent_language: str
    vendor_list_version: int
    policy_version: int
    is_service_specific: bool
    use_non_standard_texts: bool
    special_features_opt_in: frozenset[int]
    purposes_consent: frozenset[int]
    purposes_legitimate_interest: frozenset[int]
    purpose_one_treatment: bool
    publisher_country_code: str
    vendor_consents: VendorSet
    vendor_legitimate_interests: VendorSet
    publisher_restrictions: tuple[PublisherRestriction, ...] = ()
    disclosed_vendors: VendorSet | None = None
    allowed_vendors: VendorSet | None = None
    publisher_tc: PublisherTc | None = None
    version: int = TCF_VERSION
    # The order the optional segments came in, so encoding reproduces the string.
    segment_order: tuple[int, ...] = field(default=())

    @property
    def framework_version(self) -> str:
        return "2.3" if self.disclosed_vendors is not None else "2.2"


# -- bits ---------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes, segment: str) -> None:
        self._bits = "".join(f"{byte:08b}" for byte in data)
        self._position = 0
        self._segment = segment

    def take(self, width: int, name: str) -> int:
        end = self._position + width
        if end > len(self._bits):
            raise refused("TCF_TRUNCATED", f"the {self._segment} segment ends inside {name}"
                          f" (bit {self._position}, {width} bits needed, {len(self._bits)} present)")
        value = int(self._bits[self._position:end], 2) if width else 0
        self._position = end
        return value

    def flag(self, name: str) -> bool:
        return self.take(1, name) == 1

    def bitfield(self, width: int, name: str) -> frozenset[int]:
        bits = self.take(width, name)
        return frozenset(index + 1 for index in range(width) if bits >> (width - 1 - index) & 1)

    def letters(self, name: str) -> str:
        first, second = self.take(6, name), self.take(6, name)
        if first > 25 or second > 25:
            raise refused("TCF_FIELD_INVALID", f"{name} is not two letters")
        return chr(ord("A") + first) + chr(ord("A") + second)

    def finish(self) -> None:
        rest = self._bits[self._position:]
        if len(rest) >= 8 or "1" in rest:
            raise refused("TCF_TRAILING_DATA", f"the {self._segment} segment has {len(rest)} bits after its last field")


class _Writer:
    def __init__(self) -> None:
        self._bits: list[str] = []

    def put(self, value: int, width: int) -> None:
        if not 0 <= value < (1 << width) and width:
            raise ValueError(f"{value} does not fit in {width} bits")
        if width:
            self._bits.append(f"{value:0{width}b}")

    def flag(self, value: bool) -> None:
        self.put(int(value), 1)

    def bitfield(self, ids: frozenset[int], width: int) -> None:
        self._bits.append("".join("1" if index + 1 in ids else "0" for index in range(width)))

    def letters(self, text: str) -> None:
        for letter in text:
            self.put(ord(letter) - ord("A"), 6)

    def segment(self) -> str:
        bits = "".join(self._bits)
        bits += "0" * (-len(bits) % 8)
        data = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
        return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _segment_bytes(text: str, index: int) -> bytes:
    if not text or not _BASE64URL.match(text):
        raise refused("TCF_BAD_BASE64URL", f"segment {index + 1} is not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise refused("TCF_BAD_BASE64URL", f"segment {index + 1} is not base64url: {error}") from error
    if base64.urlsafe_b64encode(data).decode().rstrip("=") != text:
        raise refused("TCF_BAD_BASE64URL", f"segment {index + 1} is not canonical base64url (stray bits at its end)")
    return data


def _moment(deciseconds: int) -> dt.datetime:
    return _EPOCH + deciseconds * _DECISECONDS


def _deciseconds(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // _DECISECONDS


# -- vendor sections ------------------------------------------------------------------------


def _read_ranges(reader: _Reader, name: str, max_vendor_id: int | None) -> frozenset[int]:
    vendors: set[int] = set()
    for _ in range(reader.take(12, f"{name} NumEntries")):
        is_range = reader.flag(f"{name} IsARange")
        start = reader.take(16, f"{name} StartOrOnlyVendorId")
        end = reader.take(16, f"{name} EndVendorId") if is_range else start
        if start < 1 or end < start or (max_vendor_id is not None and end > max_vendor_id):
            raise refused("TCF_FIELD_INVALID", f"{name} has an invalid vendor range {start}-{end}")
        vendors.update(range(start, end + 1))
    return frozenset(vendors)


def _write_ranges(writer: _Writer, vendors: frozenset[int]) -> None:
    ranges = _as_ranges(vendors)
    writer.put(len(ranges), 12)
    for start, end in ranges:
        writer.flag(start != end)
        writer.put(start, 16)
        if start != end:
            writer.put(end, 16)


def _as_ranges(vendors: frozenset[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for vendor in sorted(vendors):
        if ranges and ranges[-1][1] == vendor - 1:
            ranges[-1] = (ranges[-1][0], vendor)
        else:
            ranges.append((vendor, vendor))
    return ranges


def _read_vendors(reader: _Reader, name: str) -> VendorSet:
    max_vendor_id = reader.take(16, f"{name} MaxVendorId")
    if reader.flag(f"{name} IsRangeEncoding"):
        return VendorSet(_read_ranges(reader, name, max_vendor_id), max_vendor_id, True)
    return VendorSet(reader.bitfield(max_vendor_id, f"{name} bit field"), max_vendor_id, False)


def _write_vendors(writer: _Writer, vendors: VendorSet) -> None:
    writer.put(vendors.max_vendor_id, 16)
    writer.flag(vendors.range_encoded)
    if vendors.range_encoded:
        _write_ranges(writer, vendors.vendors)
    else:
        writer.bitfield(vendors.vendors, vendors.max_vendor_id)


def vendor_set(vendors: AbstractSet[int], *, range_encoded: bool = False) -> VendorSet:
    """A vendor section for `vendors`, MaxVendorId their highest id (what an encoder writes)."""
    return VendorSet(frozenset(vendors), max(vendors, default=0), range_encoded)


# -- decode / encode --------------------------------------------------------------------------


def decode(tc_string: str) -> TcString:
    """Every field of `tc_string`; InvalidArgument (field `tc_string`) with a reason when it is malformed."""
    segments = tc_string.split(".")
    core = _Reader(_segment_bytes(segments[0], 0), "core")
    version = core.take(6, "Version")
    if version != TCF_VERSION:
        raise refused("TCF_WRONG_VERSION", f"version {version}; only TCF version 2 strings are accepted")
    created = _moment(core.take(36, "Created"))
    last_updated = _moment(core.take(36, "LastUpdated"))
    cmp_id = core.take(12, "CmpId")
    cmp_version = core.take(12, "CmpVersion")
    consent_screen = core.take(6, "ConsentScreen")
    consent_language = core.letters("ConsentLanguage")
    vendor_list_version = core.take(12, "VendorListVersion")
    policy_version = core.take(6, "TcfPolicyVersion")
    is_service_specific = core.flag("IsServiceSpecific")
    use_non_standard_texts = core.flag("UseNonStandardTexts")
    special_features = core.bitfield(SPECIAL_FEATURE_COUNT, "SpecialFeatureOptIns")
    purposes_consent = core.bitfield(PURPOSE_COUNT, "PurposesConsent")
    purposes_li = core.bitfield(PURPOSE_COUNT, "PurposesLITransparency")
    purpose_one_treatment = core.flag("PurposeOneTreatment")
    publisher_cc = core.letters("PublisherCC")
    vendor_consents = _read_vendors(core, "vendor consents")
    vendor_li = _read_vendors(core, "vendor legitimate interests")
    restrictions = []
    for _ in range(core.take(12, "NumPubRestrictions")):
        purpose = core.take(6, "publisher restriction PurposeId")
        restriction_type = core.take(2, "publisher restriction RestrictionType")
        if restriction_type == 3:
            raise refused("TCF_FIELD_INVALID", "publisher restriction type 3 is undefined")
        restrictions.append(PublisherRestriction(purpose, restriction_type,
                                                 _read_ranges(core, "publisher restriction", None)))
    core.finish()

    optional: dict[int, object] = {}
    order: list[int] = []
    for index, text in enumerate(segments[1:], start=1):
        data = _segment_bytes(text, index)
        reader = _Reader(data, f"segment {index + 1}")
        segment_type = reader.take(3, "SegmentType")
        if segment_type not in _SEGMENT_NAMES:
            raise refused("TCF_SEGMENT_INVALID", f"segment {index + 1} has unknown type {segment_type}")
        if segment_type in optional:
            raise refused("TCF_SEGMENT_INVALID", f"the {_SEGMENT_NAMES[segment_type]} segment appears twice")
        reader = _Reader(data, f"{_SEGMENT_NAMES[segment_type]}")
        reader.take(3, "SegmentType")
        optional[segment_type] = _read_publisher_tc(reader) if segment_type == SEGMENT_PUBLISHER_TC \
            else _read_vendors(reader, _SEGMENT_NAMES[segment_type])
        reader.finish()
        order.append(segment_type)

    disclosed, allowed, publisher = (optional.get(SEGMENT_DISCLOSED_VENDORS), optional.get(SEGMENT_ALLOWED_VENDORS),
                                     optional.get(SEGMENT_PUBLISHER_TC))
    assert disclosed is None or isinstance(disclosed, VendorSet)
    assert allowed is None or isinstance(allowed, VendorSet)
    assert publisher is None or isinstance(publisher, PublisherTc)
    return TcString(
        created=created, last_updated=last_updated, cmp_id=cmp_id, cmp_version=cmp_version,
        consent_screen=consent_screen, consent_language=consent_language, vendor_list_version=vendor_list_version,
        policy_version=policy_version, is_service_specific=is_service_specific,
        use_non_standard_texts=use_non_standard_texts, special_features_opt_in=special_features,
        purposes_consent=purposes_consent, purposes_legitimate_interest=purposes_li,
        purpose_one_treatment=purpose_one_treatment, publisher_country_code=publisher_cc,
        vendor_consents=vendor_consents, vendor_legitimate_interests=vendor_li,
        publisher_restrictions=tuple(restrictions), disclosed_vendors=disclosed, allowed_vendors=allowed,
        publisher_tc=publisher, version=version, segment_order=tuple(order))


def _read_publisher_tc(reader: _Reader) -> PublisherTc:
    consent = reader.bitfield(PURPOSE_COUNT, "PubPurposesConsent")
    li = reader.bitfield(PURPOSE_COUNT, "PubPurposesLITransparency")
    custom = reader.take(6, "NumCustomPurposes")
    return PublisherTc(consent, li, custom, reader.bitfield(custom, "CustomPurposesConsent"),
                       reader.bitfield(custom, "CustomPurposesLITransparency"))


def encode(tc: TcString) -> str:
    """The TC string of `tc`: segments in `tc.segment_order`, else disclosed vendors, allowed vendors, publisher TC."""
    core = _Writer()
    core.put(tc.version, 6)
    core.put(_deciseconds(tc.created), 36)
    core.put(_deciseconds(tc.last_updated), 36)
    core.put(tc.cmp_id, 12)
    core.put(tc.cmp_version, 12)
    core.put(tc.consent_screen, 6)
    core.letters(tc.consent_language)
    core.put(tc.vendor_list_version, 12)
    core.put(tc.policy_version, 6)
    core.flag(tc.is_service_specific)
    core.flag(tc.use_non_standard_texts)
    core.bitfield(tc.special_features_opt_in, SPECIAL_FEATURE_COUNT)
    core.bitfield(tc.purposes_consent, PURPOSE_COUNT)
    core.bitfield(tc.purposes_legitimate_interest, PURPOSE_COUNT)
    core.flag(tc.purpose_one_treatment)
    core.letters(tc.publisher_country_code)
    _write_vendors(core, tc.vendor_consents)
    _write_vendors(core, tc.vendor_legitimate_interests)
    core.put(len(tc.publisher_restrictions), 12)
    for restriction in tc.publisher_restrictions:
        core.put(restriction.purpose, 6)
        core.put(restriction.restriction_type, 2)
        _write_ranges(core, restriction.vendors)
    segments = [core.segment()]
    present = {SEGMENT_DISCLOSED_VENDORS: tc.disclosed_vendors, SEGMENT_ALLOWED_VENDORS: tc.allowed_vendors,
               SEGMENT_PUBLISHER_TC: tc.publisher_tc}
    order = list(tc.segment_order) + [kind for kind in sorted(present) if kind not in tc.segment_order]
    for kind in order:
        value = present[kind]
        if value is None:
            continue
        writer = _Writer()
        writer.put(kind, 3)
        if isinstance(value, PublisherTc):
            writer.bitfield(value.purposes_consent, PURPOSE_COUNT)
            writer.bitfield(value.purposes_legitimate_interest, PURPOSE_COUNT)
            writer.put(value.custom_purpose_count, 6)
            writer.bitfield(value.custom_purposes_consent, value.custom_purpose_count)
            writer.bitfield(value.custom_purposes_legitimate_interest, value.custom_purpose_count)
        else:
            _write_vendors(writer, value)
        segments.append(writer.segment())
    return ".".join(segments)


# -- the framework's rules ----------------------------------------------------------------------


def validate(tc_string: str, now: dt.datetime) -> TcString:
    """`decode`, then the TCF rules a string must meet to be stored as consent at `now`."""
    tc = decode(tc_string)
    if tc.policy_version not in ACCEPTED_POLICY_VERSIONS:
        raise refused("TCF_POLICY_VERSION", f"TcfPolicyVersion {tc.policy_version}; accepted:"
                      f" {', '.join(map(str, sorted(ACCEPTED_POLICY_VERSIONS)))} (TCF v2.2 and later)")
    claimed = sorted(tc.purposes_legitimate_interest & CONSENT_ONLY_PURPOSES)
    if claimed:
        raise refused("TCF_LEGITIMATE_INTEREST_NOT_ALLOWED",
                      f"legitimate interest is claimed for purposes {claimed}; purposes 3-6 need consent")
    undefined = sorted((tc.purposes_consent | tc.purposes_legitimate_interest) - set(range(1, DEFINED_PURPOSES + 1)))
    if undefined:
        raise refused("TCF_FIELD_INVALID", f"purposes {undefined} are not defined (1-{DEFINED_PURPOSES})")
    if tc.special_features_opt_in - set(range(1, DEFINED_SPECIAL_FEATURES + 1)):
        raise refused("TCF_FIELD_INVALID", f"special features are 1-{DEFINED_SPECIAL_FEATURES}")
    for restriction in tc.publisher_restrictions:
        if not 1 <= restriction.purpose <= DEFINED_PURPOSES:
            raise refused("TCF_FIELD_INVALID", f"a publisher restriction names purpose {restriction.purpose}")
    if not tc.created <= tc.last_updated <= now + MAX_CREATE_SKEW:
        raise refused("TCF_FIELD_INVALID", "Created must not be after LastUpdated, nor LastUpdated in the future")
    if tc.cmp_id < 1:
        raise refused("TCF_FIELD_INVALID", "CmpId 0 names no CMP")
    if tc.vendor_list_version < 1:
        raise refused("TCF_FIELD_INVALID", "VendorListVersion must be at least 1")
    if tc.disclosed_vendors is None and now >= DISCLOSED_VENDORS_MANDATORY_FROM:
        raise refused("TCF_DISCLOSED_VENDORS_MISSING",
                      "the disclosed-vendors segment is missing; TCF v2.3 makes it mandatory from 28 February 2026")
    return tc
