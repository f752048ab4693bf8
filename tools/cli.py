"""`limelight`: run the platform, mint dev tokens, generate stubs, and the officers' tools."""

from __future__ import annotations

import datetime as dt
import importlib
import signal
import sys
import threading
from typing import Annotated

import typer

from libs.auth.principal import AgeBracket, Role, birth_date_for_age
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit import config
from libs.storage.paths import data_dir

try:
    from tools.audit_cli import app as audit_app
    from tools.upload_cli import upload
except ModuleNotFoundError as missing:  # pragma: no cover - only before the first generation
    if missing.name is None or not missing.name.startswith(("limelight", "buf")):
        raise
    raise SystemExit("The gRPC stubs are missing: run `python -m tools.protogen` (or `bash tools/setup.sh`).") from None

app = typer.Typer(
    help="Limelight: the backend of a creator platform. Start with `limelight up`.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(audit_app, name="audit", help="The compliance officer's tools: query, export and verify the audit trail.")
app.command()(upload)


@app.command()
def up() -> None:
    """Start all six services and a local Ray head; Ctrl-C stops everything.

    Endpoints are printed as each service reports SERVING. Set RAY_ADDRESS to join an
    existing Ray cluster instead of starting a head, LIMELIGHT_<SERVICE>_PORT to move a
    service, and LIMELIGHT_DATA_DIR to keep data somewhere other than .data/.
    """
    from tools.supervisor import Platform

    platform = Platform(data_root=data_dir())
    stop_requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_requested.set())
    try:
        typer.echo(f"data directory: {platform.data_root}")
        platform.start(typer.echo)
        typer.echo("limelight is up; press Ctrl-C to stop.")
        stop_requested.wait()
        typer.echo("stopping: draining calls in flight...")
    finally:
        platform.stop()
    typer.echo("stopped.")


@app.command()
def serve(service: Annotated[str, typer.Argument(help=f"One of: {', '.join(config.SERVICES)}.")]) -> None:
    """Run one service in the foreground (what `up` runs for each)."""
    if service not in config.SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; choose from {', '.join(config.SERVICES)}")
    from libs.kit.server import run_service_process

    run_service_process(service, importlib.import_module(f"services.{service}.server").build)


@app.command()
def token(
    subject: Annotated[str, typer.Option(help="users/{id} or services/{id}.")],
    role: Annotated[list[Role], typer.Option(help="Repeat for several roles.")],
    age: Annotated[int | None, typer.Option(min=0, max=130, help="Age in years; sets a birth date.")] = None,
    birth_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD; overrides --age.")] = None,
    country: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2 country code.")] = "DE",
    ttl_minutes: Annotated[int, typer.Option(min=1, max=24 * 60)] = 60,
) -> None:
    """Mint a development bearer token signed with the platform's dev key.

    Example: limelight token --subject users/alice --role viewer --age 25
    """
    born = dt.date.fromisoformat(birth_date) if birth_date else birth_date_for_age(age, dt.date.today()) if age is not None else None
    claims = TokenClaims(
        subject=subject,
        roles=frozenset(role),
        birth_date=born,
        age_bracket=AgeBracket.UNKNOWN,
        country=country.upper(),
    )
    typer.echo(mint_token(platform_signing_key(), claims, ttl=dt.timedelta(minutes=ttl_minutes)))


@app.command()
def protos() -> None:
    """Generate the Python stubs from protos/ into gen/ (needed before anything runs)."""
    from tools import protogen

    written = protogen.generate()
    typer.echo(f"generated {len(written)} files into {protogen.DEFAULT_OUT}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
