"""The public API: protos/ compiles with tools/protogen.py, imports, validates input, and lints.

Generated modules are imported in a child interpreter whose path holds only the fresh output,
so these tests check what `generate()` wrote, never a stale gen/ of the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.unknown_fields import UnknownFieldSet

from tools import protogen
from tools.contract_samples import MALFORMED_REQUESTS
from tools.repository import CHECKOUT

# buf is a tool, not a data file: PATH (tools/test.sh puts node_modules/.bin on it, and
# .bazelrc passes PATH into tests), else the checkout's npm install.
BUF = shutil.which("buf", path=os.pathsep.join([os.environ.get("PATH", ""), str(CHECKOUT / "node_modules" / ".bin")]))

# RPCs that issues 3-5 and the brief name, which other teams implement against these protos.
# (service, method): (client streaming, server streaming)
CONTRACT_RPCS: dict[tuple[str, str], tuple[bool, bool]] = {
    ("limelight.compliance.v1.AuditService", "AppendEvents"): (False, False),
    ("limelight.compliance.v1.AuditService", "GetCheckpoint"): (False, False),
    ("limelight.compliance.v1.AuditService", "GetInclusionProof"): (False, False),
    ("limelight.compliance.v1.AuditService", "GetConsistencyProof"): (False, False),
    ("limelight.compliance.v1.AuditService", "QueryEvents"): (False, False),
    ("limelight.compliance.v1.AuditService", "ExportEvents"): (False, True),
    ("limelight.compliance.v1.AuditService", "GetPublicKey"): (False, False),
    ("limelight.compliance.v1.DisclosureService", "EvaluateDisclosure"): (False, False),
    ("limelight.compliance.v1.DisclosureService", "AssessAiContent"): (False, False),
    ("limelight.ingest.v1.IngestService", "UploadVideo"): (True, False),
    ("limelight.ingest.v1.IngestService", "GetUpload"): (False, False),
    ("limelight.ingest.v1.IngestService", "GetVideo"): (False, False),
    ("limelight.ingest.v1.IngestService", "ListVideos"): (False, False),
    ("limelight.ingest.v1.IngestService", "WatchVideo"): (False, True),
    ("limelight.ranking.v1.CandidateService", "RegisterVideo"): (False, False),
    ("limelight.ranking.v1.FollowService", "GetFollowStats"): (False, False),
    ("limelight.gifts.v1.LiveService", "StartLive"): (False, False),
    ("limelight.gifts.v1.LiveService", "EndLive"): (False, False),
    ("limelight.gifts.v1.LiveService", "GetLiveSession"): (False, False),
    ("limelight.gifts.v1.WalletService", "TopUpCoins"): (False, False),
    ("limelight.gifts.v1.WalletService", "GetWallet"): (False, False),
    ("limelight.gifts.v1.WalletService", "ListTransactions"): (False, False),
    ("limelight.gifts.v1.WalletService", "ReverseTopUp"): (False, False),
    ("limelight.gifts.v1.GiftService", "ListGifts"): (False, False),
    ("limelight.gifts.v1.GiftService", "SendGift"): (False, False),
    ("limelight.gifts.v1.GiftService", "StreamGifts"): (False, True),
    ("limelight.gifts.v1.GiftService", "GetLiveLeaderboard"): (False, False),
    ("limelight.gifts.v1.GiftService", "GetPeriodLeaderboard"): (False, False),
    ("limelight.gifts.v1.PayoutService", "RequestPayout"): (False, False),
    ("limelight.gifts.v1.AccountStandingService", "UpdateAccountStanding"): (False, False),
}

# Input fields that legitimately carry no rule: any value is well-formed, and only the server's
# state can say whether it is in range (a leaf index against the tree, a stream cursor).
UNCONSTRAINED_BY_DESIGN = {
    "limelight.compliance.v1.GetInclusionProofRequest.leaf_index",
    "limelight.compliance.v1.GetInclusionProofRequest.tree_size",
    "limelight.compliance.v1.ExportEventsRequest.start_index",
    "limelight.compliance.v1.ExportEventsRequest.end_index",
    "limelight.compliance.v1.ExportEventsRequest.tree_size",
    "limelight.gifts.v1.StreamGiftsRequest.after_sequence",
}

# Runs in the child interpreter: imports every module, checks each service has a stub, and
# validates the cases. Prints the bad field paths found per malformed case as JSON.
_CHILD_SCRIPT = """
import importlib, json, sys
import protovalidate
from google.protobuf import json_format

modules, cases = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in modules:
    module = importlib.import_module(name)
    if name.endswith("_pb2"):
        services = module.DESCRIPTOR.services_by_name
        grpc_module = importlib.import_module(name + "_grpc") if services else None
        for service in services:
            getattr(grpc_module, service + "Stub")
            getattr(grpc_module, service + "Servicer")
found = []
for module_name, message_name, valid, malformed, _ in cases:
    message_class = getattr(importlib.import_module(module_name), message_name)
    protovalidate.validate(json_format.ParseDict(valid, message_class()))
    try:
        protovalidate.validate(json_format.ParseDict(malformed, message_class()))
        found.append([])
    except protovalidate.ValidationError as error:
        found.append(sorted(
            ".".join(element.field_name for element in violation.proto.field.elements)
            for violation in error.violations
        ))
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    protogen.generate(out)
    return out


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    path = protogen.build_image(tmp_path_factory.mktemp("image") / "image.binpb")
    return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())


def _our_files(image: descriptor_pb2.FileDescriptorSet) -> list[descriptor_pb2.FileDescriptorProto]:
    return [file for file in image.file if file.name.startswith("limelight/")]


def test_every_proto_gets_messages_grpc_and_typing_stubs(generated: Path) -> None:
    modules = set(protogen.generated_modules(generated))
    for proto in protogen.proto_files():
        dotted = proto.removesuffix(".proto").replace("/", ".")
        assert {f"{dotted}_pb2", f"{dotted}_pb2_grpc"} <= modules
        assert (generated / proto.replace(".proto", "_pb2.pyi")).is_file()
    assert "buf.validate.validate_pb2" in modules
    assert not (generated / "google").exists(), "google.* must come from the installed packages"


def test_every_module_imports_and_validation_names_the_bad_field(generated: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD_SCRIPT,
            json.dumps(protogen.generated_modules(generated)),
            json.dumps(MALFORMED_REQUESTS),
        ],
        cwd=generated,
        env={**os.environ, "PYTHONPATH": str(generated)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    found = json.loads(completed.stdout)
    for case, bad_fields in zip(MALFORMED_REQUESTS, found, strict=True):
        assert bad_fields == [case[4]], f"{case[1]}: violations on {bad_fields}"


def test_regenerating_replaces_stale_stubs_and_keeps_other_files(tmp_path: Path) -> None:
    first = protogen.generate(tmp_path)
    stale = tmp_path / "limelight" / "removed_pb2.py"
    stale.write_text("")
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("not ours")

    assert protogen.generate(tmp_path) == first
    assert not stale.exists()
    assert unrelated.read_text() == "not ours"


def test_protoc_errors_are_reported_with_protocs_diagnostics(tmp_path: Path) -> None:
    broken = tmp_path / "protos" / "limelight" / "broken" / "v1"
    broken.mkdir(parents=True)
    (broken / "broken.proto").write_text('syntax = "proto3";\npackage limelight.broken.v1;\nmessage M { Nope n = 1; }\n')

    with pytest.raises(protogen.ProtocError, match=r"broken\.proto.*Nope"):
        protogen.generate(tmp_path / "out", proto_root=tmp_path / "protos")


def test_validate_descriptor_comes_from_the_installed_protovalidate() -> None:
    validate = protogen.validate_file_descriptor()

    assert validate.package == "buf.validate"
    assert "FieldRules" in {message.name for message in validate.message_type}


def test_contract_rpcs_exist_with_their_streaming_shape(image: descriptor_pb2.FileDescriptorSet) -> None:
    methods = {
        (f"{file.package}.{service.name}", method.name): (method.client_streaming, method.server_streaming)
        for file in _our_files(image)
        for service in file.service
        for method in service.method
    }
    for rpc, shape in CONTRACT_RPCS.items():
        assert methods.get(rpc) == shape, rpc


def _has_validation_rule(field: descriptor_pb2.FieldDescriptorProto, rule_extension_number: int) -> bool:
    """True when the field carries `(buf.validate.field)`, whether or not this process has the
    extension registered (parsed as a known extension, or kept as an unknown field)."""
    known = any(descriptor.full_name == "buf.validate.field" for descriptor, _ in field.options.ListFields())
    return known or any(unknown.field_number == rule_extension_number for unknown in UnknownFieldSet(field.options))


def test_every_input_field_carries_a_validation_rule(image: descriptor_pb2.FileDescriptorSet) -> None:
    rule_extension_number = next(
        extension.number for extension in protogen.validate_file_descriptor().extension if extension.name == "field"
    )
    messages: dict[str, tuple[descriptor_pb2.FileDescriptorProto, int]] = {}
    inputs: list[str] = []
    for file in _our_files(image):
        for index, message in enumerate(file.message_type):
            messages[f".{file.package}.{message.name}"] = (file, index)
        inputs.extend(method.input_type for service in file.service for method in service.method)
    comments = {
        (file.name, tuple(location.path)): location.leading_comments
        for file in _our_files(image)
        for location in file.source_code_info.location
    }

    unconstrained: list[str] = []
    visited: set[str] = set()
    pending = list(inputs)
    while pending:
        type_name = pending.pop()
        if type_name in visited or type_name not in messages:
            continue  # a well-known type, or seen already
        visited.add(type_name)
        file, index = messages[type_name]
        for field_index, field in enumerate(file.message_type[index].field):
            # 4 = FileDescriptorProto.message_type, 2 = DescriptorProto.field
            if "Output only" in comments.get((file.name, (4, index, 2, field_index)), ""):
                continue
            if field.type == field.TYPE_MESSAGE:
                pending.append(field.type_name)  # protovalidate checks set sub-messages too
                continue
            if field.type == field.TYPE_BOOL or _has_validation_rule(field, rule_extension_number):
                continue
            unconstrained.append(f"{type_name[1:]}.{field.name}")

    assert sorted(set(unconstrained) - UNCONSTRAINED_BY_DESIGN) == []


def test_buf_lint_standard_passes_on_our_protos(tmp_path: Path) -> None:
    assert BUF is not None, "buf is missing: run `npm ci` at the repository root"
    image_path = protogen.build_image(tmp_path / "image.binpb")

    completed = subprocess.run(
        [BUF, "lint", str(image_path), "--path", "limelight", "--config", str(protogen.REPO_ROOT / "buf.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
