"""Generate the Python stubs of Limelight's public API: the one generator for plain Python runs.

    python -m tools.protogen                 # writes gen/ at the repository root
    python -m tools.protogen --out DIR       # writes DIR (Bazel's genrule uses this)
    python -m tools.protogen --image FILE    # also writes a buf image for `buf lint FILE`

What it writes under the output directory:

    limelight/<service>/v1/<file>_pb2.py, _pb2.pyi, _pb2_grpc.py   (with __init__.py files)
    buf/validate/validate_pb2.py, validate_pb2.pyi

`google.api`, `google.rpc` and the well-known types are not written: googleapis-common-protos
and protobuf provide those modules at run time.

Why a descriptor set: protovalidate 2.x ships no `validate.proto`, only a generated module
that carries the serialized `FileDescriptorProto` of `buf/validate/validate.proto`. We read
those bytes out of the module's source, add the descriptors of every other file our protos
import (taken from the installed runtime modules), and hand protoc the set with
`--descriptor_set_in`, so `import "buf/validate/validate.proto"` resolves fully offline.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fcntl
import importlib
import importlib.util
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from google.protobuf import descriptor as protobuf_descriptor
from google.protobuf import descriptor_pb2

from tools.repository import repository_root

REPO_ROOT = repository_root()
PROTO_ROOT = REPO_ROOT / "protos"
DEFAULT_OUT = REPO_ROOT / "gen"

VALIDATE_PROTO = "buf/validate/validate.proto"
_VALIDATE_MODULE = "protovalidate._gen.buf.validate.validate_pb"

# Top-level packages this tool owns in the output directory; everything else there is left alone.
GENERATED_PACKAGES = ("limelight", "buf")

_IMPORT_LINE = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"(?P<path>[^"]+)"\s*;', re.MULTILINE)

# Runs protoc (sys.argv[0] is "-c", its program name) without the include path that `python -m grpc_tools.protoc` appends, so every
# import outside protos/ resolves from our descriptor set and nowhere else.
# mypy-protobuf's plugin, installed beside the interpreter that runs protogen (the venv).
_MYPY_GRPC_PLUGIN = Path(sys.executable).with_name("protoc-gen-mypy_grpc")

_PROTOC_SCRIPT = "import sys; from grpc_tools import protoc; sys.exit(protoc.main(sys.argv))"


class ProtocError(RuntimeError):
    """protoc rejected the protos; the message carries protoc's own diagnostics."""


def proto_files(proto_root: Path = PROTO_ROOT) -> list[str]:
    """Our .proto files, as paths relative to `proto_root` (the form protoc and imports use)."""
    return sorted(path.relative_to(proto_root).as_posix() for path in proto_root.rglob("*.proto"))


def validate_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The descriptor of buf/validate/validate.proto, read from protovalidate's generated module.

    The module is parsed, not imported, and the bytes are the literal first argument of its
    `file_desc(...)` call, so we take exactly what protovalidate was built from.
    """
    spec = importlib.util.find_spec(_VALIDATE_MODULE)
    if spec is None or spec.origin is None:
        raise ProtocError(f"protovalidate is not installed: cannot find {_VALIDATE_MODULE}")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"), filename=spec.origin)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "file_desc"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, bytes)
        ):
            file_proto = descriptor_pb2.FileDescriptorProto.FromString(node.args[0].value)
            if file_proto.name != VALIDATE_PROTO:
                raise ProtocError(f"{spec.origin} describes {file_proto.name!r}, not {VALIDATE_PROTO}")
            return file_proto
    raise ProtocError(f"no file_desc(b'...') call in {spec.origin}; has protovalidate changed layout?")


def _runtime_file_descriptor(proto_path: str) -> protobuf_descriptor.FileDescriptor:
    """The descriptor of an installed proto (`google/api/resource.proto` -> google.api.resource_pb2)."""
    module_name = proto_path.removesuffix(".proto").replace("/", ".") + "_pb2"
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ProtocError(
            f"{proto_path} is imported by our protos but no installed module {module_name} provides it"
        ) from error
    file_descriptor: protobuf_descriptor.FileDescriptor = module.DESCRIPTOR
    return file_descriptor


def dependency_descriptor_set(proto_root: Path = PROTO_ROOT) -> descriptor_pb2.FileDescriptorSet:
    """Every file our protos import from outside `proto_root`, dependencies before dependents.

    validate.proto is always included: its Python module is generated on every run.
    """
    ours = set(proto_files(proto_root))
    wanted: list[str] = [VALIDATE_PROTO]
    for relative in sorted(ours):
        text = (proto_root / relative).read_text(encoding="utf-8")
        wanted.extend(m["path"] for m in _IMPORT_LINE.finditer(text) if m["path"] not in ours)

    ordered: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def add(proto_path: str) -> None:
        if proto_path in ordered:
            return
        if proto_path == VALIDATE_PROTO:
            file_proto = validate_file_descriptor()
        else:
            file_proto = descriptor_pb2.FileDescriptorProto()
            _runtime_file_descriptor(proto_path).CopyToProto(file_proto)
        for dependency in file_proto.dependency:
            add(dependency)
        ordered[proto_path] = file_proto

    for proto_path in wanted:
        add(proto_path)
    return descriptor_pb2.FileDescriptorSet(file=list(ordered.values()))


def _run_protoc(arguments: list[str]) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", _PROTOC_SCRIPT, *arguments],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        diagnostics = (completed.stderr or completed.stdout).strip()
        raise ProtocError(f"protoc failed (exit {completed.returncode}):\n{diagnostics}")


@contextlib.contextmanager
def _dependency_set_file(proto_root: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="limelight-protogen-") as scratch:
        path = Path(scratch) / "dependencies.binpb"
        path.write_bytes(dependency_descriptor_set(proto_root).SerializeToString())
        yield path


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialises generators writing the same directory (parallel test workers, `limelight up`)."""
    with lock_path.open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _add_package_markers(root: Path) -> None:
    """Makes each generated directory a regular package, so imports never depend on namespace lookup."""
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()


def generate(out_dir: Path = DEFAULT_OUT, proto_root: Path = PROTO_ROOT) -> list[str]:
    """Write the stubs into `out_dir` and return the generated module names.

    Safe to run repeatedly and concurrently: stubs are generated into a staging directory
    and each owned package (`limelight`, `buf`) is swapped in whole, so stubs of a deleted
    proto do not linger and no package is ever a mix of old and new stubs.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    files = proto_files(proto_root)
    if not files:
        raise ProtocError(f"no .proto files under {proto_root}")
    with _exclusive(out_dir / ".protogen.lock"), _dependency_set_file(proto_root) as dependencies:
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".protogen-") as staging_name:
            staging = Path(staging_name)
            common = [f"--proto_path={proto_root}", f"--descriptor_set_in={dependencies}"]
            _run_protoc([*common, f"--python_out={staging}", f"--pyi_out={staging}", VALIDATE_PROTO])
            _run_protoc(
                [
                    *common,
                    f"--python_out={staging}",
                    f"--pyi_out={staging}",
                    f"--grpc_python_out={staging}",
                    # Typed servicer and stub classes (`*_pb2_grpc.pyi`), so mypy --strict
                    # checks our handlers and clients against the contract.
                    f"--plugin=protoc-gen-mypy_grpc={_MYPY_GRPC_PLUGIN}",
                    f"--mypy_grpc_out={staging}",
                    *files,
                ]
            )
            for package in GENERATED_PACKAGES:
                _add_package_markers(staging / package)
                target = out_dir / package
                if target.exists():
                    target.rename(staging / f"{package}.previous")
                (staging / package).rename(target)
    return generated_modules(out_dir)


def generated_modules(out_dir: Path = DEFAULT_OUT) -> list[str]:
    """Dotted names of the generated modules (not the package markers) under `out_dir`."""
    out_dir = Path(out_dir)
    return sorted(
        ".".join(path.relative_to(out_dir).with_suffix("").parts)
        for package in GENERATED_PACKAGES
        for path in (out_dir / package).rglob("*.py")
        if path.name != "__init__.py"
    )


def build_image(image_path: Path, proto_root: Path = PROTO_ROOT) -> Path:
    """Write a buf image of our protos with their imports and source info.

    `buf lint IMAGE --path limelight` then lints only our files, with no access to the BSR.
    """
    image_path = Path(image_path).resolve()
    image_path.parent.mkdir(parents=True, exist_ok=True)
    with _dependency_set_file(proto_root) as dependencies:
        _run_protoc(
            [
                f"--proto_path={proto_root}",
                f"--descriptor_set_in={dependencies}",
                "--include_imports",
                "--include_source_info",
                f"--descriptor_set_out={image_path}",
                *proto_files(proto_root),
            ]
        )
    return image_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.protogen", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: gen/)")
    parser.add_argument("--image", type=Path, help="also write a buf image (descriptor set) to this file")
    parser.add_argument("--proto-root", type=Path, default=PROTO_ROOT, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    try:
        modules = generate(arguments.out, arguments.proto_root)
        if arguments.image:
            build_image(arguments.image, arguments.proto_root)
    except ProtocError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"generated {len(modules)} modules into {Path(arguments.out).resolve()}")
    if arguments.image:
        print(f"wrote buf image {arguments.image.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
