"""The ``avatarkit`` command.

Exit codes: 0 success; 1 an avatarkit error (bad config, missing provider, broken plugin,
provider failure), printed as one ``error:`` line; 2 bad command-line usage; 130 interrupted by
Ctrl-C (``say``, ``demo``, ``serve``). ``run`` exits 0 when the user quits with Ctrl-C or EOF.

Heavy imports (the config loader, sessions, plugins) happen inside the commands, so
``avatarkit --help`` stays quick and imports no provider SDK.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from anyio.abc import ObjectSendStream

    from avatarkit.events import Event
    from avatarkit.plugins import ProviderRegistry
    from avatarkit.session import AvatarSession

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

logger = logging.getLogger("avatarkit.cli")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so the docs test can list every command)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="more logging (-v info, -vv debug)",
    )
    parser = argparse.ArgumentParser(
        prog="avatarkit",
        description="Real-time conversational AI avatars: run sessions described in YAML.",
        epilog="Exit codes: 0 ok, 1 avatarkit error, 2 usage error, 130 interrupted.",
        parents=[common],
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", parents=[common], help="talk to the avatar in the terminal")
    p.add_argument("file", metavar="FILE", help="session YAML file")

    p = sub.add_parser("say", parents=[common], help="have the avatar say TEXT verbatim")
    p.add_argument("file", metavar="FILE", help="session YAML file")
    p.add_argument("text", metavar="TEXT", help="what the avatar says")

    p = sub.add_parser("providers", parents=[common], help="list installed providers")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("check", parents=[common], help="validate a session file, start nothing")
    p.add_argument("file", metavar="FILE", help="session YAML file")
    p.add_argument(
        "--dump", action="store_true", help="also print the effective config (secrets masked)"
    )

    sub.add_parser(
        "demo",
        parents=[common],
        help="the offline demo session (further arguments go to the demo)",
    )

    p = sub.add_parser("serve", parents=[common], help="serve sessions to a web page")
    p.add_argument("file", metavar="FILE", help="session YAML file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    p.add_argument(
        "--max-sessions", type=int, default=None, metavar="N", help="concurrent sessions limit"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "demo":
        args.args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _setup_logging(getattr(args, "verbose", 0))
    if args.version:
        from avatarkit._version import __version__

        print(f"avatarkit {__version__}")
        return EXIT_OK
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": _cmd_run,
        "say": _cmd_say,
        "providers": _cmd_providers,
        "check": _cmd_check,
        "demo": _cmd_demo,
        "serve": _cmd_serve,
    }
    from avatarkit.errors import AvatarKitError

    try:
        return commands[args.command](args)
    except AvatarKitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if not verbose else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(name)s: %(levelname)s: %(message)s")


# -- check, providers ---------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    from avatarkit.config import dump_config, load_config

    config = load_config(args.file)
    print(config.summary())
    if args.dump:
        print("---")
        print(dump_config(config), end="")
    return EXIT_OK


def _capabilities(spec: Any) -> tuple[list[str], str | None]:
    """Capability names of a provider, and an error if its factory cannot be imported."""
    from avatarkit.config import static_capabilities
    from avatarkit.errors import AvatarKitError

    if spec.kind == "llm":
        return ["stream"], None
    if spec.kind == "tts":
        return ["synthesize"], None
    if spec.kind == "stt":
        return ["transcribe"], None
    if spec.kind == "vad":
        return ["detect"], None
    try:
        caps = static_capabilities(spec)
    except AvatarKitError as exc:
        return [], str(exc)
    if caps is None:
        return ["unknown until built"], None
    return [m for m, has in (("speak_text", caps.text), ("speak", caps.audio)) if has], None


def provider_table(registry: ProviderRegistry) -> dict[str, Any]:
    """What ``avatarkit providers --json`` prints."""
    providers = []
    for spec in registry:
        capabilities, error = _capabilities(spec)
        providers.append(
            {
                "kind": spec.kind,
                "name": spec.name,
                "capabilities": capabilities,
                "plugin": spec.source.plugin,
                "distribution": spec.source.distribution,
                "version": spec.source.version,
                "description": spec.description,
                "error": error,
            }
        )
    broken = [
        {"plugin": b.plugin, "distribution": b.distribution, "version": b.version, "error": b.error}
        for b in registry.broken
    ]
    return {"providers": providers, "broken": broken, "conflicts": registry.conflicts}


def _cmd_providers(args: argparse.Namespace) -> int:
    from avatarkit.plugins import default_registry

    registry = default_registry()
    table = provider_table(registry)
    if args.json:
        print(json.dumps(table, indent=2))
        return EXIT_OK
    rows = [("KIND", "NAME", "CAPABILITIES", "FROM", "DESCRIPTION")]
    for p in table["providers"]:
        origin = p["distribution"] or p["plugin"]
        if p["version"]:
            origin += f" {p['version']}"
        caps = ", ".join(p["capabilities"]) if not p["error"] else "cannot load (see below)"
        rows.append((p["kind"], p["name"], caps, origin, p["description"] or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[4]]))
    problems = [
        f"{p['kind']} {p['name']!r}: {p['error']}" for p in table["providers"] if p["error"]
    ]
    for b in table["broken"]:
        origin = (
            f" ({b['distribution']} {b['version'] or ''})".rstrip() if b["distribution"] else ""
        )
        problems.append(f"plugin {b['plugin']!r}{origin}: {b['error']}")
    problems.extend(table["conflicts"])
    if problems:
        print("\nproblems:")
        for line in problems:
            print(f"  {line}")
    return EXIT_OK


# -- say, run -----------------------------------------------------------------------------------


def _load(file: str) -> AvatarSession:
    from avatarkit.config import load_session

    return load_session(file)


def _cmd_say(args: argparse.Namespace) -> int:
    import anyio

    session = _load(args.file)

    async def say() -> str:
        async with session:
            return await session.say(args.text)

    print(anyio.run(say))
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    import anyio

    session = _load(args.file)
    repl = _Repl(session, sys.stdin, sys.stdout)
    anyio.run(repl.run, backend="asyncio")
    return EXIT_OK


class _Repl:
    """Reads lines, sends each as a turn, prints the reply as it streams.

    Ctrl-C while the avatar replies interrupts the reply; Ctrl-C again (or at the prompt, or
    EOF) quits, closing the session.
    """

    def __init__(self, session: AvatarSession, stdin: TextIO, stdout: TextIO) -> None:
        self.session = session
        self.stdin = stdin
        self.out = stdout
        self.busy = False
        self.interrupted = False
        self.turn_started = False

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _on_event(self, event: Event) -> None:
        from avatarkit.events import TextDelta

        # Errors are not printed here: send() raises them, and _loop prints them once.
        if isinstance(event, TextDelta):
            if not self.turn_started:
                self._write("avatar> ")
                self.turn_started = True
            self._write(event.text)

    async def run(self) -> None:
        import signal

        import anyio

        send, receive = anyio.create_memory_object_stream[str | None](1)
        _start_reader(self.stdin, send)
        async with self.session, anyio.create_task_group() as tg:
            self.session.on_event(self._on_event)
            with anyio.open_signal_receiver(signal.SIGINT) as signals:
                tg.start_soon(self._watch_signals, signals, tg.cancel_scope)
                await self._loop(receive)
                tg.cancel_scope.cancel()

    async def _loop(self, lines: Any) -> None:
        from avatarkit.errors import AvatarKitError

        while True:
            if self.stdin.isatty():
                self._write("you> ")
            line = await lines.receive()
            if line is None:
                return
            if not line.strip():
                continue
            self.busy, self.interrupted, self.turn_started = True, False, False
            try:
                await self.session.send(line.strip())
            except AvatarKitError as exc:
                print(f"error: {exc}", file=sys.stderr, flush=True)
            finally:
                self.busy = False
            self._write("\n")
            if self.interrupted:
                self._write("[interrupted]\n")

    async def _watch_signals(self, signals: Any, scope: Any) -> None:
        import anyio

        async with anyio.create_task_group() as tg:
            async for _ in signals:
                if self.busy and not self.interrupted:
                    self.interrupted = True
                    tg.start_soon(self.session.interrupt)
                else:
                    scope.cancel()
                    return


def _start_reader(stdin: TextIO, send: ObjectSendStream[str | None]) -> None:
    """Read stdin in a daemon thread (a worker thread blocked in readline would keep the
    process alive after the user quits); hands each line to the event loop, None at EOF."""
    import anyio.from_thread
    import anyio.lowlevel

    token = anyio.lowlevel.current_token()

    def reader() -> None:
        while True:
            line = stdin.readline()
            try:
                anyio.from_thread.run(send.send, line or None, token=token)
            except Exception:
                return  # the loop is gone: the user quit
            if not line:
                return

    threading.Thread(target=reader, name="avatarkit-stdin", daemon=True).start()


# -- demo, serve: modules owned elsewhere, imported only when asked for -------------------------


def _optional_module(name: str, what: str) -> Any:
    from avatarkit.errors import AvatarKitError

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise AvatarKitError(
            f"`avatarkit {what}` is not available in this installation ({name} is missing); "
            "reinstall avatarkit or install it from a full checkout"
        ) from None


def _cmd_demo(args: argparse.Namespace) -> int:
    module = _optional_module("avatarkit.demo", "demo")
    result = module.main(list(args.args))
    return int(result or 0)


def _cmd_serve(args: argparse.Namespace) -> int:
    module = _optional_module("avatarkit.serve", "serve")
    result = module.run(args.file, host=args.host, port=args.port, max_sessions=args.max_sessions)
    return int(result or 0)
