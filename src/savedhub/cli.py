"""The ``savedhub`` command: a thin shell over the Python API.

Every subcommand parses its arguments, calls one public function and prints
the result; the logic lives in the functions (``savedhub.resolve``,
``savedhub.info``, ``savedhub.lint``, ``savedhub.pack``, ``savedhub.cache``,
``savedhub.convert``), so scripts can do from Python whatever the command does.

Exit codes:
    0  success;
    1  the command ran and found problems (lint errors, damaged cache entries,
       nothing to remove);
    2  the command line was wrong (argparse's usage errors);
    3  the operation could not be done (a savedhub error: no such model,
       network failure, ...; or the system refused a path: permission denied,
       disk full), printed as one ``savedhub: error: ...`` line (``--debug``
       prints its traceback first); any other exception is a bug and shows
       its traceback;
    130  interrupted.

Adding a subcommand takes one function and its decorator, nothing else::

    @command("hello", "greet someone", arg("name", help="who to greet"),
             arg("--json", action="store_true", help="print JSON"))
    def _hello(args: argparse.Namespace) -> int:
        from savedhub.greeting import greet  # import inside: --help stays TensorFlow-free

        print(greet(args.name))
        return EXIT_OK

A name with a space (``"cache ls"``) adds a subcommand to a group
(``savedhub cache ...``); the group is created on first use. Import heavy
modules (anything that imports TensorFlow) inside the function, never at the
top of this module: ``savedhub --help`` and the ``cache`` commands must start
without TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from savedhub.errors import SavedhubError

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_ERROR = 3
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Argument:
    """The arguments of one ``ArgumentParser.add_argument`` call."""

    names: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: tuple[Argument, ...]
    handler: Handler
    passthrough: bool = False  # hand every remaining argument to the handler untouched


COMMANDS: list[Command] = []
GROUPS: dict[str, str] = {"cache": "see and clean the model cache"}


def arg(*names: str, **options: Any) -> Argument:
    """Describe one argument of a subcommand, as ``add_argument`` takes it."""
    return Argument(names, options)


def command(
    name: str, help: str, *arguments: Argument, passthrough: bool = False
) -> Callable[[Handler], Handler]:
    """Register the decorated function as subcommand ``name`` (see the module docstring)."""

    def register(handler: Handler) -> Handler:
        COMMANDS.append(Command(name, help, arguments, handler, passthrough))
        return handler

    return register


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print ``data`` as JSON with ``--json``, else ``text``."""
    print(json.dumps(data, indent=2, default=str) if args.json else text)


# -- subcommands --------------------------------------------------------------

_JSON = arg("--json", action="store_true", help="print JSON for scripts")
_HANDLE = arg("handle", help="model URL, archive URL, path or hf://ORG/NAME[@REVISION]")
_CACHE_DIR = arg(
    "--cache-dir",
    metavar="DIR",
    help="cache root (default: $SAVEDHUB_CACHE_DIR, $TFHUB_CACHE_DIR, or the user cache folder)",
)


@command(
    "download",
    "download and cache a model; print its local folder",
    _HANDLE,
    _CACHE_DIR,
    _JSON,
)
def _download(args: argparse.Namespace) -> int:
    from savedhub.client.resolver import resolve

    path = resolve(args.handle, cache_dir=args.cache_dir)
    _emit(args, {"handle": args.handle, "path": path}, path)
    return EXIT_OK


@command(
    "info",
    "show a model's format, signatures, __call__, variables, assets and size",
    _HANDLE,
    _CACHE_DIR,
    _JSON,
)
def _info(args: argparse.Namespace) -> int:
    from savedhub.publish.info import info

    report = info(args.handle, cache_dir=args.cache_dir)
    _emit(args, report.to_dict(), str(report))
    return EXIT_OK


@command(
    "lint",
    "check a SavedModel folder against the Reusable SavedModel interface",
    arg("dir", help="the SavedModel folder"),
    _JSON,
)
def _lint(args: argparse.Namespace) -> int:
    from savedhub.publish.lint import ERROR, lint

    findings = lint(args.dir)
    errors = sum(1 for f in findings if f.severity == ERROR)
    warnings = len(findings) - errors
    data = {
        "path": args.dir,
        "errors": errors,
        "warnings": warnings,
        "findings": [f.to_dict() for f in findings],
    }
    summary = f"{args.dir}: {errors} error(s), {warnings} warning(s)"
    _emit(args, data, "\n".join([*(str(f) for f in findings), summary]))
    return EXIT_PROBLEMS if errors else EXIT_OK


@command(
    "pack",
    "make a reproducible hosting-protocol .tar.gz of a model folder; print its SHA-256",
    arg("dir", help="the SavedModel folder"),
    arg("out", metavar="OUT.tar.gz", help="the archive to write (replaced if it exists)"),
    arg("--force", action="store_true", help="pack even if lint finds errors"),
    _JSON,
)
def _pack(args: argparse.Namespace) -> int:
    from savedhub.publish.pack import pack

    result = pack(args.dir, args.out, force=args.force)
    data = {"path": result.path, "sha256": result.sha256, "size": result.size}
    _emit(args, data, f"{result.sha256}  {result.path}")  # the line `sha256sum -c` reads
    return EXIT_OK


@command(
    "convert",
    "convert another format (a sentence-transformers BERT folder, a PyTorch EfficientNet-Lite0 "
    "checkpoint) into a Reusable SavedModel",
    arg("src", help="the folder or checkpoint file to convert"),
    arg("out", help="the SavedModel folder to create"),
    arg("--overwrite", action="store_true", help="replace OUT if it is not empty"),
    arg(
        "--head",
        choices=("classification", "feature_vector"),
        help="for an image checkpoint: logits (classification, the default) or pooled features",
    ),
)
def _convert(args: argparse.Namespace) -> int:
    from savedhub.convert import convert

    print(convert(args.src, args.out, overwrite=args.overwrite, head=args.head))
    return EXIT_OK


@command(
    "demo",
    "run the end-to-end demo (arguments go to the demo; try: savedhub demo --help)",
    arg("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS),
    passthrough=True,
)
def _demo(args: argparse.Namespace) -> int:
    try:
        from savedhub.demo.run import main as demo_main
    except ModuleNotFoundError as exc:
        if exc.name not in ("savedhub.demo.run", "savedhub.demo"):
            raise
        raise SavedhubError(
            "This savedhub has no demo (savedhub.demo.run is missing); reinstall savedhub."
        ) from exc
    return int(demo_main(list(args.argv)) or 0)


def _entry_row(entry: Any) -> dict[str, Any]:
    return {
        "key": entry.key,
        "handle": entry.handle,
        "path": str(entry.path),
        "size": entry.size,
        "last_used": entry.last_used.isoformat(timespec="seconds"),
        "state": entry.state.value,
        "problem": entry.problem,
        "damaged_files": list(entry.damaged_files),
        "source": entry.source,
        "hashed": entry.hashed,
    }


def _entries_table(entries: Sequence[Any], empty: str) -> str:
    from savedhub._io.units import human_size

    if not entries:
        return empty
    rows = [
        (
            entry.handle or f"({entry.key})",
            human_size(entry.size),
            entry.last_used.strftime("%Y-%m-%d %H:%M"),
            entry.state.value + (f": {entry.problem}" if entry.problem else ""),
        )
        for entry in entries
    ]
    header = ("HANDLE", "SIZE", "LAST USED", "STATE")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        lines.append("  ".join([*cells, row[3]]))
    return "\n".join(lines)


@command("cache ls", "list cached models: handle, size, last use, state", _CACHE_DIR, _JSON)
def _cache_ls(args: argparse.Namespace) -> int:
    from savedhub.cache import list_entries

    entries = list_entries(args.cache_dir)
    _emit(args, [_entry_row(e) for e in entries], _entries_table(entries, "The cache is empty."))
    return EXIT_OK


@command(
    "cache verify",
    "re-hash every cached model's files against its manifest; exit 1 if any is damaged",
    arg("--repair", action="store_true", help="fetch damaged models again (each kept until then)"),
    arg("--remove-damaged", action="store_true", help="remove damaged entries (refetched on use)"),
    arg(
        "--rehash",
        action="store_true",
        help="record hashes for models that carry none (tensorflow_hub's, older savedhub's) "
        "from their current bytes; asks first",
    ),
    arg("--yes", "-y", action="store_true", help="with --rehash: do not ask (for scripts)"),
    arg("--quick", action="store_true", help="sizes and modification times only, as a load does"),
    _CACHE_DIR,
    _JSON,
)
def _cache_verify(args: argparse.Namespace) -> int:
    import time

    from savedhub._io.units import human_size
    from savedhub.cache import EntryState, rehash, verify_entries

    started = time.perf_counter()
    entries = verify_entries(
        args.cache_dir, remove_damaged=args.remove_damaged, content=not args.quick
    )
    seconds = time.perf_counter() - started
    damaged = [e for e in entries if e.state is EntryState.DAMAGED]
    unhashed = [e for e in entries if not e.hashed and e.state is EntryState.COMPLETE]
    action = "removed" if args.remove_damaged else "damaged"
    lines = [f"{action}: {e.handle or e.key}: {e.problem}" for e in damaged]
    lines += [
        f"no hashes: {e.handle or e.key} (written by {_writer(e.source)}): only sizes can be "
        "checked" + ("" if args.rehash else "; once you know it is good: --rehash")
        for e in unhashed
    ]
    hashed = sum(e.bytes_hashed for e in entries)
    rate = f" at {human_size(hashed / seconds)}/s" if hashed and seconds > 0 else ""
    summary = (
        f"{len(entries)} entries checked ({human_size(hashed)} hashed{rate}), "
        f"{len(damaged)} damaged, {len(unhashed)} without hashes"
    )
    data: dict[str, Any] = {
        "entries": [_entry_row(e) for e in entries],
        "damaged": len(damaged),
        "unhashed": len(unhashed),
        "bytes_hashed": hashed,
        "seconds": round(seconds, 3),
    }
    remaining = [] if args.remove_damaged else damaged
    if args.repair and damaged and not args.remove_damaged:
        remaining = _repair(args, damaged, lines)
        data["repaired"] = [e.handle or e.key for e in damaged if e not in remaining]
    if args.rehash and unhashed:
        question = (
            f"Record SHA-256 hashes of {len(unhashed)} model(s) from their current bytes? "
            "Later changes are measured against them, so only do this for models you "
            "know are good."
        )
        if not args.json:  # show what would be trusted before asking
            print("\n".join([*lines, summary]), flush=True)
            lines, summary = [], ""
        answer = _confirm(args, question)
        if answer is None:
            print(
                "savedhub: error: --rehash trusts the models' current bytes, and no one was "
                "asked (no terminal). Check the models, then pass --rehash --yes.",
                file=sys.stderr,
            )
            return EXIT_USAGE
        done = rehash(args.cache_dir) if answer else []
        lines += [f"rehashed: {e.handle or e.key}" for e in done] or ["no hashes recorded"]
        data["rehashed"] = [e.handle or e.key for e in done]
    _emit(args, data, "\n".join([*lines, summary] if summary else lines))
    return EXIT_PROBLEMS if remaining else EXIT_OK


def _writer(source: str) -> str:
    return "tensorflow_hub" if source == "tensorflow_hub" else "an older savedhub"


def _confirm(args: argparse.Namespace, question: str) -> bool | None:
    """The user's yes or no on a terminal; None when there is no one to ask."""
    if args.yes:
        return True
    if args.json or not sys.stdin or not sys.stdin.isatty():
        return None
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _repair(args: argparse.Namespace, damaged: Sequence[Any], lines: list[str]) -> list[Any]:
    """Fetch each damaged entry again; returns those still damaged."""
    import os

    # Settings are read at call time. A content-checked load sees the damage a quick
    # check may not (bytes changed, times kept): it fetches into a work folder and only
    # then replaces the damaged entry, so a failed fetch loses nothing.
    saved = os.environ.get("SAVEDHUB_VERIFY")
    os.environ["SAVEDHUB_VERIFY"] = "content"
    try:
        return _refetch(args, damaged, lines)
    finally:
        if saved is None:
            os.environ.pop("SAVEDHUB_VERIFY", None)
        else:
            os.environ["SAVEDHUB_VERIFY"] = saved


def _refetch(args: argparse.Namespace, damaged: Sequence[Any], lines: list[str]) -> list[Any]:
    import warnings
    from pathlib import Path

    from savedhub.cache import remove
    from savedhub.client.resolver import resolve

    remaining = []
    for entry in damaged:
        if not entry.handle:
            lines.append(
                f"cannot repair {entry.key}: its handle is not recorded; "
                f"remove it with: savedhub cache rm {entry.key}"
            )
            remaining.append(entry)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # this command says it itself
                path = resolve(entry.handle, cache_dir=args.cache_dir)
        except (SavedhubError, OSError) as exc:
            lines.append(f"could not repair {entry.handle}: {' '.join(str(exc).split())}")
            remaining.append(entry)
            continue
        if entry.path.exists() and entry.path not in (Path(path), *Path(path).parents):
            remove(entry.key, args.cache_dir)  # it sat under tensorflow_hub's other name
        lines.append(f"repaired: {entry.handle}")
    return remaining


def _duration(text: str) -> Any:
    from savedhub._io.units import parse_duration

    return parse_duration(text)


def _size(text: str) -> int:
    from savedhub.cache import parse_size

    return parse_size(text)


_duration.__name__ = "duration"  # argparse names the type in its error messages
_size.__name__ = "size"


@command(
    "cache prune",
    "remove models unused for a while, least recently used first, and leftovers",
    arg("--older-than", type=_duration, metavar="AGE", help="unused for longer than AGE: 30d, 12h"),
    arg("--max-size", type=_size, metavar="SIZE", help="shrink the cache to SIZE (10GiB, 500MB)"),
    arg("--dry-run", action="store_true", help="only show what would be removed"),
    _CACHE_DIR,
    _JSON,
)
def _cache_prune(args: argparse.Namespace) -> int:
    from savedhub._io.units import human_size
    from savedhub.cache import prune

    report = prune(args.older_than, args.max_size, args.dry_run, args.cache_dir)
    verb = "would remove" if report.dry_run else "removed"
    lines = [f"{verb}: {e.handle or e.key} ({human_size(e.size)})" for e in report.removed]
    lines += [f"{verb} leftover: {path}" for path in report.reaped]
    lines.append(f"{verb} {len(report.removed)} model(s), {human_size(report.freed_bytes)}")
    data = {
        "dry_run": report.dry_run,
        "removed": [_entry_row(e) for e in report.removed],
        "freed_bytes": report.freed_bytes,
        "reaped": [str(p) for p in report.reaped],
    }
    _emit(args, data, "\n".join(lines))
    return EXIT_OK


@command(
    "cache rm",
    "remove one cached model, or all of them",
    arg(
        "handle",
        nargs="?",
        help="the model's handle (or its 40-hex cache key); hf://ORG/NAME@SHA removes that "
        "commit's conversion, hf://ORG/NAME every commit's",
    ),
    arg("--all", action="store_true", help="remove every cached model"),
    _CACHE_DIR,
    _JSON,
)
def _cache_rm(args: argparse.Namespace) -> int:
    from savedhub.cache import remove, remove_all

    if bool(args.handle) == bool(args.all):
        args.parser.error("give either a HANDLE or --all")
    removed = remove_all(args.cache_dir) if args.all else remove(args.handle, args.cache_dir)
    lines = [f"removed: {e.handle or e.key}" for e in removed]
    if args.handle and not removed:
        lines.append(f"{args.handle} is not in the cache; nothing removed.")
        if args.handle.startswith("hf://"):
            lines.append(
                "Converted hf:// models are cached by commit: name the commit "
                "(hf://ORG/NAME@SHA, as `savedhub cache ls` shows), or hf://ORG/NAME for all."
            )
    _emit(args, [_entry_row(e) for e in removed], "\n".join(lines) or "The cache was empty.")
    return EXIT_PROBLEMS if args.handle and not removed else EXIT_OK


@command(
    "serve",
    "run a model hub serving the models under ROOT (needs the [server] extra)",
    arg(
        "root",
        help="storage root: a folder (created if missing), s3://BUCKET/PREFIX (the [s3] "
        "extra; AWS_ENDPOINT_URL, AWS_PROFILE... as for the AWS CLI) or an fsspec URL",
    ),
    arg("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"),
    arg("--port", type=int, default=8080, help="port to listen on (default 8080)"),
    arg("--tokens-file", metavar="FILE", help="publishing tokens, one a line (else uploads off)"),
    arg("--max-upload", type=_size, metavar="SIZE", help="largest upload (default 4GiB)"),
    arg(
        "--public-url",
        metavar="URL",
        help="the hub's URL for pages and redirects, e.g. https://models.example.org "
        "(default: from each request's Host header, checked against --allowed-hosts)",
    ),
    arg(
        "--allowed-hosts",
        metavar="HOSTS",
        type=lambda text: [h for h in text.split(",") if h.strip()],
        help="comma-separated Host names to answer (name, name:port, or * for any); "
        "others get 400 (default: the --host address, plus localhost when it is "
        "loopback or 0.0.0.0)",
    ),
    arg(
        "--max-unpacked",
        type=_size,
        metavar="SIZE",
        help="most an upload may expand to when unpacked (default 4 x --max-upload)",
    ),
    arg(
        "--upload-idle-timeout",
        type=float,
        metavar="SECONDS",
        help="drop an upload that sends nothing for this long, freeing its version (default 60)",
    ),
    arg(
        "--upload-min-rate",
        type=_size,
        metavar="SIZE",
        help="drop an upload that sends less than this many bytes a second over any span of "
        "--upload-idle-timeout, e.g. 16KiB (default 4KiB; 0 turns it off)",
    ),
    arg(
        "--inspector-idle",
        type=float,
        metavar="SECONDS",
        help="stop the upload inspector (TensorFlow, ~570 MB) this long after its last "
        "upload (default 60)",
    ),
    arg(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="server processes sharing the port (default 1)",
    ),
    arg(
        "--redirect-downloads",
        action="store_true",
        help="s3:// roots: answer archive downloads with a 307 to a presigned URL of the "
        "store, so the bytes come straight from it (or its CDN)",
    ),
    arg(
        "--catalog-refresh",
        type=float,
        metavar="SECONDS",
        help="s3:// roots: how long a replica trusts its copy of the catalog index, the most "
        "a model published through another replica takes to appear in its lists (default 2)",
    ),
    arg(
        "--debris-age",
        type=float,
        metavar="SECONDS",
        help="s3:// roots: remove the objects of an upload whose server stopped refreshing "
        "it this long ago (default 900)",
    ),
    arg("--no-access-log", action="store_true", help="do not log each request on stdout"),
)
def _serve(args: argparse.Namespace) -> int:
    from savedhub.server import serve

    options = {"max_upload_bytes": args.max_upload} if args.max_upload else {}
    serve(
        args.root,
        args.host,
        args.port,
        args.tokens_file,
        public_url=args.public_url,
        allowed_hosts=args.allowed_hosts,
        max_unpacked_bytes=args.max_unpacked,
        upload_idle_timeout=args.upload_idle_timeout,
        upload_min_rate=args.upload_min_rate,
        inspector_idle=args.inspector_idle,
        redirect_downloads=args.redirect_downloads,
        workers=args.workers,
        access_log=not args.no_access_log,
        storage_options=_s3_options(args),
        **options,
    )
    return EXIT_OK


def _s3_options(args: argparse.Namespace) -> dict[str, float] | None:
    options = {"catalog_refresh": args.catalog_refresh, "debris_age": args.debris_age}
    given = {name: value for name, value in options.items() if value is not None}
    if given and not str(args.root).startswith("s3://"):
        args.parser.error("--catalog-refresh and --debris-age apply to s3:// roots only")
    return given or None


@command(
    "push",
    "publish a model folder or archive to a hub as URL (http://HOST/PUBLISHER/MODEL/VERSION)",
    arg(
        "src",
        metavar="DIR|ARCHIVE|hf://ORG/NAME",
        help="a SavedModel folder (packed first), a .tar.gz, or a Hugging Face model "
        "(converted first)",
    ),
    arg("url", help="the version's URL on the hub"),
    arg("--token", help="the hub's publishing token (default: $SAVEDHUB_TOKEN)"),
    _JSON,
)
def _push(args: argparse.Namespace) -> int:
    from savedhub.publish.push import push

    result = push(args.src, args.url, token=args.token)
    data = {"url": result.url, "sha256": result.sha256, "size": result.size}
    _emit(args, data, f"published {result.url} (sha256 {result.sha256})")
    return EXIT_OK


# -- the parser ----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``savedhub`` parser with every registered subcommand."""
    from savedhub import __version__

    parser = argparse.ArgumentParser(
        prog="savedhub",
        description="Load, inspect, check, pack and cache reusable TensorFlow SavedModels.",
        epilog="Run 'savedhub COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"savedhub {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of savedhub's own errors too"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show savedhub's log and TensorFlow's own start-up and log lines",
    )
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, Any] = {}
    for cmd in COMMANDS:
        group_name, _, leaf = cmd.name.rpartition(" ")
        subparsers = top
        if group_name:
            if group_name not in groups:
                group = top.add_parser(
                    group_name, help=GROUPS.get(group_name), description=GROUPS.get(group_name)
                )
                groups[group_name] = group.add_subparsers(
                    dest="subcommand", metavar="SUBCOMMAND", required=True
                )
            subparsers = groups[group_name]
        sub = subparsers.add_parser(
            leaf, help=cmd.help, description=cmd.help, add_help=not cmd.passthrough
        )
        for argument in cmd.arguments:
            sub.add_argument(*argument.names, **argument.options)
        sub.set_defaults(handler=cmd.handler, parser=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not any(c.passthrough and c.handler is args.handler for c in COMMANDS):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        # argparse's REMAINDER misses leading options (``demo --epochs 3``).
        args.argv = [*extra, *getattr(args, "argv", [])]
    if args.verbose:
        import logging

        logging.basicConfig(format="%(name)s: %(message)s")
        logging.getLogger("savedhub").setLevel(logging.INFO)
    else:
        from savedhub._quiet_tensorflow import quiet_tensorflow

        quiet_tensorflow()
    try:
        return int(args.handler(args))
    except SavedhubError as exc:
        return _report(exc, args.debug)
    except OSError as exc:
        if exc.errno is None:  # raised by code, not by the operating system: a bug
            raise
        # The system refused a path the user named (EACCES, ENOSPC, ...): theirs to fix.
        return _report(exc, args.debug)
    except KeyboardInterrupt:
        print("savedhub: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _report(exc: BaseException, debug: bool) -> int:
    """Print an error users can act on as one line (with ``--debug``, its traceback first)."""
    if debug:
        traceback.print_exception(exc)
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"savedhub: error: {message}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
