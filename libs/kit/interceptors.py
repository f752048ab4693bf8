"""The kit's call pipeline: every cross-cutting concern of a call, in one place each side.

Server side, every method handler is wrapped once, at registration, to run in order: a
SERVER span (W3C parent from metadata), load shedding (`libs.kit.shedding`: the bound on
calls in flight, then the per-peer rate of tokenless calls), authentication (with the
client certificate's service identity when the transport verifies one) and
authorisation, protovalidate on each request message, the handler, and the mapping of
domain errors to a status code plus `google.rpc` details. Health and reflection are
never shed.

Client side, one interceptor adds the default deadline, the caller's service token, the
user's token (on-behalf-of) and the trace context, inside a CLIENT span.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeAlias, cast

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
from libs.kit.context import CallIdentity, current_identity, reset_identity, set_identity, set_peer
from libs.kit.server_spans import ServerSpans
from libs.kit.shedding import ConcurrencyLimit, PeerRateLimit, ShedSettings, peer_host
from libs.kit.status import internal_status, status_code_for, to_rpc_status, unimplemented_status
from libs.kit.telemetry import current_ids, extract_carrier, inject_carrier
from libs.kit.transport import certified_service
from libs.kit.validation import validate

logger = logging.getLogger(__name__)

# Called with every UNAUTHENTICATED or PERMISSION_DENIED refusal (the audit trail of denials).
# Load-shedding refusals (RESOURCE_EXHAUSTED) are not passed: they decide nothing about
# who may do what, and a flood must not become a flood of audit records.
DeniedListener = Callable[[str, Principal | None, DomainError], Awaitable[None]]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def _span_attributes(method: str) -> dict[str, str]:
    _, service, name = method.split("/", 2) if method.count("/") >= 2 else ("", "", method)
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


class ServerCallPipeline:
    """Wraps each method handler once, at registration, with the kit's per-call work.

    Not a `grpc.aio.ServerInterceptor`: an aio interceptor is awaited on every call before
    the handler is even found, and that hop alone cost a third of a small RPC's
    throughput here. Wrapping at registration costs nothing per call beyond the work.
    """

    def __init__(
        self,
        *,
        service: str,
        server_spans: ServerSpans,
        authenticator: Authenticator,
        policy: AccessPolicy,
        on_denied: DeniedListener | None = None,
        shedding: ShedSettings | None = None,
        verifies_certificates: bool = False,
    ) -> None:
        """`verifies_certificates`: the transport checks client certificates (mutual TLS)."""
        self.service = service
        self.server_spans = server_spans
        self.authenticator = authenticator
        self.policy = policy
        self.on_denied = on_denied
        settings = shedding or ShedSettings()
        self.concurrency = ConcurrencyLimit(settings.max_concurrent_calls, settings.overload_retry)
        self.tokenless = PeerRateLimit(rate=settings.tokenless_rate, burst=settings.tokenless_burst)
        self.verifies_certificates = verifies_certificates

    def registering_on(self, server: grpc.aio.Server) -> HandlerWrappingServer:
        """The server as registration functions (`add_*Servicer_to_server`) should see it."""
        return HandlerWrappingServer(server, self.wrap)

    def wrap(self, method: str, inner: Handler) -> Handler:
        pipeline = self
        attributes = _span_attributes(method)
        is_public = self.policy.is_public(method)
        infrastructure = method.startswith(INFRASTRUCTURE_PREFIXES)
        # Health and reflection messages carry no rules; skipping them keeps probes cheap.
        check = _ignore if infrastructure else _validate_message

        async def checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
            async for request in requests:
                check(request)
                yield request

        def begin(context: Context) -> _Call:
            return _Call(pipeline, method, attributes, is_public, not infrastructure, context)

        codec = {"request_deserializer": inner.request_deserializer, "response_serializer": inner.response_serializer}
        if inner.unary_unary:
            behavior = cast(Callable[[Any, Context], Awaitable[Any]], inner.unary_unary)

            # The hot path, spelled out: an `async with` would add two awaits per call.
            async def unary_unary(request: Any, context: Context) -> Any:
                call = begin(context)
                try:
                    call.admit()
                    check(request)
                    return await behavior(request, context)
                except Exception as error:
                    await call.abort_for(error)
                    raise
                finally:
                    call.end()

            return grpc.unary_unary_rpc_method_handler(unary_unary, **codec)
        if inner.unary_stream and inspect.isasyncgenfunction(inner.unary_stream):
            generating_behavior = cast(Callable[[Any, Context], AsyncIterator[Any]], inner.unary_stream)

            async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
                async with begin(context):
                    check(request)
                    async for response in generating_behavior(request, context):
                        yield response

            return grpc.unary_stream_rpc_method_handler(unary_stream, **codec)
        if inner.unary_stream:
            # Handlers that stream with `await context.write(...)` (the health service's Watch).
            writing_behavior = cast(Callable[[Any, Context], Awaitable[None]], inner.unary_stream)

            async def unary_stream_by_writes(request: Any, context: Context) -> None:
                async with begin(context):
                    check(request)
                    await writing_behavior(request, context)

            return grpc.unary_stream_rpc_method_handler(unary_stream_by_writes, **codec)
        if inner.stream_unary:
            collecting_behavior = cast(Callable[[AsyncIterator[Any], Context], Awaitable[Any]], inner.stream_unary)

            async def stream_unary(requests: AsyncIterator[Any], context: Context) -> Any:
                async with begin(context):
                    return await collecting_behavior(checked(requests), context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, **codec)
        bidi_behavior = cast(Callable[[AsyncIterator[Any], Context], AsyncIterator[Any]], inner.stream_stream)

        async def stream_stream(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            async with begin(context):
                async for response in bidi_behavior(checked(requests), context):
                    yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, **codec)


class HandlerRegistry(Protocol):
    """The part of `grpc.aio.Server` that generated `add_*Servicer_to_server` functions use."""

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None: ...

    def add_registered_method_handlers(self, service_name: str, handlers: dict[str, Handler]) -> None:
        ...


class HandlerWrappingServer:
    """Stands in for the server during registration and wraps every handler it is given."""

    def __init__(self, server: grpc.aio.Server, wrap: Callable[[str, Handler], Handler]) -> None:
        self._server = server
        self._wrap = wrap

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers([_WrappedGenericHandler(handler, self._wrap) for handler in handlers])

    def add_registered_method_handlers(self, service_name: str, handlers: dict[str, Handler]) -> None:
        self._server.add_registered_method_handlers(
            service_name, {name: self._wrap(f"/{service_name}/{name}", handler) for name, handler in handlers.items()}
        )


class _WrappedGenericHandler(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler,
                 wrap: Callable[[str, Handler], Handler]) -> None:
        self._inner = inner
        self._wrap = wrap
        self._wrapped: dict[str, Handler | None] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        method = handler_call_details.method
        try:
            return self._wrapped[method]
        except KeyError:
            inner = self._inner.service(handler_call_details)
            wrapped = None if inner is None else self._wrap(method, inner)
            self._wrapped[method] = wrapped
            return wrapped


def _validate_message(request: Any) -> None:
    if isinstance(request, Message):
        validate(request)


def _ignore(request: Any) -> None:
    return None


class _Call:
    """One call of one method: its span, its caller, and how it ends."""

    __slots__ = ("_pipeline", "_method", "_is_public", "_sheddable", "_in_flight", "_context", "_metadata", "_span",
                 "_otel_token", "_identity_token", "_principal")

    def __init__(self, pipeline: ServerCallPipeline, method: str, attributes: dict[str, str], is_public: bool,
                 sheddable: bool, context: Context) -> None:
        self._pipeline = pipeline
        self._method = method
        self._is_public = is_public
        self._sheddable = sheddable
        self._in_flight = False
        self._context = context
        self._principal: Principal | None = None
        self._metadata = metadata = dict(context.invocation_metadata() or ())
        parent = extract_carrier(cast(dict[str, str], metadata)) if "traceparent" in metadata else None
        self._span = pipeline.server_spans.start(method, parent, attributes)
        self._otel_token = otel_context.attach(trace.set_span_in_context(self._span, parent))
        self._identity_token = set_identity(None)

    def admit(self) -> None:
        """Shed, authenticate and authorise, or raise the domain error that refuses the call."""
        pipeline = self._pipeline
        if self._sheddable:
            pipeline.concurrency.enter()
            self._in_flight = True
        try:
            authenticated = pipeline.authenticator.authenticate(
                self._metadata, self._certified_service if pipeline.verifies_certificates else None
            )
        except Unauthenticated:
            # A bad token is no better than none: it draws on the same per-peer bucket.
            if self._sheddable:
                pipeline.tokenless.take(peer_host(self._context.peer()))
            raise
        if authenticated is None:
            if self._sheddable:
                pipeline.tokenless.take(peer_host(self._context.peer()))
            if not self._is_public:
                raise Unauthenticated("this call needs a bearer token", reason="TOKEN_MISSING")
            return
        principal, token, on_behalf_of_token = authenticated
        self._principal = principal
        set_identity(CallIdentity(principal, token, on_behalf_of_token))
        if self._span.is_recording():
            self._span.set_attribute("enduser.id", principal.subject)
        pipeline.policy.authorize(self._method, principal)

    def _certified_service(self) -> str:
        return certified_service(self._context)

    async def abort_for(self, error: Exception) -> None:
        """Abort the call with the status `error` maps to (raises AbortError); pass aborts through."""
        if isinstance(error, grpc.aio.AbortError):
            return
        span = self._span
        if isinstance(error, DomainError):
            code = status_code_for(error)
            if span.is_recording():
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                span.set_attribute("limelight.error_reason", error.reason)
            if isinstance(error, (PermissionDenied, Unauthenticated)) and self._pipeline.on_denied:
                set_peer(self._context.peer())  # only refused calls pay for it
                await self._pipeline.on_denied(self._method, self._principal, error)
            status = to_rpc_status(error, service=self._pipeline.service)
        elif isinstance(error, NotImplementedError):
            # What the generated base servicer raises for an RPC nobody built yet.
            status = unimplemented_status(self._method)
        elif (isinstance(error, grpc.aio.AioRpcError) and error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
              and (shed := rpc_status.from_call(error)) is not None):
            # A callee shedding load: pass its status and RetryInfo on, so the back-off
            # reaches whoever can wait, instead of turning overload into INTERNAL.
            if span.is_recording():
                span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
            status = shed
        else:
            logger.error("unhandled error in %s", self._method, exc_info=error)
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            status = internal_status(current_ids().trace_id)
        await self._context.abort_with_status(rpc_status.to_status(status))

    def end(self) -> None:
        if self._in_flight:
            self._pipeline.concurrency.leave()
        reset_identity(self._identity_token)
        otel_context.detach(self._otel_token)
        self._span.end()

    async def __aenter__(self) -> _Call:
        try:
            self.admit()
        except Exception as error:
            try:
                await self.abort_for(error)
            finally:
                self.end()
            raise
        return self

    async def __aexit__(self, error_type: type[BaseException] | None, error: BaseException | None, _tb: Any) -> None:
        try:
            if isinstance(error, Exception):
                await self.abort_for(error)
        finally:
            self.end()


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
        if AUTHORIZATION_HEADER not in metadata.keys():
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


class _UnaryStreamView(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, kit: KitClientInterceptor) -> None:
        self._kit = kit

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._kit.intercept_unary_stream(continuation, client_call_details, request)


class _StreamUnaryView(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, kit: KitClientInterceptor) -> None:
        self._kit = kit

    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await self._kit.intercept_stream_unary(continuation, client_call_details, request_iterator)


class _StreamStreamView(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, kit: KitClientInterceptor) -> None:
        self._kit = kit

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await self._kit.intercept_stream_stream(continuation, client_call_details, request_iterator)


def channel_interceptors(kit: KitClientInterceptor) -> list[grpc.aio.ClientInterceptor]:
    """`kit` once per call kind. grpc.aio files each interceptor under the first kind it is (an elif
    chain in `Channel.__init__`), so an object of all four kinds alone would see unary-unary calls
    only: streams (WatchConsentChanges) would go out without the service token or trace context."""
    return [kit, _UnaryStreamView(kit), _StreamUnaryView(kit), _StreamStreamView(kit)]
