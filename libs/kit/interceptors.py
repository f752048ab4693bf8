"""The kit's interceptors: every cross-cutting concern of a call, in one place each side.

Server side, one interceptor runs, in order: a SERVER span (W3C parent from metadata),
authentication and authorisation, protovalidate on each request message, the handler,
and the mapping of domain errors to status codes plus `google.rpc` details. One layer
instead of a chain, and the wrapped handler is built once per method, because each
interceptor layer costs a coroutine hop on every call.

Client side, one interceptor adds the default deadline, the caller's service token, the
user's token (on-behalf-of) and the trace context, inside a CLIENT span.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_status import rpc_status
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from libs.auth.principal import Principal
from libs.errors import DomainError, PermissionDenied, Unauthenticated
from libs.kit.access import (
    AUTHORIZATION_HEADER,
    INFRASTRUCTURE_PREFIXES,
    ON_BEHALF_OF_HEADER,
    AccessPolicy,
    Authenticator,
)
from libs.kit.context import CallIdentity, current_identity, reset_identity, set_identity
from libs.kit.status import internal_status, status_code_for, to_rpc_status, unimplemented_status
from libs.kit.telemetry import current_ids, extract_carrier, inject_carrier
from libs.kit.validation import validate

logger = logging.getLogger(__name__)

DeniedListener = Callable[[str, Principal | None, DomainError], Awaitable[None]]


def _span_attributes(method: str) -> dict[str, str]:
    _, service, name = method.split("/", 2) if method.count("/") >= 2 else ("", "", method)
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


class KitServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        *,
        service: str,
        tracer: trace.Tracer,
        authenticator: Authenticator,
        policy: AccessPolicy,
        on_denied: DeniedListener | None = None,
    ) -> None:
        self._service = service
        self._tracer = tracer
        self._authenticator = authenticator
        self._policy = policy
        self._on_denied = on_denied
        self._handlers: dict[str, grpc.RpcMethodHandler | None] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        try:
            return self._handlers[method]
        except KeyError:
            inner = await continuation(handler_call_details)
            wrapped = None if inner is None else self._wrap(method, inner)
            self._handlers[method] = wrapped
            return wrapped

    def _wrap(self, method: str, inner: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        attributes = _span_attributes(method)
        call = _CallScope(self, method, attributes)
        # Health and reflection messages carry no rules; skipping them keeps probes cheap.
        _validate = _ignore if method.startswith(INFRASTRUCTURE_PREFIXES) else _validate_message

        async def _validated(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
            async for request in requests:
                _validate(request)
                yield request

        codec = {"request_deserializer": inner.request_deserializer, "response_serializer": inner.response_serializer}
        if inner.unary_unary:
            behavior = inner.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                async with call.scope(context):
                    _validate(request)
                    return await behavior(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **codec)
        if inner.unary_stream and inspect.isasyncgenfunction(inner.unary_stream):
            generating_behavior = inner.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async with call.scope(context):
                    _validate(request)
                    async for response in generating_behavior(request, context):
                        yield response

            return grpc.unary_stream_rpc_method_handler(unary_stream, **codec)
        if inner.unary_stream:
            # Handlers that stream with `await context.write(...)` (the health service's Watch).
            writing_behavior = inner.unary_stream

            async def unary_stream_by_writes(request: Any, context: grpc.aio.ServicerContext) -> None:
                async with call.scope(context):
                    _validate(request)
                    await writing_behavior(request, context)

            return grpc.unary_stream_rpc_method_handler(unary_stream_by_writes, **codec)
        if inner.stream_unary:
            collecting_behavior = inner.stream_unary

            async def stream_unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
                async with call.scope(context):
                    return await collecting_behavior(_validated(requests), context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, **codec)
        bidi_behavior = inner.stream_stream

        async def stream_stream(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with call.scope(context):
                async for response in bidi_behavior(_validated(requests), context):
                    yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, **codec)


def _validate_message(request: Any) -> None:
    if isinstance(request, Message):
        validate(request)


def _ignore(request: Any) -> None:
    return None


class _CallScope:
    """Span, identity and error mapping around one call of one method."""

    def __init__(self, interceptor: KitServerInterceptor, method: str, attributes: dict[str, str]) -> None:
        self._interceptor = interceptor
        self._method = method
        self._attributes = attributes
        self._is_public = interceptor._policy.is_public(method)

    def scope(self, context: grpc.aio.ServicerContext) -> _ActiveCall:
        return _ActiveCall(self, context)


class _ActiveCall:
    __slots__ = ("_scope", "_context", "_span", "_otel_token", "_identity_token", "_principal")

    def __init__(self, scope: _CallScope, context: grpc.aio.ServicerContext) -> None:
        self._scope = scope
        self._context = context
        self._principal: Principal | None = None

    async def __aenter__(self) -> None:
        scope = self._scope
        metadata = dict(self._context.invocation_metadata() or ())
        parent = extract_carrier(metadata) if "traceparent" in metadata else None
        self._span = scope._interceptor._tracer.start_span(
            scope._method, context=parent, kind=SpanKind.SERVER, attributes=scope._attributes
        )
        self._otel_token = otel_context.attach(trace.set_span_in_context(self._span, parent))
        self._identity_token = set_identity(None)
        try:
            self._admit(metadata)
        except DomainError as error:
            await self._close(error)

    def _admit(self, metadata: dict[str, str]) -> None:
        scope = self._scope
        authenticated = scope._interceptor._authenticator.authenticate(metadata)
        if authenticated is None:
            if not scope._is_public:
                raise Unauthenticated("this call needs a bearer token", reason="TOKEN_MISSING")
            return
        principal, token, on_behalf_of_token = authenticated
        self._principal = principal
        set_identity(CallIdentity(principal, token, on_behalf_of_token))
        if self._span.is_recording():
            self._span.set_attribute("enduser.id", principal.subject)
        scope._interceptor._policy.authorize(scope._method, principal)

    async def __aexit__(self, error_type: type[BaseException] | None, error: BaseException | None, _tb: Any) -> bool:
        await self._close(error)
        return False

    async def _close(self, error: BaseException | None) -> None:
        """End the call; for an error, abort with its status (which raises AbortError)."""
        scope = self._scope
        span = self._span
        try:
            if error is None or isinstance(error, (asyncio.CancelledError, grpc.aio.AbortError, GeneratorExit)):
                return
            if isinstance(error, DomainError):
                code = status_code_for(error)
                if span.is_recording():
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    span.set_attribute("limelight.error_reason", error.reason)
                if isinstance(error, (PermissionDenied, Unauthenticated)) and scope._interceptor._on_denied:
                    await scope._interceptor._on_denied(scope._method, self._principal, error)
                status = to_rpc_status(error, service=scope._interceptor._service)
            elif isinstance(error, NotImplementedError):
                # What the generated base servicer raises for an RPC nobody built yet.
                status = unimplemented_status(scope._method)
            else:
                logger.exception("unhandled error in %s", scope._method, exc_info=error)
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                status = internal_status(current_ids().trace_id)
            await self._context.abort_with_status(rpc_status.to_status(status))
        finally:
            reset_identity(self._identity_token)
            otel_context.detach(self._otel_token)
            span.end()


class KitClientInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Deadline, identity and trace context on every outgoing call, inside a CLIENT span."""

    def __init__(self, *, tracer: trace.Tracer, service_token: Callable[[], str], default_timeout: float) -> None:
        self._tracer = tracer
        self._service_token = service_token
        self._default_timeout = default_timeout

    def _prepare(self, details: grpc.aio.ClientCallDetails) -> tuple[grpc.aio.ClientCallDetails, trace.Span]:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        span = self._tracer.start_span(method, kind=SpanKind.CLIENT, attributes=_span_attributes(method))
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        for key, value in inject_carrier(trace.set_span_in_context(span)).items():
            metadata[key] = value
        if AUTHORIZATION_HEADER not in metadata:
            metadata[AUTHORIZATION_HEADER] = f"Bearer {self._service_token()}"
            identity = current_identity()
            if identity is not None and identity.user_token:
                metadata[ON_BEHALF_OF_HEADER] = identity.user_token
        prepared = grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout if details.timeout is not None else self._default_timeout,
            metadata=metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )
        return prepared, span

    @staticmethod
    def _finish_when_done(call: Any, span: trace.Span) -> Any:
        async def record(done: Any) -> None:
            code = await done.code()
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code is not grpc.StatusCode.OK:
                span.set_status(Status(StatusCode.ERROR, code.name))
            span.end()

        call.add_done_callback(lambda done: asyncio.ensure_future(record(done)))
        return call

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        details, span = self._prepare(client_call_details)
        return self._finish_when_done(await continuation(details, request), span)

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        details, span = self._prepare(client_call_details)
        return self._finish_when_done(await continuation(details, request), span)

    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        details, span = self._prepare(client_call_details)
        return self._finish_when_done(await continuation(details, request_iterator), span)

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        details, span = self._prepare(client_call_details)
        return self._finish_when_done(await continuation(details, request_iterator), span)
