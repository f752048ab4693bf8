"""TC strings: our decoder and encoder round-trip, and every malformed class is refused with its reason."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from collections.abc import Set as AbstractSet

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.errors import InvalidArgument
from services.compliance.consent import tcf

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
BEFORE_V23 = dt.datetime(2026, 1, 15, tzinfo=dt.UTC)

# Published example strings, kept as they were printed, with where they were printed.
PUBLISHED = {
    # github.com/SirDataFR/iabtcfv2 (mirrored as lemonde/iabtcfv2) README, "Decode a TC String":
    # core, disclosed vendors and publisher TC segments; TcfPolicyVersion 2 (TCF v2.0).
    "sirdata_readme": (
        "COxR03kOxR1CqBcABCENAgCMAP_AAH_AAAqIF3EXySoGY2thI2YVFxBEIYwfJxyigMgChgQIsSwNQIeFLBoGLiAAHBGYJAQAGBAEEACBAQIkHGBMCQAA"
        "gAgBiRCMQEGMCzNIBIBAggEbY0FACCVmHkHSmZCY7064O__QLuIJEFQMAkSBAIACLECIQwAQDiAAAYAlAAABAhIaAAgIWBQEeAAAACAwAAgAAABBAAA"
        "CAAQAAICIAAABAAAgAiAQAAAAGgIQAACBABACRIAAAEANCAAgiCEAQg4EAo4AAA.IF3EXySoGY2tho2YVFzBEIYwfJxyigMgShgQIsS0NQIeFLBoGPi"
        "AAHBGYJAQAGBAkkACBAQIsHGBMCQABgAgRiRCMQEGMDzNIBIBAggkbY0FACCVmnkHS3ZCY70-6u__QA.elAAAAAAAWA"),
    # docs.rs/lib_tcstring 0.1.1, src/decode/model.rs doc example: a core segment only.
    "lib_tcstring_doc": "COvFyGBOvFyGBAbAAAENAPCAAOAAAAAAAAAAAEEUACCKAAA",
}
# developers.verve.com/docs/iab-tcf-23 "Example TC String Structure": its second segment is typed
# 2 (allowed vendors), not disclosed vendors as the page says, and its bit field runs past the end.
VERVE_EXAMPLE = "COsbk4AOSbk4AnWAAAENAwCgAAAAAAAAAAYgACPAAAAA.TDKO4AAqAKAGQAyqAAA.YAAAAAAAAAA"


def built(*, purposes: AbstractSet[int] = frozenset({1}), li: AbstractSet[int] = frozenset(),
          vendors: AbstractSet[int] = frozenset(), disclosed: AbstractSet[int] | None = frozenset({1}), policy_version: int = 5, version: int = 2,
          range_encoded: bool = False, updated: dt.datetime = NOW - dt.timedelta(days=1)) -> tcf.TcString:
    return tcf.TcString(
        created=updated - dt.timedelta(days=30), last_updated=updated, cmp_id=300, cmp_version=7, consent_screen=1,
        consent_language="DE", vendor_list_version=140, policy_version=policy_version, is_service_specific=True,
        use_non_standard_texts=False, special_features_opt_in=frozenset({1}), purposes_consent=frozenset(purposes),
        purposes_legitimate_interest=frozenset(li), purpose_one_treatment=False, publisher_country_code="DE",
        vendor_consents=tcf.vendor_set(vendors, range_encoded=range_encoded),
        vendor_legitimate_interests=tcf.vendor_set({vendor for vendor in vendors if vendor % 2}),
        publisher_restrictions=(tcf.PublisherRestriction(2, 1, frozenset({8, 9, 10})),),
        disclosed_vendors=None if disclosed is None else tcf.vendor_set(disclosed), version=version)


def tc_string(**fields: object) -> str:
    """A TC string for tests, v2.3 unless told otherwise (`disclosed=None` leaves the segment out)."""
    return tcf.encode(built(**fields))  # type: ignore[arg-type]


def reason(tc_string_: str, now: dt.datetime = NOW) -> str:
    with pytest.raises(InvalidArgument) as refused:
        tcf.validate(tc_string_, now)
    assert refused.value.violations[0].field == "tc_string"
    return str(refused.value.reason)


def test_a_valid_v23_string_decodes_to_its_purposes_and_vendors() -> None:
    decoded = tcf.validate(tc_string(purposes={1, 3, 4, 7}, li={2, 7}, vendors={2, 8, 755}, disclosed={2, 8, 21, 755}),
                           NOW)
    assert decoded.purposes_consent == {1, 3, 4, 7} and decoded.purposes_legitimate_interest == {2, 7}
    assert decoded.vendor_consents.vendors == {2, 8, 755} and decoded.vendor_legitimate_interests.vendors == {755}
    assert decoded.disclosed_vendors is not None and decoded.disclosed_vendors.vendors == {2, 8, 21, 755}
    assert (decoded.cmp_id, decoded.cmp_version, decoded.consent_language, decoded.vendor_list_version) == (
        300, 7, "DE", 140)
    assert decoded.publisher_restrictions == (tcf.PublisherRestriction(2, 1, frozenset({8, 9, 10})),)
    assert decoded.special_features_opt_in == {1} and decoded.framework_version == "2.3"


def test_a_v22_string_without_disclosed_vendors_is_accepted_only_before_the_v23_deadline() -> None:
    v22 = tc_string(purposes={1, 2}, policy_version=4, disclosed=None, updated=BEFORE_V23 - dt.timedelta(days=1))
    assert tcf.validate(v22, BEFORE_V23).framework_version == "2.2"
    assert reason(v22, NOW) == "TCF_DISCLOSED_VENDORS_MISSING"


def test_range_encoded_vendors_decode_to_the_same_set() -> None:
    vendors = {1, 2, 3, 10, 11, 500}
    decoded = tcf.decode(tc_string(vendors=vendors, range_encoded=True))
    assert decoded.vendor_consents.vendors == vendors and decoded.vendor_consents.range_encoded


@settings(max_examples=60, deadline=None)
@given(purposes=st.sets(st.integers(1, 11)), vendors=st.sets(st.integers(1, 3000), max_size=40),
       disclosed=st.one_of(st.none(), st.sets(st.integers(1, 3000), max_size=40)), range_encoded=st.booleans())
def test_encode_decode_encode_gives_the_same_string(purposes: set[int], vendors: set[int], disclosed: set[int] | None,
                                                    range_encoded: bool) -> None:
    original = built(purposes=purposes, vendors=vendors, disclosed=disclosed, range_encoded=range_encoded)
    encoded = tcf.encode(original)
    decoded = tcf.decode(encoded)
    assert tcf.encode(decoded) == encoded
    assert dataclasses.replace(decoded, segment_order=()) == original


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_strings_round_trip(name: str) -> None:
    assert tcf.encode(tcf.decode(PUBLISHED[name])) == PUBLISHED[name]


def test_published_strings_are_refused_for_their_old_policy_version() -> None:
    assert all(reason(text) == "TCF_POLICY_VERSION" for text in PUBLISHED.values())


def test_a_published_string_whose_segment_runs_past_its_end_is_refused() -> None:
    assert reason(VERVE_EXAMPLE) == "TCF_TRUNCATED"


def test_a_truncated_string_is_refused_not_read_as_zeros() -> None:
    full = tc_string(vendors={5, 900})
    core = full.split(".")[0]
    for cut in (4, len(core) // 2, len(core) - 4):
        assert reason(core[:cut]) in {"TCF_TRUNCATED", "TCF_BAD_BASE64URL"}
    assert reason(core[:len(core) - 4] + "." + full.split(".")[1]) == "TCF_TRUNCATED"


def test_wrong_version_is_refused() -> None:
    assert reason(tc_string(version=1)) == "TCF_WRONG_VERSION"
    assert reason(tc_string(version=3)) == "TCF_WRONG_VERSION"


@pytest.mark.parametrize("text", ["CO+sbk4A", "CO/sbk4A", "CO sbk4A", "CO=sbk4A", "", "COsbk4AOSbk4A..AAAA", "B"])
def test_bad_base64url_is_refused(text: str) -> None:
    assert reason(text) in {"TCF_BAD_BASE64URL", "TCF_TRUNCATED"}
    if "+" in text or "/" in text or "=" in text or " " in text or ".." in text:
        assert reason(text) == "TCF_BAD_BASE64URL"


def test_a_non_canonical_last_character_is_refused() -> None:
    text = tc_string()
    core = text.split(".")[0]
    raw = base64.urlsafe_b64decode(core + "=" * (-len(core) % 4))
    if len(raw) % 3:  # the last character carries padding bits: set one
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        tampered = core[:-1] + alphabet[alphabet.index(core[-1]) + 1]
        assert reason(tampered + "." + text.split(".")[1]) == "TCF_BAD_BASE64URL"


def test_bit_fields_past_the_end_are_refused() -> None:
    tc = built(vendors={3})
    lying = dataclasses.replace(tc, vendor_consents=tcf.VendorSet(frozenset({3}), 3, False))
    text = tcf.encode(lying)
    # Claim MaxVendorId 2000 in the core: its bit field would need 2000 bits that are not there.
    bits = "".join(f"{b:08b}" for b in base64.urlsafe_b64decode(text.split(".")[0] + "=="))
    start = 6 + 36 + 36 + 12 + 12 + 6 + 12 + 12 + 6 + 1 + 1 + 12 + 24 + 24 + 1 + 12
    bits = bits[:start] + f"{2000:016b}" + bits[start + 16:]
    core = base64.urlsafe_b64encode(int(bits, 2).to_bytes(len(bits) // 8, "big")).decode().rstrip("=")
    assert reason(core + "." + text.split(".")[1]) == "TCF_TRUNCATED"


@pytest.mark.parametrize("purpose", [3, 4, 5, 6])
def test_legitimate_interest_for_purposes_3_to_6_is_refused(purpose: int) -> None:
    assert reason(tc_string(li={2, purpose})) == "TCF_LEGITIMATE_INTEREST_NOT_ALLOWED"


def test_legitimate_interest_for_other_purposes_is_accepted() -> None:
    assert tcf.validate(tc_string(li={2, 7, 8, 9, 10, 11}), NOW).purposes_legitimate_interest == {2, 7, 8, 9, 10, 11}


def test_a_missing_disclosed_vendors_segment_is_refused() -> None:
    assert reason(tc_string(disclosed=None)) == "TCF_DISCLOSED_VENDORS_MISSING"


def test_a_segment_twice_or_of_unknown_type_is_refused() -> None:
    text = tc_string()
    assert reason(text + "." + text.split(".")[1]) == "TCF_SEGMENT_INVALID"
    assert reason(text + ".4AAA") == "TCF_SEGMENT_INVALID"  # type 7


def test_trailing_data_after_the_last_field_is_refused() -> None:
    core, disclosed = tc_string().split(".")
    padded = base64.urlsafe_b64encode(base64.urlsafe_b64decode(core + "=" * (-len(core) % 4)) + b"\x00").decode()
    assert reason(padded.rstrip("=") + "." + disclosed) == "TCF_TRAILING_DATA"


def test_undefined_purposes_and_future_strings_are_refused() -> None:
    assert reason(tc_string(purposes={1, 12})) == "TCF_FIELD_INVALID"
    assert reason(tc_string(updated=NOW + dt.timedelta(days=1))) == "TCF_FIELD_INVALID"
