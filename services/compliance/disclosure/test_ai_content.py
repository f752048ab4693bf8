"""AssessAiContent with real C2PA manifests: signed here with c2pa-python's Builder and Signer, under
test certificates made here with `cryptography` (one CA on a test trust list, one not), then read
the way ingest reads them, with that trust list, and sent through a real server.
"""

from __future__ import annotations

import datetime as dt
import io
import struct
import zlib
from dataclasses import dataclass

import c2pa
import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from limelight.compliance.v1 import disclosure_pb2, disclosure_pb2_grpc

from services.compliance.disclosure.ai_content import IPTC, assess_ai_content
from services.compliance.disclosure.model import AiDeclaration, AiLabel, AiUsage, C2paEvidence, C2paValidation, Market
from services.compliance.disclosure.rulebook import current_rule_set

Metadata = tuple[tuple[str, str]]
GENERATED = IPTC + "trainedAlgorithmicMedia"
EDITED = IPTC + "compositeWithTrainedAlgorithmicMedia"
CAPTURED = IPTC + "digitalCapture"


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes([40, 90, 160]) * 16 for _ in range(16))
    header = struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Limelight Test")])


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _key_usage(*, signer: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=signer, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=not signer, crl_sign=not signer,
                         encipher_only=False, decipher_only=False)


@dataclass(frozen=True)
class Authority:
    """A test CA and one signing certificate it issued, as C2PA's certificate profile wants them."""

    ca: x509.Certificate
    leaf: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    signer_name: str

    @classmethod
    def create(cls, signer_name: str) -> Authority:
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (x509.CertificateBuilder().subject_name(_name(f"{signer_name} CA")).issuer_name(_name(f"{signer_name} CA"))
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(_key_usage(signer=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (x509.CertificateBuilder().subject_name(_name(signer_name)).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(_key_usage(signer=True), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return cls(ca, leaf, key, signer_name)

    def sign(self, media: bytes, *source_types: str) -> bytes:
        key = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(
            b"es256", (_pem(self.leaf) + _pem(self.ca)).encode(), key, None))
        manifest = {
            "claim_generator_info": [{"name": "limelight-test", "version": "1.0"}],
            "title": "clip.png",
            "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                {"action": "c2pa.created", "digitalSourceType": source_type} for source_type in source_types]}}],
        }
        signed = io.BytesIO()
        with c2pa.Builder(manifest) as builder:
            builder.sign(signer, "image/png", io.BytesIO(media), signed)
        return signed.getvalue()


def tampered(signed: bytes) -> bytes:
    """The signed file with one pixel byte changed after signing."""
    changed = bytearray(signed)
    at = changed.find(b"IDAT") + 12
    changed[at] ^= 0xFF
    return bytes(changed)


def read_evidence(media: bytes, trust_anchors: str) -> disclosure_pb2.C2paEvidence:
    """What ingest sends: the reader's validation state with the deployment's trust anchors."""
    settings = c2pa.Settings.from_dict({"verify": {"verify_trust": True}, "trust": {"trust_anchors": trust_anchors}})
    context = c2pa.Context.builder().with_settings(settings).build()
    with c2pa.Reader("image/png", io.BytesIO(media), context=context) as reader:
        state = reader.get_validation_state() or ""
        manifest = reader.get_active_manifest() or {}
        results = reader.get_validation_results() or {}
    source_types = [action["digitalSourceType"] for assertion in manifest.get("assertions", [])
                    if assertion.get("label", "").startswith("c2pa.actions")
                    for action in assertion["data"]["actions"] if "digitalSourceType" in action]
    failures = [status["code"] for status in (results.get("activeManifest") or {}).get("failure", [])]
    return disclosure_pb2.C2paEvidence(
        validation=disclosure_pb2.C2PA_VALIDATION_INVALID if state == "Invalid" else disclosure_pb2.C2PA_VALIDATION_VALID,
        trusted=state == "Trusted", digital_source_types=source_types,
        claim_generator=str((manifest.get("claim_generator_info") or [{}])[0].get("name", "")),
        signer=str((manifest.get("signature_info") or {}).get("common_name", "")), validation_failures=failures)


@pytest.fixture(scope="module")
def trusted_authority() -> Authority:
    return Authority.create("Trusted Studio")


@pytest.fixture(scope="module")
def untrusted_authority() -> Authority:
    return Authority.create("Unknown Studio")


@pytest.fixture(scope="module")
def trust_list(trusted_authority: Authority) -> str:
    return _pem(trusted_authority.ca)


def assessment(declaration: disclosure_pb2.AiDeclaration,
               evidence: disclosure_pb2.C2paEvidence) -> disclosure_pb2.AssessAiContentRequest:
    return disclosure_pb2.AssessAiContentRequest(content="creators/ada/videos/v1", declaration=declaration,
                                                 c2pa=evidence, market=disclosure_pb2.MARKET_GERMANY)


def findings(response: disclosure_pb2.AssessAiContentResponse) -> dict[str, disclosure_pb2.Finding]:
    return {finding.rule_id: finding for finding in response.findings}


NO_AI = disclosure_pb2.AiDeclaration(usage=disclosure_pb2.AI_USAGE_NONE)


async def test_a_trusted_manifest_that_says_generated_labels_ai_generated_from_c2pa(
    disclosure_stub: disclosure_pb2_grpc.DisclosureServiceAsyncStub, as_ingest: Metadata,
    trusted_authority: Authority, trust_list: str,
) -> None:
    evidence = read_evidence(trusted_authority.sign(tiny_png(), GENERATED), trust_list)
    assert evidence.trusted and evidence.signer == "Trusted Studio"
    response = await disclosure_stub.AssessAiContent(assessment(
        disclosure_pb2.AiDeclaration(usage=disclosure_pb2.AI_USAGE_GENERATED), evidence), metadata=as_ingest)
    assert (response.label, response.source) == (disclosure_pb2.AI_LABEL_AI_GENERATED,
                                                 disclosure_pb2.AI_LABEL_SOURCE_C2PA_AND_SELF_DECLARATION)
    assert response.label_text == "KI-generiert" and not response.needs_review
    found = findings(response)
    assert found["AI_C2PA_INTEGRITY"].severity == disclosure_pb2.FINDING_SEVERITY_INFO
    assert "vertrauenswürdig" in found["AI_C2PA_TRUST"].evidence and "Trusted Studio" in found["AI_C2PA_TRUST"].evidence
    assert "trainedAlgorithmicMedia" in found["AI_PROVENANCE"].evidence


async def test_a_valid_manifest_from_an_unlisted_signer_is_reported_valid_but_untrusted(
    disclosure_stub: disclosure_pb2_grpc.DisclosureServiceAsyncStub, as_ingest: Metadata,
    untrusted_authority: Authority, trust_list: str,
) -> None:
    evidence = read_evidence(untrusted_authority.sign(tiny_png(), EDITED), trust_list)
    assert evidence.validation == disclosure_pb2.C2PA_VALIDATION_VALID and not evidence.trusted
    response = await disclosure_stub.AssessAiContent(assessment(
        disclosure_pb2.AiDeclaration(usage=disclosure_pb2.AI_USAGE_EDITED), evidence), metadata=as_ingest)
    found = findings(response)
    assert found["AI_C2PA_INTEGRITY"].severity == disclosure_pb2.FINDING_SEVERITY_INFO
    assert found["AI_C2PA_TRUST"].severity == disclosure_pb2.FINDING_SEVERITY_WARNING
    assert "nicht vertrauenswürdig" in found["AI_C2PA_TRUST"].evidence
    assert response.label == disclosure_pb2.AI_LABEL_AI_EDITED and response.label_text == "KI-bearbeitet"
    assert not response.needs_review


async def test_a_manifest_tampered_after_signing_is_invalid_and_goes_to_review(
    disclosure_stub: disclosure_pb2_grpc.DisclosureServiceAsyncStub, as_ingest: Metadata,
    trusted_authority: Authority, trust_list: str,
) -> None:
    evidence = read_evidence(tampered(trusted_authority.sign(tiny_png(), CAPTURED)), trust_list)
    assert evidence.validation == disclosure_pb2.C2PA_VALIDATION_INVALID
    response = await disclosure_stub.AssessAiContent(assessment(NO_AI, evidence), metadata=as_ingest)
    found = findings(response)
    assert response.needs_review
    assert found["AI_C2PA_INTEGRITY"].severity == disclosure_pb2.FINDING_SEVERITY_VIOLATION
    assert "assertion.dataHash.mismatch" in found["AI_C2PA_INTEGRITY"].evidence
    assert response.findings[0].severity == disclosure_pb2.FINDING_SEVERITY_VIOLATION


async def test_a_manifest_that_says_ai_while_the_creator_declares_none_is_a_finding_and_a_review(
    disclosure_stub: disclosure_pb2_grpc.DisclosureServiceAsyncStub, as_ingest: Metadata,
    trusted_authority: Authority, trust_list: str,
) -> None:
    evidence = read_evidence(trusted_authority.sign(tiny_png(), GENERATED), trust_list)
    response = await disclosure_stub.AssessAiContent(assessment(NO_AI, evidence), metadata=as_ingest)
    assert response.needs_review and response.label == disclosure_pb2.AI_LABEL_AI_GENERATED
    assert response.source == disclosure_pb2.AI_LABEL_SOURCE_C2PA
    assert findings(response)["AI_DECLARATION_CROSS_CHECK"].severity == disclosure_pb2.FINDING_SEVERITY_VIOLATION


async def test_without_a_manifest_the_declaration_decides_and_a_deepfake_needs_the_art_50_4_disclosure(
    disclosure_stub: disclosure_pb2_grpc.DisclosureServiceAsyncStub, as_ingest: Metadata,
) -> None:
    response = await disclosure_stub.AssessAiContent(assessment(
        disclosure_pb2.AiDeclaration(usage=disclosure_pb2.AI_USAGE_GENERATED, depicts_real_people_or_events=True),
        disclosure_pb2.C2paEvidence(validation=disclosure_pb2.C2PA_VALIDATION_ABSENT)), metadata=as_ingest)
    assert response.source == disclosure_pb2.AI_LABEL_SOURCE_SELF_DECLARATION
    assert response.deepfake_disclosure_required and "realer Personen" in response.label_text
    assert set(findings(response)) >= {"AI_C2PA_INTEGRITY", "AI_C2PA_TRUST", "AI_PROVENANCE", "AI_DEEPFAKE_DISCLOSURE"}


async def test_absent_evidence_describing_a_manifest_is_invalid_argument(
    disclosure_stub: disclosure_pb2_grpc.DisclosureServiceAsyncStub, as_ingest: Metadata,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await disclosure_stub.AssessAiContent(assessment(NO_AI, disclosure_pb2.C2paEvidence(
            validation=disclosure_pb2.C2PA_VALIDATION_ABSENT, trusted=True)), metadata=as_ingest)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(("usage", "source_types", "label"), [
    (AiUsage.NONE, (), AiLabel.NONE),
    (AiUsage.EDITED, (), AiLabel.AI_EDITED),
    (AiUsage.EDITED, (GENERATED,), AiLabel.AI_GENERATED),
    (AiUsage.GENERATED, (EDITED,), AiLabel.AI_GENERATED),
    (AiUsage.NONE, (CAPTURED,), AiLabel.NONE),
    (AiUsage.NONE, (EDITED, CAPTURED), AiLabel.AI_EDITED),
])
def test_the_stronger_of_manifest_and_declaration_decides_the_label(
    usage: AiUsage, source_types: tuple[str, ...], label: AiLabel
) -> None:
    evidence = C2paEvidence(C2paValidation.VALID, trusted=True, digital_source_types=source_types, signer="S")
    result = assess_ai_content(AiDeclaration(usage), evidence, Market.UNITED_STATES, current_rule_set())
    assert result.label is label
    assert [f.rule_id for f in result.findings if f.rule_id.startswith("AI_C2PA") or f.rule_id == "AI_PROVENANCE"]
