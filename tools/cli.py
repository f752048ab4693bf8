"""`limelight`: run the platform, mint dev tokens, generate stubs, and the officers' tools."""

from __future__ import annotations

import datetime as dt
import importlib
import os
import signal
import sys
import threading
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from libs.auth.principal import AgeBracket, Role, birth_date_for_age
from libs.kit import config
from libs.storage.paths import ensure_data_dir

# Stores, keys, traces and Ray's token are the platform user's alone: everything the
# platform's processes create is owner-only.
PLATFORM_UMASK = 0o077

app = typer.Typer(
    help="Limelight: the backend of a creator platform. Start with `limelight up`.",
    no_args_is_help=True,
    add_completion=False,
)
# The officers' tools and the uploader pull in gRPC and every stub; each is registered only
# when asked for (all of them for the overview in --help), so `limelight token` starts fast.
_HEAVY_COMMANDS = ("audit", "upload", "dev", "rank")
# Commands that run a service's own code (`dev`: gifts' local payment provider). The
# `limelight` binary (//tools:limelight) carries them and the tools library, which every
# service's tests use, must not: so they are loaded by name, as `serve` loads a server.
_SERVICE_COMMANDS = {"dev": "Development helpers: receipts from the local payment provider.",
                     "rank": "Ranking tools: offline evaluation of the feed ranker (`limelight rank eval`)."}


def _register_heavy_commands(requested: str | None) -> None:
    try:
        if requested in (None, "audit"):
            from tools.audit_cli import app as audit_app

            app.add_typer(audit_app, name="audit",
                          help="The compliance officer's tools: query, export and verify the audit trail.")
        if requested in (None, "upload"):
            from tools.upload_cli import upload

            app.command()(upload)
        for name, help_text in _SERVICE_COMMANDS.items():
            if requested in (None, name):
                app.add_typer(importlib.import_module(f"tools.{name}_cli").app, name=name, help=help_text)
    except ModuleNotFoundError as missing:  # pragma: no cover - only before the first generation
        if missing.name is None or not missing.name.startswith(("limelight", "buf")):
            raise
        raise SystemExit("The gRPC stubs are missing: run `python -m tools.protogen` (or `bash tools/setup.sh`).") from None


def _private_data_dir() -> Path:
    """The data directory at 0700, and this process's umask set so all it creates there is owner-only."""
    os.umask(PLATFORM_UMASK)
    return ensure_data_dir()


def _requested_command(arguments: list[str]) -> str | None:
    return next((argument for argument in arguments if not argument.startswith("-")), None)


class Database(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


@app.command()
def up(
    restart_backoff_s: Annotated[float, typer.Option(min=0.0, help="Wait before the first restart of a crashed service; doubles per recent crash.")] = 1.0,
    max_restart_backoff_s: Annotated[float, typer.Option(min=0.0, help="The longest wait between restarts.")] = 30.0,
    max_crashes: Annotated[int, typer.Option(min=1, help="Give up on a service after this many crashes within --crash-window-s.")] = 5,
    crash_window_s: Annotated[float, typer.Option(min=0.0, help="The window in which crashes count.")] = 60.0,
    replicas: Annotated[str, typer.Option(help="Processes per service, e.g. gifts=2,shop=2 (the rest run one); "
                                               "replicas share one PostgreSQL.")] = "",
    database: Annotated[Database | None, typer.Option(help="sqlite: a file per store (the default, one process per "
                                                    "service); postgres: every store on one PostgreSQL "
                                                    "(the default with replicas).")] = None,
) -> None:
    """Start all six services and a local Ray head, restart any that crash; Ctrl-C stops everything.

    Endpoints are printed as each service reports SERVING, with their transport: TLS
    (LIMELIGHT_TLS=on, the default; clients verify with the CA certificate in the data
    directory's pki/ca.pem, whose path is printed) or plaintext on loopback
    (LIMELIGHT_TLS=off). Set RAY_ADDRESS to join an existing Ray cluster instead of
    starting a head, LIMELIGHT_<SERVICE>_PORT (and _MESH_PORT, the mutual-TLS port other
    services dial) to move a service, and LIMELIGHT_DATA_DIR to keep data somewhere other
    than .data/. With PostgreSQL the platform starts its own server in the data directory
    (Debian's postgresql package), unless LIMELIGHT_DATABASE_URL names one.
    """
    from tools.supervisor import Platform, Replicas, RestartPolicy

    try:
        replica_counts = Replicas.parse(replicas)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--replicas") from None
    if database is Database.SQLITE and replica_counts.any:
        raise typer.BadParameter("replicas share their state through PostgreSQL; drop --database sqlite",
                                 param_hint="--database")

    policy = RestartPolicy(
        first_backoff_s=restart_backoff_s, max_backoff_s=max_restart_backoff_s,
        max_crashes=max_crashes, window_s=crash_window_s,
    )
    platform = Platform(data_root=_private_data_dir(), restart_policy=policy, replicas=replica_counts,
                        postgres=database is Database.POSTGRES)
    stop_requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_requested.set())
    try:
        typer.echo(f"data directory: {platform.data_root}")
        platform.start(typer.echo)
        typer.echo("limelight is up; press Ctrl-C to stop.")
        platform.supervise(stop_requested, typer.echo)
        typer.echo("stopping: draining calls in flight...")
    finally:
        platform.stop()
    given_up = platform.given_up()
    if given_up:
        typer.echo(f"stopped; gave up on: {', '.join(given_up)}")
        raise typer.Exit(1)
    typer.echo("stopped.")


@app.command()
def serve(service: Annotated[str, typer.Argument(help=f"One of: {', '.join(config.SERVICES)}.")]) -> None:
    """Run one service in the foreground (what `up` runs for each)."""
    if service not in config.SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; choose from {', '.join(config.SERVICES)}")
    from libs.kit.server import run_service_process
    from tools.supervisor import prepare_transport

    prepare_transport(_private_data_dir())
    run_service_process(service, importlib.import_module(f"services.{service}.server").build)


@app.command()
def token(
    subject: Annotated[str, typer.Option(help="users/{id} or services/{id}.")],
    role: Annotated[list[Role], typer.Option(help="Repeat for several roles.")],
    age: Annotated[int | None, typer.Option(min=0, max=130, help="Age in years; sets a birth date.")] = None,
    birth_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD; overrides --age.")] = None,
    country: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2 country code.")] = "DE",
    ttl_minutes: Annotated[int, typer.Option(min=1, max=24 * 60)] = 60,
    expired: Annotated[bool, typer.Option(help="For tests: a token whose lifetime ended a minute ago.")] = False,
    not_yet_valid: Annotated[bool, typer.Option(help="For tests: a token issued ten minutes from now.")] = False,
) -> None:
    """Mint a development bearer token signed with the platform's dev key.

    Example: limelight token --subject users/alice --role viewer --age 25
    """
    if expired and not_yet_valid:
        raise typer.BadParameter("a token cannot be both", param_hint="--expired / --not-yet-valid")
    from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key

    _private_data_dir()  # the first token creates the dev signing key there
    born = dt.date.fromisoformat(birth_date) if birth_date else birth_date_for_age(age, dt.date.today()) if age is not None else None
    claims = TokenClaims(
        subject=subject,
        roles=frozenset(role),
        birth_date=born,
        age_bracket=AgeBracket.UNKNOWN,
        country=country.upper(),
    )
    ttl, now = dt.timedelta(minutes=ttl_minutes), dt.datetime.now(dt.UTC)
    issued = now - ttl - dt.timedelta(minutes=1) if expired else now + dt.timedelta(minutes=10) if not_yet_valid else now
    typer.echo(mint_token(platform_signing_key(), claims, ttl=ttl, now=issued))


@app.command()
def protos() -> None:
    """Generate the Python stubs from protos/ into gen/ (needed before anything runs)."""
    from tools import protogen

    written = protogen.generate()
    typer.echo(f"generated {len(written)} files into {protogen.DEFAULT_OUT}")


def main() -> None:
    requested = _requested_command(sys.argv[1:])
    if requested in (None, *_HEAVY_COMMANDS):
        _register_heavy_commands(requested)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
