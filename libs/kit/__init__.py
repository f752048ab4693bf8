"""The Limelight service kit: everything a service needs besides its handlers.

- `server`: declare a service (`ServiceDefinition`) and run it with health, reflection,
  graceful shutdown and the kit interceptor.
- `interceptors`: one server interceptor doing tracing, authentication, authorisation,
  protovalidate and error mapping; client interceptors adding deadlines, tokens and trace
  context.
- `context`: what a handler can ask about the current call (`current_principal()`).
- `clients`: channels to other Limelight services (deadlines, retries on UNAVAILABLE,
  token propagation, tracing).
- `telemetry`: OpenTelemetry setup, span export (OTLP or JSON lines), log correlation,
  trace context carriers for Ray tasks.
- `transport`: TLS for every server and client (`LIMELIGHT_TLS`), mutual TLS between
  services on the mesh port, plaintext only on loopback.
- `pki`: the development CA and per-service certificates (`ensure_dev_pki`).
- `shedding`: the bound on concurrent calls and the per-peer rate of tokenless calls,
  refused with RESOURCE_EXHAUSTED and RetryInfo.
- `access`: tokens, roles, delegation, and `access_table` (every method's rule).
- `status`: the single table from `libs.errors` to gRPC status codes and details.
- `validation`: protovalidate, reported as `google.rpc.BadRequest` field violations.

Nothing here connects or opens files at import time.
"""
