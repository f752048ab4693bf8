"""What the kit's tests share: raw-bytes calls and reading `google.rpc` details off an error."""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

DetailT = TypeVar("DetailT", bound=Message)


def raw_unary(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    """A unary method of bytes in, bytes out: enough to exercise the kit without generated stubs."""
    return channel.unary_unary(method)


def status_detail(error: grpc.aio.AioRpcError, detail_type: type[DetailT]) -> DetailT:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status in the trailers"
    for packed in status.details:
        detail = detail_type()
        if packed.Unpack(detail):
            return detail
    raise AssertionError(f"no {detail_type.__name__} detail")


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    return status_detail(error, error_details_pb2.ErrorInfo)
