"""The ``avatarkit`` command.

Exit codes: 0 success; 1 an avatarkit error (bad config, missing provider, broken plugin,
provider failure), printed after ``error:``; 2 bad command-line usage; 130 interrupted by
Ctrl-C (``say``, ``demo``, ``serve``). ``run`` carries on after a failed turn and, when the user
quits (Ctrl-C or EOF, piped or typed), exits 1 if any turn failed, else 0.

Heavy imports (the config loader, sessions, plugins) happen inside the commands, so
``avatarkit --help`` stays quick and imports no provider SDK.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# typing, logging, json and threading load only when a command needs them: `--help` stays a
# few milliseconds of imports (benchmarks/startup.py). mypy treats this name as True.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TextIO

    from anyio.abc import ObjectSendStream

    from avatarkit.events import Event
    from avatarkit.plugins import ProviderRegistry
    from avatarkit.session import AvatarSession

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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
    voice = p.add_mutually_exclusive_group()
    voice.add_argument(
        "--input-audio",
        metavar="WAV",
        help="speak to the avatar from a WAV file, as if from a microphone (needs `stt:`)",
    )
    voice.add_argument(
        "--mic", action="store_true", help="speak to the avatar through the microphone"
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="with --input-audio: skip the silences while the avatar is idle, and wait for "
        "each transcript (the avatar's replies still play in real time)",
    )

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
        add_help=False,  # `demo --help` is the demo's own help (--output)
        help="the offline demo session (further arguments go to the demo)",
    )

    p = sub.add_parser("serve", parents=[common], help="serve sessions to a web page")
    from avatarkit.serve.options import add_serve_arguments  # light: argparse only

    add_serve_arguments(p)
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
    if args.command is not None or args.version:
        refused = _check_installation()
        if refused is not None:
            return refused
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

    code = EXIT_OK
    try:
        code = commands[args.command](args)
    except* AvatarKitError as group:  # raised as is, or wrapped by a task group
        _print_errors(group)
        code = EXIT_ERROR
    except* KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    return code


def _print_errors(group: BaseExceptionGroup[Any]) -> None:
    """One ``error:`` line per distinct error (two sentences may fail the same way)."""
    seen: set[str] = set()
    for exc in _leaves(group):
        if str(exc) not in seen:
            seen.add(str(exc))
            print(f"error: {exc}", file=sys.stderr, flush=True)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _check_installation() -> int | None:
    """Say plainly when PyPI's unrelated ``avatarkit`` shares this environment; an exit code
    when avatarkit cannot run at all (its import package is not ours)."""
    from avatarkit import _install

    problem = _install.check()
    if problem is None:
        return None
    message, fatal = problem
    if fatal:
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
    if not _install.warned:
        print(f"warning: {message}", file=sys.stderr)
    return None


def _setup_logging(verbose: int) -> None:
    import logging

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
    """Capability names of a provider, and an error if its factory cannot be imported.

    A renderer registered as ``"module:Class"`` is read from its source when that is
    conclusive, so listing providers imports no provider SDK (``check`` imports and verifies).
    """
    if spec.kind == "llm":
        return ["stream"], None
    if spec.kind == "tts":
        return ["synthesize"], None
    if spec.kind == "stt":
        return ["transcribe"], None
    if spec.kind == "vad":
        return ["detect"], None
    caps = None
    if isinstance(spec.factory, str):
        from avatarkit._source_caps import capabilities_from_source

        # Read from the source: importing the class would import its SDK.
        caps = capabilities_from_source(spec.factory)
    elif isinstance(spec.factory, type):
        from avatarkit.providers import renderer_capabilities

        caps = renderer_capabilities(spec.factory)  # already imported: no need for the loader
    if caps is None:
        from avatarkit.config import static_capabilities
        from avatarkit.errors import AvatarKitError

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
        import json

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

    from avatarkit._recordings import Recordings

    session = _load(args.file)
    recordings = Recordings(session.renderer, sys.stderr)

    async def say() -> str:
        async with session:
            recordings.started()
            return await session.say(args.text)

    try:
        print(anyio.run(say))
    finally:
        recordings.finished()
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    import anyio

    from avatarkit._recordings import Recordings

    if args.fast and not args.input_audio:
        print("error: --fast only applies to --input-audio", file=sys.stderr)
        return EXIT_USAGE
    session = _load(args.file)
    recordings = Recordings(session.renderer, sys.stderr)
    if args.input_audio or args.mic:
        from avatarkit.errors import AvatarKitError

        if session.stt is None:
            raise AvatarKitError(
                f"{args.file} has no `stt:` section, so the avatar cannot listen; add one "
                "(e.g. `stt: {provider: whisper}` and `vad: {provider: silero}`)"
            )
        voice = _VoiceRun(
            session, sys.stdout, args.input_audio, fast=args.fast, on_start=recordings.started
        )
        try:
            anyio.run(voice.run, backend="asyncio")
        finally:
            recordings.finished()
        return EXIT_OK
    repl = _Repl(session, sys.stdin, sys.stdout, on_start=recordings.started)
    try:
        anyio.run(repl.run, backend="asyncio")
    finally:
        recordings.finished()
    return EXIT_ERROR if repl.failed else EXIT_OK


class _Repl:
    """Reads lines, sends each as a turn, prints the reply as it streams.

    Ctrl-C while the avatar replies interrupts the reply; Ctrl-C again (or at the prompt, or
    EOF) quits, closing the session. A turn that fails is reported and the conversation goes
    on; :attr:`failed` remembers it for the exit code.
    """

    HINT = "Type a message and press Enter. Ctrl-C interrupts the avatar; Ctrl-D quits.\n"

    def __init__(
        self,
        session: AvatarSession,
        stdin: TextIO,
        stdout: TextIO,
        *,
        on_start: Callable[[], None] | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.session = session
        self.stdin = stdin
        self.out = stdout
        self.err = stderr or sys.stderr
        self.on_start = on_start
        self.busy = False
        self.interrupted = False
        self.turn_started = False
        self.failed = False

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
            if self.on_start is not None:
                self.on_start()
            self.err.write(self.HINT)
            self.err.flush()
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
                if self.stdin.isatty():
                    self._write("\n")  # Ctrl-D left the cursor after the prompt
                return
            if not line.strip():
                continue
            self.busy, self.interrupted, self.turn_started = True, False, False
            try:
                await self.session.send(line.strip())
            except* AvatarKitError as group:  # raised as is, or wrapped by a task group
                self.failed = True
                _print_errors(group)
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
                    if self.stdin.isatty():
                        self._write("\n")  # Ctrl-C at the prompt: end its line too
                    scope.cancel()
                    return


class _VoiceRun:
    """Feeds a WAV file or the microphone to ``session.listen`` and prints the conversation:
    ``you> <final transcript>`` and ``avatar> <what it says>``."""

    def __init__(
        self,
        session: AvatarSession,
        stdout: TextIO,
        wav: str | None,
        *,
        fast: bool,
        on_start: Callable[[], None] = lambda: None,
    ) -> None:
        self.on_start = on_start
        self.session = session
        self.out = stdout
        self.wav = wav
        self.fast = fast
        self.speaking_turn: int | None = None

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _end_line(self) -> None:
        if self.speaking_turn is not None:
            self._write("\n")
            self.speaking_turn = None

    def _on_event(self, event: Event) -> None:
        from avatarkit.events import SentenceEnded, SentenceStarted, TurnMetrics, UserTranscript

        if isinstance(event, UserTranscript) and event.final:
            self._end_line()
            self._write(f"you> {event.text}\n")
        elif isinstance(event, SentenceStarted):
            if self.speaking_turn != event.turn:
                self._end_line()
                self._write("avatar>")
                self.speaking_turn = event.turn
            self._write(f" {event.text}")
        elif isinstance(event, SentenceEnded) and event.turn == self.speaking_turn:
            if event.interrupted:
                self._write(" [interrupted]")
                self._end_line()
        elif isinstance(event, TurnMetrics) and event.turn == self.speaking_turn:
            self._end_line()

    async def run(self) -> None:
        from avatarkit.audio_input import check_microphone, microphone, read_wav, wav_frames
        from avatarkit.listening import Listener

        session = self.session
        # a bad file or a missing microphone fails before any provider starts
        audio = read_wav(self.wav) if self.wav else None
        if audio is None:
            check_microphone()
        async with session:
            self.on_start()
            session.on_event(self._on_event)
            listener = Listener(session, stt=session.stt, vad=session.vad, options=session.turn)

            def hurry() -> bool:
                return listener.idle and session.state == "idle"

            if audio is not None:
                # Hold the audio while a turn waits for its words only with a whole-utterance
                # STT, whose every call ends with a final; a streaming one may never send one
                # and needs the audio's clock to run to give up on it.
                hold = self.fast and not listener.streaming
                frames = wav_frames(
                    audio,
                    hurry=hurry if self.fast else None,
                    hold=(lambda: listener.waiting_for_words) if hold else None,
                )
            else:
                from avatarkit.providers import stt_sample_rate

                frames = microphone(sample_rate=stt_sample_rate(session.stt))
            from contextlib import aclosing

            async with aclosing(frames):
                await listener.run(frames)
            self._end_line()


def _start_reader(stdin: TextIO, send: ObjectSendStream[str | None]) -> None:
    """Read stdin in a daemon thread (a worker thread blocked in readline would keep the
    process alive after the user quits); hands each line to the event loop, None at EOF."""
    import threading

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
            "reinstall avatarkit-core or install it from a full checkout"
        ) from None


def _cmd_demo(args: argparse.Namespace) -> int:
    module = _optional_module("avatarkit.demo", "demo")
    result = module.main(list(args.args))
    return int(result or 0)


def _cmd_serve(args: argparse.Namespace) -> int:
    module = _optional_module("avatarkit.serve", "serve")
    result = module.run_from_args(args)
    return int(result or 0)
