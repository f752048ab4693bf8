"""The files `python -m tools.protogen` writes, so the stub genrule can declare them."""

def protogen_outputs(protos, proto_root = "protos", out_dir = "gen"):
    """Paths of the Python modules, type stubs and package markers tools/protogen writes for `protos`.

    For protos/limelight/gifts/v1/wallet.proto that is gen/limelight/gifts/v1/wallet_pb2.py
    and wallet_pb2_grpc.py, and __init__.py in gen/limelight, gen/limelight/gifts and
    gen/limelight/gifts/v1; gen/buf/validate/validate_pb2.py and its markers always.
    Each module also gets its .pyi type stub (mypy-protobuf), which //tools:types reads.

    Args:
      protos: .proto paths, each under `proto_root`.
      proto_root: the folder protoc resolves imports from.
      out_dir: the folder given to `tools.protogen --out`, relative to the package.

    Returns:
      Output paths relative to the package, for a genrule's `outs`.
    """
    modules = ["buf/validate/validate_pb2.py"]
    for proto in protos:
        stem = proto[len(proto_root) + 1:-len(".proto")]
        modules += [stem + "_pb2.py", stem + "_pb2_grpc.py"]

    packages = {}
    for module in modules:
        folders = module.split("/")[:-1]
        for depth in range(1, len(folders) + 1):
            packages["/".join(folders[:depth])] = True

    return [
        out_dir + "/" + path
        for path in modules +
                    [module[:-len(".py")] + ".pyi" for module in modules] +
                    [package + "/__init__.py" for package in sorted(packages)]
    ]
