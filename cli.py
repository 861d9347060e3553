"""``probe``: run checks on demand (before a holiday, after a change) and report.

Imports stay inside functions so that ``probe --help`` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from config.probe_config import ProbeConfig
    from core.result import CheckResult

UNKNOWN = 3  # Nagios: bad arguments, config errors, internal failure

DAEMON_URL = "http://127.0.0.1:9640"  # probed's default `listen:` (a test keeps them equal)

EPILOG = """\
exit codes (Nagios): 0 all up, 1 degraded or warning, 2 down, 3 config/usage/internal error
config file: --config PATH, else $PROBE_CONFIG, else /etc/hotline-probe/config.yaml
--from-daemon: what the running probed has judged (its /status), not a new probe run;
  for Icinga/Nagios, whose user may not open ICMP sockets or read push heartbeats
  (docs/icinga.md)
`probe demo` runs the checks against built-in loopback simulators (see `probe demo --help`)
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse exits 2, which Nagios reads as CRITICAL; a usage error is UNKNOWN.
        self.print_usage(sys.stderr)
        self.exit(UNKNOWN, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="probe",
        description="Check the Haining 12345 platform's integration links and hosts now.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="checks to run")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--all", action="store_true", help="run every configured check")
    what.add_argument("--list", action="store_true", help="list the configured checks")
    what.add_argument("--check-config", action="store_true", help="validate the config and exit")
    parser.add_argument("-c", "--config", metavar="PATH", help="config file")
    parser.add_argument(
        "--format", choices=("table", "json", "nagios"), default="table", help="output format"
    )
    parser.add_argument(
        "--json", action="store_const", const="json", dest="format", help="same as --format json"
    )
    parser.add_argument(
        "--events",
        choices=("auto", "on", "off"),
        default="auto",
        help="JSON events on stderr; auto: on, but off for --format nagios (a monitoring"
        " core reads stderr as the check's output) and for a table on a terminal",
    )
    parser.add_argument(
        "--from-daemon",
        nargs="?",
        const=DAEMON_URL,
        metavar="URL",
        help=f"report the running daemon's results (its /status) instead of probing; URL"
        f" is its endpoint, http:// or https:// (default {DAEMON_URL})",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="checks run at once (default: the config's, 200)",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    try:
        if args_list[:1] == ["demo"]:
            from simulator.demo import main as demo_main

            return demo_main(args_list[1:])
        with _no_gc():  # imports, validation and the run make mostly long-lived objects
            return _main(args_list)
    except KeyboardInterrupt:
        print("probe: interrupted", file=sys.stderr)
        return UNKNOWN  # Nagios: nothing was judged
    except Exception as exc:  # the last line of defence: a message, never a traceback
        if os.environ.get("PROBE_DEBUG"):
            raise
        print(
            f"probe: internal error: {type(exc).__name__}: {exc} "
            "(set PROBE_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return UNKNOWN


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(f"hotline-probe {version('hotline-probe')}")
        return 0
    if args.from_daemon is not None:
        return _from_daemon(parser, args)
    if not (args.all or args.list or args.check_config or args.names):
        parser.error("say what to run: --all, NAME..., --list or --check-config")
    if args.names and (args.all or args.list or args.check_config):
        parser.error("give check names or --all/--list/--check-config, not both")
    if args.concurrency is not None and args.concurrency < 1:
        parser.error("--concurrency must be at least 1")

    from config import secret_values
    from config.load import load_for

    if (loaded := load_for("probe", args.config)) is None:
        return UNKNOWN
    path, config = loaded
    if args.check_config:
        kinds = sorted({c.kind for c in config.checks})
        print(f"{path}: OK, {len(config.checks)} checks ({', '.join(kinds)})")
        return 0
    if args.list:
        _print_list(config)
        return 0
    known = {c.name for c in config.checks}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        print(
            f"probe: unknown check {', '.join(unknown)}; known: {', '.join(sorted(known))}",
            file=sys.stderr,
        )
        return UNKNOWN
    events = args.events == "on" or (
        # A monitoring core (Icinga 2) merges stderr into the plugin's output: an event
        # there would become the first line of the check's status.
        args.events == "auto"
        and args.format != "nagios"
        and not (args.format == "table" and sys.stderr.isatty())
    )
    from core.redact import Scrubber

    scrub = Scrubber(secret_values(config))
    results = run(
        config,
        names=args.names or None,
        concurrency=args.concurrency,
        events=events,
        scrub=scrub,
    )
    print(render(results, args.format, scrub))
    from engine.report import exit_code

    return exit_code(results)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic collector for a one-shot run.

    A one-shot run keeps the modules, the config and every result until it prints them,
    so the collector would only walk live objects again and again while hundreds of
    probes allocate; the little cyclic garbage an attempt leaves (an exception and its
    traceback) is bounded by the attempts and freed at exit. Measured with bench/: about
    a tenth of the throughput of `probe --all`. The daemon keeps the collector on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def run(
    config: ProbeConfig,
    *,
    names: list[str] | None = None,
    concurrency: int | None = None,
    events: bool = True,
    scrub: Callable[[str], str],
) -> list[CheckResult]:
    """Run checks once on a fresh event loop (uvloop where installed) and return results."""
    from engine.runner import run_all
    from wiring.probe import build_probe

    graph = build_probe(config, events=events, scrub=scrub)
    on_result = graph.events.emit_result if graph.events is not None else None

    async def go() -> list[CheckResult]:
        async with graph.context() as ctx:
            return await run_all(
                config, ctx, names=names, concurrency=concurrency, on_result=on_result
            )

    from probes import PROBES

    PROBES.prepare(config.selected(names))  # imports before the runs, not timed in them
    gc.freeze()  # what exists now lives until exit: keep it out of any later collection
    from engine.loop import run as run_loop

    return run_loop(go())


def render(results: list[CheckResult], fmt: str, scrub: Callable[[str], str]) -> str:
    import json

    from engine import report

    document = report.document(results)
    if fmt == "nagios":
        # Scrubbed before rendering, not after: the Nagios output is cut to the core's
        # byte limits, and a mask may be longer than the secret it replaces.
        document = json.loads(scrub(json.dumps(document, ensure_ascii=False)))
        return render_document(document, fmt)
    return scrub(render_document(document, fmt))


def render_document(document: dict[str, Any], fmt: str) -> str:
    """A run's JSON document, or the daemon's /status, in the format asked for."""
    from engine import report

    if fmt == "json":
        import json

        # Indented for a person at a terminal, one line for a pipe (and 5x faster).
        indent = 2 if sys.stdout.isatty() else None
        return json.dumps(document, ensure_ascii=False, indent=indent)
    if fmt == "nagios":
        return report.nagios_from(document)
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    return report.table_from(document, color=color)


def _from_daemon(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--from-daemon [URL] [NAME...]``: render the daemon's /status, exit as for a run."""
    url = args.from_daemon
    if "://" not in url:
        if ":" in url or "/" in url:
            parser.error("--from-daemon takes an http:// or https:// URL")
        # `probe --from-daemon police-110`: argparse took the check name for the URL.
        args.names.insert(0, url)
        url = DAEMON_URL
    if not url.startswith(("http://", "https://")):
        parser.error("--from-daemon takes an http:// or https:// URL")
    if args.list or args.check_config or args.config or args.concurrency is not None:
        parser.error(
            "--from-daemon reads what the daemon has judged: "
            "--list, --check-config, --config and --concurrency do not apply"
        )
    if args.names and args.all:
        parser.error("give check names or --all, not both")

    from engine import daemon_status, report

    try:
        document = daemon_status.fetch(url)
    except daemon_status.StatusUnavailable as exc:
        return _cannot_judge(args.format, f"cannot read the daemon's status: {exc}")
    if args.names:
        known = [c["name"] for c in document["checks"]]
        if missing := sorted(set(args.names) - set(known)):
            shown = ", ".join(known[:20]) + (
                f" (+{len(known) - 20} more)" if len(known) > 20 else ""
            )
            return _cannot_judge(
                args.format, f"the daemon runs no check {', '.join(missing)}; it runs: {shown}"
            )
        document = report.select(document, set(args.names))
    # The daemon scrubbed the document of its config's secrets before sending it.
    print(render_document(document, args.format))
    return report.exit_code_from(document)


def _cannot_judge(fmt: str, message: str) -> int:
    """Say why nothing was judged: as the plugin's status line for Nagios (a core shows
    stdout), on stderr otherwise; UNKNOWN."""
    if fmt == "nagios":
        print(f"HOTLINE-PROBE UNKNOWN - {message}")
    else:
        print(f"probe: {message}", file=sys.stderr)
    return UNKNOWN


def _print_list(config: ProbeConfig) -> None:
    from engine.report import pad, text_width

    rows = [("CHECK", "KIND", "NODES", "TITLE")]
    rows += [(c.name, c.kind, ", ".join(n.name for n in c.nodes), c.title) for c in config.checks]
    widths = [max(text_width(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join([*(pad(row[i], widths[i]) for i in range(3)), row[3]]).rstrip())


if __name__ == "__main__":
    sys.exit(main())
