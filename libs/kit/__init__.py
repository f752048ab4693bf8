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
- `status`: the single table from `libs.errors` to gRPC status codes and details.
- `validation`: protovalidate, reported as `google.rpc.BadRequest` field violations.

Nothing here connects or opens files at import time.
"""
