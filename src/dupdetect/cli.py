"""``dupdetect`` command line: serve, migrate, ingest, scan, reembed, weights."""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import msgspec

from dupdetect import __version__
from dupdetect.errors import OperatorError

if TYPE_CHECKING:
    from dupdetect.folders.ingest import IngestReport
from dupdetect.observability import configure_logging
from dupdetect.settings import ModelName, Settings, SettingsError

# Commands import what they need when they run: `dupdetect --help` stays fast, and the decode
# worker processes (spawned, so they import this main module again) never load torch.


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    """Start the runtime first, then the HTTP server: a start-up failure is a one-line error
    (``main``), and the database stops after the server, also on SIGTERM."""
    server = msgspec.structs.replace(
        settings.server,
        host=args.host or settings.server.host,
        port=settings.server.port if args.port is None else args.port,
    )
    settings = msgspec.structs.replace(settings, server=server)
    sock = _bind(server.host, server.port)  # a port in use fails now, in one line, not after the model loads
    host, port = sock.getsockname()[:2]
    print(f"dupdetect: starting on http://{f'[{host}]' if ':' in host else host}:{port}", flush=True)
    import uvicorn

    from dupdetect.api.slow_clients import with_header_timeout
    from dupdetect.app import create_app
    from dupdetect.runtime import running

    received: list[int] = []

    async def run() -> None:
        async with running(settings) as runtime:
            if received:  # stopped while starting
                return
            config = uvicorn.Config(
                create_app(settings, runtime),
                host=server.host,
                port=server.port,
                log_level=server.log_level,
                log_config=None,  # keep our JSON logging; the app writes one access line per request
                access_log=False,
                timeout_graceful_shutdown=math.ceil(server.shutdown_grace),
                http=with_header_timeout(settings.limits.header_read_timeout),
            )
            http = uvicorn.Server(config)
            await http.serve(sockets=[sock])
            if http.server_state.tasks:  # cut off by the grace, finishing a write they had begun
                await asyncio.wait(http.server_state.tasks, timeout=10)

    stops = (signal.SIGINT, signal.SIGTERM)
    # uvicorn handles signals while it serves, then hands them back to these handlers.
    previous = {sig: signal.signal(sig, lambda sig, _frame: received.append(sig)) for sig in stops}
    try:
        asyncio.run(run())
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signal.SIGTERM in received:  # the Unix convention: a process stopped by SIGTERM says so
        signal.raise_signal(signal.SIGTERM)
    return 130 if received else 0


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OperatorError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another with --port or DUPDETECT_PORT)"
        ) from None
    return sock


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from dupdetect import migrate
    from dupdetect.database import DatabaseServer, require_pgvector

    database = DatabaseServer.start(settings.database)
    try:
        asyncio.run(require_pgvector(database.dsn))
        if args.downgrade:
            migrate.downgrade(database.dsn, args.downgrade)
        else:
            migrate.upgrade(database.dsn, lock_timeout=settings.database.migration_lock_timeout)
        revision = asyncio.run(migrate.current_revision(database.dsn))
        print(f"dupdetect: {database.describe()} is at schema revision {revision or 'base (empty)'}")
    finally:
        database.stop()
    return 0


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    """Against the service's own database (same DUPDETECT_DATA_DIR / DUPDETECT_DATABASE_URL)."""
    import contextlib

    from dupdetect.database import open_database
    from dupdetect.keys import KeyRegistry

    async def run() -> int:
        async with contextlib.AsyncExitStack() as stack:
            registry = KeyRegistry(await open_database(settings, stack))
            if args.action == "create":
                issued = await registry.create(args.collection, args.label)
                print(
                    f"dupdetect: key {issued.key.id} opens collection {issued.key.collection!r}."
                    " Keep it now; it is not shown again:"
                )
                print(issued.token)
            elif args.action == "list":
                for key in await registry.list():
                    state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
                    print(f"{key.id}  {key.collection}  {key.created_at:%Y-%m-%d %H:%M}  {state}  {key.label}")
            elif not await registry.revoke(args.key_id):
                print(f"dupdetect: error: no key {args.key_id!r} (see `dupdetect keys list`)", file=sys.stderr)
                return 1
            else:
                print(f"dupdetect: key {args.key_id} revoked")
        return 0

    return asyncio.run(run())


def _sql_role(settings: Settings, args: argparse.Namespace) -> int:
    """A read-only PostgreSQL role for analysts, on the service's database."""
    import contextlib
    from urllib.parse import urlsplit, urlunsplit

    from dupdetect.analysts import create_analyst, drop_analyst
    from dupdetect.database import open_database

    async def run() -> int:
        async with contextlib.AsyncExitStack() as stack:
            pool = await open_database(settings, stack)
            if args.action == "drop":
                if not await drop_analyst(pool, args.name):
                    print(f"dupdetect: error: no role {args.name!r}", file=sys.stderr)
                    return 1
                print(f"dupdetect: role {args.name} dropped")
                return 0
            password = await create_analyst(pool, args.name)
        url = settings.database.database_url
        if url:
            parts = urlsplit(url)
            host = parts.hostname or "localhost"
            print("dupdetect: read-only role ready; connect with:")
            print(urlunsplit(parts._replace(netloc=f"{args.name}:{password}@{host}:{parts.port or 5432}")))
        else:
            print(
                "dupdetect: read-only role ready. The embedded server listens on a private socket only: connect"
                f" as the OS user running dupdetect: psql 'host={settings.database.data_dir / 'postgres'} dbname=postgres"
                f" user={args.name}'. Password (for TCP setups):"
            )
            print(password)
        return 0

    return asyncio.run(run())


def _weights_download(settings: Settings, args: argparse.Namespace) -> int:
    from dupdetect.embedding import weights

    model = args.model or settings.model.model
    if model not in weights.TORCHVISION_MODELS:
        print(f"dupdetect: {model} weights are installed with the package; nothing to download")
        return 0
    target = weights.hub_cache_path(model)
    if target.is_file():
        print(f"dupdetect: {model} weights already in {target}")
        return 0
    try:
        path = weights.download(model)
    except OSError as exc:
        raise weights.WeightsError(f"downloading {weights.torchvision_url(model)} failed: {exc}") from exc
    print(f"dupdetect: {model} weights saved to {path}")
    return 0


def _similarity(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a similarity in (0, 1]")
    return value


def _summary(line: str, label: str, problems: list[str]) -> int:
    """Print what a folder command did and what went wrong; exit code 1 if anything did."""
    print(f"dupdetect: {line}")
    for problem in problems:
        print(f"  {label}: {problem}")
    return 1 if problems else 0


def _reembed(settings: Settings, args: argparse.Namespace) -> int:
    from dupdetect.folders.files import images_by_sha256
    from dupdetect.runtime import running

    if settings.store.store != "pgvector":
        raise SettingsError("dupdetect reembed works on pgvector; with Pinecone, re-index into a new index")
    # The stored vectors of the old model are exactly what this command is for.
    settings = msgspec.structs.replace(settings, model=msgspec.structs.replace(settings.model, allow_model_change=True))

    async def run() -> int:
        async with running(settings) as runtime:
            originals = images_by_sha256(args.originals) if args.originals is not None else {}
            report = await runtime.images.reembed(originals, fetch_urls=args.fetch_urls, delete_missing=args.delete_missing)
            return _summary(
                f"re-embedded {report.reembedded} images with {runtime.images.descriptor}, "
                f"deleted {report.deleted}, {len(report.missing)} originals not found",
                "missing",
                report.missing,
            )

    return asyncio.run(run())


def _files(args: argparse.Namespace, skip: tuple[Path, ...] = ()) -> list[Path]:
    """The images a folder command works on, after --exclude and --hidden; the folder must exist."""
    from dupdetect.folders.files import existing_folder, image_files

    return list(image_files(existing_folder(args.folder), exclude=args.exclude, hidden=args.hidden, skip=skip))


def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    import aiohttp

    from dupdetect.folders.files import stored_name
    from dupdetect.folders.ingest import IngestReport, http_client, ingest_folder, ingest_folder_locally
    from dupdetect.keys import check_collection

    files = _files(args)
    root = args.root or args.folder
    for path in files:  # every name is known before anything starts
        stored_name(path, root)
    report = IngestReport()

    async def run() -> None:
        if args.url:
            async with aiohttp.ClientSession() as session:
                send, known = http_client(args.url.rstrip("/"), session, args.api_key)
                try:
                    await ingest_folder(root, files, send=send, known=known, batch=args.batch, report=report)
                except aiohttp.ClientResponseError as exc:
                    raise OperatorError(
                        f"{args.url} answered {exc.status} {exc.message}"
                        + (" (a key is needed: --api-key)" if exc.status == 401 else "")
                    ) from None
                except aiohttp.ClientError as exc:
                    raise OperatorError(f"cannot reach {args.url}: {exc}") from None
        else:
            from dupdetect.runtime import running

            collection = check_collection(args.collection)
            async with running(settings, sweep=False, shared=False) as runtime:
                if collection not in await runtime.images.collections():
                    raise OperatorError(
                        f"no collection {collection!r}; `dupdetect keys create --collection {collection}` makes it"
                    )
                images = runtime.images.scoped(collection)
                await ingest_folder_locally(root, files, images, batch=args.batch, report=report)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:  # one line and what was done, not a traceback
        print("\ndupdetect: interrupted; run the same command again to go on where it stopped", file=sys.stderr)
        _summary(_ingested(report), "failed", report.failed)
        return 130
    return _summary(_ingested(report), "failed", report.failed)


def _ingested(report: IngestReport) -> str:
    return (
        f"{report.added} added ({report.duplicates} duplicate pairs found), "
        f"{report.skipped} already stored, {len(report.failed)} failed"
    )


def _scan(settings: Settings, args: argparse.Namespace) -> int:
    import tempfile

    from dupdetect.folders.ingest import IngestReport, ingest_folder_locally
    from dupdetect.folders.scan import move_aside, removable, report_html, scan_groups, scan_json, trash_list
    from dupdetect.review.keeper import KeeperPolicy

    for output in (args.report, args.json, args.trash_list):
        if output is not None and not output.resolve().parent.is_dir():
            raise OperatorError(f"{output}: the folder {output.parent} does not exist")
    files = _files(args, skip=(args.move_to,) if args.move_to else ())
    policy = KeeperPolicy(folders=tuple(args.keep_in), format=args.prefer_format, prefer=args.prefer)
    duplicates = settings.duplicates
    if args.threshold is not None:
        duplicates = msgspec.structs.replace(duplicates, near_threshold=args.threshold)
    report = IngestReport()

    async def run(data_dir: Path) -> int:
        from dupdetect.runtime import running  # torch: only once the folder and outputs are known to be fine

        # A throw-away embedded database: scanning a folder never touches the service's data.
        scratch = msgspec.structs.replace(
            settings,
            database=msgspec.structs.replace(settings.database, database_url=None, data_dir=data_dir),
            store=msgspec.structs.replace(settings.store, store="pgvector"),
            duplicates=duplicates,
        )
        async with running(scratch, sweep=False, shared=False) as runtime:
            await ingest_folder_locally(args.folder, files, runtime.images, batch=args.batch, report=report)
            groups = await scan_groups(runtime.images, policy)  # a scan always runs on pgvector
        args.report.write_text(report_html(args.folder, groups), encoding="utf-8")
        if args.json is not None:
            args.json.write_bytes(scan_json(args.folder, groups, report))
        extra = removable(args.folder, groups, policy)
        if args.trash_list is not None:  # for a person (or a script) to review, then run
            listed, unlisted = trash_list(extra, null=args.null)
            args.trash_list.write_bytes(listed)
            report.failed += [f"{path!r}: its name holds a line break; left out of the list (use --null)" for path in unlisted]
        if args.move_to is not None:
            report.failed += move_aside(args.folder, extra, args.move_to)
        return _summary(
            f"{report.added + report.skipped} images, {len(groups)} duplicate groups, "
            f"{len(report.failed)} failed; report: {args.report}"
            + (f", {args.json}" if args.json else "")
            + (f"; {len(extra)} copies listed in {args.trash_list}" if args.trash_list else "")
            + (f"; copies moved to {args.move_to}" if args.move_to else ""),
            "failed",
            report.failed,
        )

    with tempfile.TemporaryDirectory(prefix="dupdetect-scan-") as tmp:
        try:
            return asyncio.run(run(Path(tmp)))
        except KeyboardInterrupt:  # nothing was written or moved yet, or all of it was
            print("\ndupdetect: interrupted; nothing more was written or moved", file=sys.stderr)
            return 130


def _folder_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out paths (under FOLDER) or names matching GLOB, e.g. '*/raw/*' (repeatable)",
    )
    command.add_argument(
        "--hidden",
        action="store_true",
        help="also look in hidden files and folders (.thumbnails, .Trash, @eaDir are skipped by default)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dupdetect", description="Duplicate image detection service.")
    parser.add_argument("--version", action="version", version=f"dupdetect {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    # One-off commands print their own progress and summary, and log only with --verbose.
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--verbose", action="store_true", help="also log what happens (JSON lines on stderr)")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="listen address (overrides DUPDETECT_HOST)")
    serve.add_argument("--port", type=int, help="listen port (overrides DUPDETECT_PORT)")
    serve.set_defaults(run=_serve)

    mig = commands.add_parser("migrate", help="bring the database schema up to date", parents=[quiet])
    mig.add_argument("--downgrade", metavar="REVISION", help="go down to REVISION instead ('base' empties it)")
    mig.set_defaults(run=_migrate)

    re = commands.add_parser("reembed", help="re-embed stored images with the configured model", parents=[quiet])
    re.add_argument("originals", nargs="?", type=Path, help="folder of the original files (matched by SHA-256)")
    re.add_argument("--fetch-urls", action="store_true", help="fetch URL images again")
    re.add_argument("--delete-missing", action="store_true", help="delete images whose original is not found")
    re.set_defaults(run=_reembed)

    ing = commands.add_parser("ingest", help="add every image under a folder (skips those already stored)", parents=[quiet])
    ing.add_argument("folder", type=Path)
    ing.add_argument("--url", help="a running service, e.g. http://127.0.0.1:8000 (default: in-process)")
    ing.add_argument("--batch", type=int, default=32, help="images per request")
    ing.add_argument("--api-key", help="with --url: the key of the collection to add to, if the service needs one")
    ing.add_argument("--collection", default="default", help="without --url: the collection to add to")
    ing.add_argument(
        "--root",
        type=Path,
        help="store names relative to this folder (default: FOLDER), so that a"
        " folder and its parent ingested under one root agree on every file; / stores absolute paths",
    )
    _folder_options(ing)
    ing.set_defaults(run=_ingest)

    scan = commands.add_parser("scan", help="find duplicates in a folder and write an HTML report", parents=[quiet])
    scan.add_argument("folder", type=Path)
    scan.add_argument("--report", type=Path, default=Path("dupdetect-report.html"))
    scan.add_argument("--batch", type=int, default=32, help="images per batch")
    scan.add_argument("--json", type=Path, help="also write the groups, pairs and suggested keepers as JSON")
    scan.add_argument("--threshold", type=_similarity, help="near-duplicate similarity (default DUPDETECT_NEAR_THRESHOLD)")
    scan.add_argument(
        "--trash-list", type=Path, help="write the copies it would remove (all but each group's keeper), shell-quoted"
    )
    scan.add_argument(
        "--move-to",
        type=Path,
        help="move those copies into this folder (relative paths kept; nothing is deleted); a later scan does not look inside it",
    )
    scan.add_argument("--null", action="store_true", help="--trash-list: NUL-separated paths (for xargs -0), not quoted lines")
    scan.add_argument(
        "--keep-in",
        action="append",
        default=[],
        metavar="DIR",
        help="a reference folder under FOLDER (repeatable): its copies are kept, never listed or moved",
    )
    scan.add_argument("--prefer-format", metavar="FORMAT", help="keep a copy in this format (JPEG, PNG, …) when a group has one")
    scan.add_argument("--prefer", choices=("oldest", "newest"), help="keep the oldest or newest date taken")
    _folder_options(scan)
    scan.set_defaults(run=_scan)

    keys_cmd = commands.add_parser("keys", help="API keys: each opens one collection")
    keys_sub = keys_cmd.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="a new key; printed once, as the last line", parents=[quiet])
    create.add_argument("--collection", required=True, help="created if new: a-z, 0-9, '_', '-'")
    create.add_argument("--label", default="", help="who or what uses it")
    keys_sub.add_parser("list", help="every key, without its secret", parents=[quiet])
    revoke = keys_sub.add_parser("revoke", help="a key stops working at once", parents=[quiet])
    revoke.add_argument("key_id")
    keys_cmd.set_defaults(run=_keys)

    role_cmd = commands.add_parser("sql-role", help="read-only PostgreSQL roles for SQL analysts")
    role_sub = role_cmd.add_subparsers(dest="action", required=True)
    role_create = role_sub.add_parser("create", help="create (or reset the password of) a read-only role", parents=[quiet])
    role_create.add_argument("name")
    role_drop = role_sub.add_parser("drop", help="remove the role", parents=[quiet])
    role_drop.add_argument("name")
    role_cmd.set_defaults(run=_sql_role)

    weights_cmd = commands.add_parser("weights", help="model weights for offline use")
    weights_sub = weights_cmd.add_subparsers(dest="action", required=True)
    download = weights_sub.add_parser("download", help="fetch torchvision weights into the torch hub cache", parents=[quiet])
    download.add_argument("--model", choices=sorted(get_args(ModelName)), help="default: DUPDETECT_MODEL")
    download.set_defaults(run=_weights_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        configure_logging(
            "info" if getattr(args, "verbose", False) else settings.server.log_level if args.command == "serve" else "error"
        )
        return int(args.run(settings, args))
    except OperatorError as exc:
        print(f"dupdetect: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
