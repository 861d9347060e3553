"""CPU per event of formatting and shipping events, and 50,000 events into a real rsyslog.

Target (issue): formatting and shipping add at most 20 us of CPU per event on these
machines; 50,000 events through the TCP output into rsyslog with none lost.

Part 1, CPU: prepared check, attempt and failover documents (built before the clock
starts) go through ``Pipeline.emit`` into one output at a time: a null output (the
stamping, JSON rendering and scrubbing only: the baseline), the JSON-lines file, syslog
over TCP (JSON and CEF) and RELP into a real rsyslogd. CPU is ``time.process_time``
(user + system, every thread of this process) around the whole round, up to the moment
the output has handed every event to the kernel (TCP) or had it answered (RELP): the
asyncio sender task's CPU is in the figure. A "nothing" round runs the same loop without
``emit`` and is subtracted: what is left is emit() and the shipping, per event. Two
patterns: bursts of events per loop pass (many checks finishing together, where CPU is
scarce), and one event per loop pass (a quiet daemon: every event wakes the sender).
Rounds interleave the outputs, so drift on a shared machine hits each alike; the median
is reported, and each output's ratio to the null baseline is the median of per-round
ratios.

Part 2, delivery: 50,000 events through the TCP output, then 50,000 through RELP, each
run into a fresh rsyslogd and a fresh output with default settings (queue_events 10,000),
twice: "flood", as fast as this process produces them, with a spool_dir to take the
overflow, and "paced", without one, the producer idling while more than BACKLOG_MAX
events wait in the output's queue. Every line rsyslogd writes is parsed (the JSON after
the BOM of %rawmsg%) and the numbers the events carry (monitor.check_group b0, b1...) must
come back complete, once each, in order, with event.sequence unbroken. An output that
moves nothing on for STALL_S has stalled: its events count as lost.

Exit status: 0 when the figures were taken, PASS or MISS alike; 1 when events were lost,
repeated or reordered; 2 when a figure could not be taken (no rsyslogd, an output that
stalled in a CPU round). Everything listens on and connects to 127.0.0.1 only.

Usage: ``python bench/bench_events.py [--events 10000] [--rounds 5] [--burst 50]
[--delivery 50000]``, about 90 s; ``--profile tcp`` (null, file, cef, relp) instead runs
one round under cProfile and lists where the time goes, in us per event.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# tests/ is not installed, and tests.rsyslog is what runs the collector.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.outputs import FileOutput, SyslogOutput
from core.errors import ErrorType, ProbeError
from core.redact import Scrubber
from core.result import Attempt, CheckResult, NodeResult, NodeStatus, Status
from engine.loop import run
from engine.state import CheckStateView, CheckStatus
from events.ecs import attempt_events, check_event, daemon_event, failover_event
from events.log import Pipeline
from events.outputs import Output, build_one
from tests.rsyslog import RSYSLOGD, Rsyslog

HOST = "127.0.0.1"
TARGET_US = 20.0
BOM = "\ufeff".encode()
# Three secrets, as a config with a password, a header token and a signed URL has: the
# scrubber runs over every rendered line in production, so it does here, baseline included.
SECRETS = ("s3cr3t-passw0rd-7f3a", "Bearer eyJhbGciOiJIUzI1NiJ9.bench", "sig-0a1b2c3d4e5f")
BACKLOG_MAX = 2_000  # CPU rounds wait (idle) above this: a collector that keeps up
STALL_S = 10.0  # an output that moves no event on for this long has stopped


class Unmeasurable(Exception):
    """A figure could not be taken: reported as such, never as PASS or MISS."""


class Stalled(Exception):
    """An output stopped moving events on (none left it for STALL_S)."""


class Lost(Exception):
    """Events went missing, came twice or out of order: the bench's one hard failure."""


# --- the documents, built before any clock starts -------------------------------------


def _view(hard: CheckStatus, streak: int, since: datetime) -> CheckStateView:
    return CheckStateView(
        hard=hard,
        soft=hard,
        soft_streak=streak,
        since=since,
        active_node=None,
        failback_streak=0,
        flapping=False,
        flap_percent=0.0,
        unreachable_because=(),
        runs=streak,
        nodes={},
    )


def documents() -> list[dict[str, Any]]:
    """What a daemon writes for a typical minute: mostly checks that are up, one run that
    failed over (two failed attempts, the failover, the check), one check down."""
    at = datetime(2026, 11, 3, 8, 15, 42, 123456, tzinfo=UTC)
    cert = {"status_code": 200, "tls_not_after": "2027-02-01T00:00:00Z"}
    docs: list[dict[str, Any]] = []
    for i, (kind, target) in enumerate(
        [
            ("http", "https://gw-{i}.hotline.invalid/api/health?region=hn"),
            ("http", "https://ivr-{i}.hotline.invalid/status"),
            ("tcp", "127.20.{i}.15:5432"),
            ("http", "https://sms-{i}.hotline.invalid/ping"),
            ("tcp", "127.20.{i}.30:6379"),
            ("http", "https://crm-{i}.hotline.invalid/health"),
        ]
    ):
        name = f"{kind}-link-{i}"
        node = NodeResult(
            "primary",
            target.format(i=i),
            NodeStatus.UP,
            (Attempt(1, 0.0312, None, {"connect": 0.002}, cert if kind == "http" else {}),),
            0.0312,
        )
        spare = NodeResult("standby", target.format(i=i + 100), NodeStatus.SKIPPED)
        result = CheckResult(
            name, kind, f"链路 {name}", Status.UP, "primary", at, 0.0313, (node, spare), "g"
        )
        docs.append(check_event(result, _view(CheckStatus.UP, 40 + i, at - timedelta(hours=3))))

    timeout = ProbeError(
        ErrorType.TIMEOUT, "no answer within 5s (connect to pay-1.hotline.invalid:443)"
    )
    failed = NodeResult(
        "primary",
        "https://pay.hotline.invalid/api/health?token=REDACTED",
        NodeStatus.DOWN,
        (Attempt(1, 5.0, timeout), Attempt(2, 5.0, timeout)),
        10.0,
    )
    served = NodeResult(
        "standby", "https://pay-dr.hotline.invalid/api/health", NodeStatus.UP,
        (Attempt(1, 0.0451, None, {}, cert),), 0.0451,
    )  # fmt: skip
    degraded = CheckResult(
        "pay-gateway", "http", "支付网关", Status.DEGRADED, "standby", at, 10.05,
        (failed, served), "g",
    )  # fmt: skip
    docs.extend(attempt_events(degraded))
    docs.append(failover_event(degraded))
    docs.append(check_event(degraded, _view(CheckStatus.DEGRADED, 1, at)))

    refused = ProbeError(
        ErrorType.CONNECTION_REFUSED, "connection refused by db-1.hotline.invalid:1521"
    )
    down = CheckResult(
        "billing-db", "tcp", "计费库", Status.DOWN, None, at, 0.004,
        (
            NodeResult("primary", "db-1.hotline.invalid:1521", NodeStatus.DOWN,
                       (Attempt(1, 0.002, refused),), 0.002),
            NodeResult("standby", "db-2.hotline.invalid:1521", NodeStatus.DOWN,
                       (Attempt(1, 0.002, refused),), 0.002),
        ),
        "g",
    )  # fmt: skip
    docs.extend(attempt_events(down))
    docs.append(check_event(down, _view(CheckStatus.DOWN, 3, at)))
    return docs


GROUPS: list[str] = []
"""``b0``, ``b1``...: event N carries GROUPS[N] as its run id, made before the clock starts."""


def numbered(docs: list[dict[str, Any]], number: int) -> dict[str, Any]:
    """The document for event ``number``, carrying the number as monitor.check_group.

    Documents are reused: emit() renders before it returns, so changing one afterwards
    changes nothing already written."""
    doc = docs[number % len(docs)]
    doc["monitor"]["check_group"] = GROUPS[number]
    return doc


def number_of(doc: Mapping[str, Any]) -> int | None:
    group = doc.get("monitor", {}).get("check_group", "")
    return int(group[1:]) if isinstance(group, str) and group.startswith("b") else None


# --- outputs --------------------------------------------------------------------------


class NullSink(Output):
    """Takes the rendered line and does nothing: the pipeline's own cost."""

    kind = "null"

    def submit(self, doc: Mapping[str, Any], line: str) -> None:
        self.counts["sent"] += 1


@dataclass
class Subject:
    label: str
    output: Output | None  # None: the harness loop alone ("nothing")
    figures: dict[str, list[float]] = field(default_factory=dict)  # pattern -> us/event
    system: dict[str, list[float]] = field(default_factory=dict)  # of it in the kernel

    def done(self) -> int:
        """Events the output is finished with: sent directly, replayed after parking, or
        dropped (the oldest, past its memory or spool bound)."""
        if self.output is None:
            return 0
        counts = self.output.counts
        return counts["sent"] + counts["replayed"] + counts["dropped"]

    def backlog(self) -> float:
        return self.output.gauges().get("queue_events", 0.0) if self.output else 0.0


def syslog(address: str, **extra: Any) -> SyslogOutput:
    return SyslogOutput.model_validate({"type": "syslog", "address": address, **extra})


async def drained(subject: Subject, target: int, *, backlog: float = 0) -> None:
    """Idle until ``target`` events have left the output and at most ``backlog`` wait in
    its queue. The sinks offer no event to wait on; a sleep costs no CPU, a wake-up little."""
    if subject.output is None:
        return
    done, moved = subject.done(), time.monotonic()
    while subject.done() < target or subject.backlog() > backlog:
        if subject.done() != done:
            done, moved = subject.done(), time.monotonic()
        elif time.monotonic() - moved > STALL_S:
            raise Stalled(
                f"{subject.label}: the output moved no event on for {STALL_S:g} s; "
                f"{max(target - done, 0):,} still to go, counts {dict(subject.output.counts)}, "
                f"gauges {subject.output.gauges()}"
            )
        await asyncio.sleep(0.002)


async def one_round(
    subject: Subject,
    docs: list[dict[str, Any]],
    scrub: Callable[[str], str],
    *,
    events: int,
    burst: int,
    throttle: bool,
) -> Cost:
    """Emit events 0..``events``-1, ``burst`` per loop pass, and wait until every one has
    left the output.

    With ``throttle`` the producer idles while more than BACKLOG_MAX events wait in the
    output's queue (looked at about every 50 events, so that looking costs nothing): the
    steady state of a collector that keeps up, not a flood into the spool."""
    emit: Callable[[dict[str, Any]], None] = _nothing
    if subject.output is not None:
        emit = Pipeline([subject.output], scrub=scrub).emit
    before = subject.done()
    look_every = max(1, 50 // burst)
    cpu0, sys0, wall0 = time.process_time(), _system(), time.perf_counter()
    for pass_, start in enumerate(range(0, events, burst)):
        for number in range(start, min(start + burst, events)):
            emit(numbered(docs, number))
        await asyncio.sleep(0)
        if throttle and pass_ % look_every == 0 and subject.backlog() > BACKLOG_MAX:
            await drained(subject, 0, backlog=BACKLOG_MAX)
    await drained(subject, before + events)
    return Cost(time.process_time() - cpu0, _system() - sys0, time.perf_counter() - wall0)


@dataclass(frozen=True)
class Cost:
    cpu: float  # seconds, time.process_time: user + system
    system: float  # of it in the kernel (here mostly loopback TCP, both ends of it)
    wall: float


def _system() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def _nothing(doc: dict[str, Any]) -> None:
    pass


async def connected(subject: Subject, scrub: Callable[[str], str]) -> None:
    """One throwaway event through the output, and wait until it has left: the sink parks
    events until its task has connected, so this returns once it is sending."""
    assert subject.output is not None
    pipeline = Pipeline([subject.output], scrub=scrub)
    before = subject.done()
    pipeline.emit(daemon_event("daemon-start", "bench: output connected", checks=0))
    await drained(subject, before + 1)


# --- part 1: CPU per event ------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    key: str
    burst: int
    title: str


def cpu_subjects(work: Path, collector: Rsyslog) -> list[Subject]:
    tcp = f"{HOST}:{collector.tcp_port}"
    relp = f"{HOST}:{collector.relp_port}"
    jsonl = FileOutput(type="file", path=work / "events.jsonl", backups=2)
    return [
        Subject("nothing (harness loop)", None),
        Subject("null (render only)", NullSink("null")),
        Subject("file", build_one("file", jsonl)),
        Subject("syslog tcp, json", build_one("tcp", syslog(tcp))),
        Subject("syslog tcp, cef", build_one("cef", syslog(tcp, format="cef"))),
        Subject("syslog relp, json", build_one("relp", syslog(relp, transport="relp"))),
    ]


async def measure_cpu(
    args: argparse.Namespace, work: Path, scrub: Callable[[str], str]
) -> tuple[list[Subject], list[Pattern]]:
    collector = Rsyslog(work / "rsyslog-cpu")
    collector.start()
    subjects = cpu_subjects(work, collector)
    patterns = [
        Pattern("burst", args.burst, f"{args.burst} per loop pass"),
        Pattern("single", 1, "1 per loop pass"),
    ]
    docs = documents()
    try:
        for s in subjects:
            if s.output is not None:
                await s.output.start()
                await connected(s, scrub)
        parked = {s.label: s.output.counts["spooled"] for s in subjects if s.output}
        # Round 0 warms up (allocator, caches, the collector's queues): untimed. The
        # outputs take turns, starting one further each round, so neither drift on a
        # shared machine nor what the previous output left behind favours one of them.
        for round_ in range(args.rounds + 1):
            turn = subjects[round_ % len(subjects) :] + subjects[: round_ % len(subjects)]
            for pattern in patterns:
                for s in turn:
                    gc.collect()  # each round starts from the same heap, and pays its own
                    cost = await one_round(
                        s, docs, scrub, events=args.events, burst=pattern.burst, throttle=True
                    )
                    if round_:
                        per_event = 1e6 / args.events
                        s.figures.setdefault(pattern.key, []).append(cost.cpu * per_event)
                        s.system.setdefault(pattern.key, []).append(cost.system * per_event)
            print(f"  round {round_ or 'warm-up'} done", flush=True)
        for s in subjects:
            if s.output is not None and s.output.counts["dropped"]:
                raise Unmeasurable(f"{s.label} dropped events: {dict(s.output.counts)}")
        parked = {
            s.label: s.output.counts["spooled"] - parked[s.label] for s in subjects if s.output
        }
        if any(parked.values()):
            print(f"  info: events parked in the spool during the rounds: {parked}")
    except Stalled as exc:
        raise Unmeasurable(str(exc)) from None
    finally:
        for s in subjects:
            if s.output is not None:
                await s.output.close(grace=2.0)
        collector.stop()
    return subjects, patterns


def report_cpu(subjects: list[Subject], patterns: list[Pattern], rounds: int, events: int) -> bool:
    nothing, null, *outputs = subjects
    ok = True
    for pattern in patterns:
        k = pattern.key
        print(f"\nCPU per event, {pattern.title}: median of {rounds} rounds of {events:,} events")
        print(
            f"  {'output':<24}{'gross us':>10}{'sys us':>8}{'net us':>9}{'x null':>8}"
            f"{'over null':>11}{'net, rounds':>15}  verdict (net <= {TARGET_US:g} us)"
        )
        harness = nothing.figures[k]
        print(
            f"  {nothing.label:<24}{statistics.median(harness):>10.2f}"
            f"{statistics.median(nothing.system[k]):>8.2f}"
        )
        base = [b - h for b, h in zip(null.figures[k], harness, strict=True)]
        for s in (null, *outputs):
            net_rounds = [g - h for g, h in zip(s.figures[k], harness, strict=True)]
            net = statistics.median(net_rounds)
            ratio = statistics.median(n / b for n, b in zip(net_rounds, base, strict=True))
            over = statistics.median(n - b for n, b in zip(net_rounds, base, strict=True))
            passed = net <= TARGET_US
            ok &= passed
            print(
                f"  {s.label:<24}{statistics.median(s.figures[k]):>10.2f}"
                f"{statistics.median(s.system[k]):>8.2f}{net:>9.2f}{ratio:>8.2f}{over:>11.2f}"
                f"{f'{min(net_rounds):.1f}..{max(net_rounds):.1f}':>15}"
                f"  {'PASS' if passed else 'MISS'}"
            )
    print(
        "\n  gross: process CPU (user+system, time.process_time) per event over a round,"
        " harness loop included;\n  sys: the kernel's part of gross, from getrusage (split"
        " by the kernel's tick sampling: rough).\n"
        "  net: gross minus the harness loop alone = emit() (stamping, JSON,"
        " scrubbing)\n  plus the output's formatting and shipping, its asyncio sender task"
        " included. The verdict is on net.\n"
        "  x null, over null: the output's net against the null output's net, median of"
        " per-round figures."
    )
    return ok


# --- part 2: 50,000 through TCP and RELP, none lost -----------------------------------


@dataclass(frozen=True)
class Tally:
    """What rsyslog's file holds, against events 0..N-1 sent once each in order."""

    arrived: int  # lines carrying one of our numbers
    missing: list[int]
    repeated: int
    in_order: bool
    sequence_ok: bool  # event.sequence over every line: no gap, no repeat
    garbled: int  # lines that are not a frame with a BOM and a JSON document
    other: int  # our lines without a number: the connection check, any output-* event

    @property
    def ok(self) -> bool:
        return not (self.missing or self.repeated or self.garbled) and (
            self.in_order and self.sequence_ok
        )


@dataclass(frozen=True)
class Delivery:
    label: str
    mode: str  # flood: as fast as produced; paced: the producer waits above BACKLOG_MAX
    events: int
    cpu_us: float | None  # None: the output stalled, the round never ended
    sent_s: float | None
    landed_s: float | None  # None: not all of them reached rsyslogd's file
    collector_cpu_us: float | None
    counts: dict[str, int]
    tally: Tally
    stalled: str | None


def process_cpu(pid: int) -> float | None:
    """utime + stime of a process, from /proc, in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def landed(path: Path, count: int, started: float) -> float | None:
    """Seconds from ``started`` until rsyslog's file holds ``count`` lines; None when it
    stops growing for STALL_S first."""
    seen = offset = 0
    grew = time.monotonic()
    while True:
        lines, offset = _new_lines(path, offset)
        seen += lines
        if seen >= count:
            return time.perf_counter() - started
        if lines:
            grew = time.monotonic()
        elif time.monotonic() - grew > STALL_S:
            return None
        await asyncio.sleep(0.005)


def _new_lines(path: Path, offset: int) -> tuple[int, int]:
    """Lines written to ``path`` after ``offset``, and the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return 0, offset
    return chunk.count(b"\n"), offset + len(chunk)


def tally(path: Path, events: int) -> Tally:
    """Parse every line as the tests do (the JSON after the BOM of %rawmsg%)."""
    got: list[int] = []
    sequences: list[int] = []
    garbled = other = 0
    lines = path.read_bytes().split(b"\n") if path.exists() else []
    for line in filter(None, lines):
        at = line.find(BOM)
        try:
            if not line.startswith(b"<") or at < 0:
                raise ValueError("not an RFC 5424 frame with a BOM")
            doc = json.loads(line[at + len(BOM) :])
            sequences.append(int(doc["event"]["sequence"]))
        except (ValueError, KeyError, TypeError):
            garbled += 1
            continue
        number = number_of(doc)
        if number is None:
            other += 1
        else:
            got.append(number)
    unique = set(got)
    return Tally(
        arrived=len(got),
        missing=sorted(set(range(events)) - unique),
        repeated=len(got) - len(unique),
        in_order=got == sorted(got),
        sequence_ok=sequences == list(range(sequences[0], sequences[0] + len(sequences)))
        if sequences
        else False,
        garbled=garbled,
        other=other,
    )


async def deliver(
    transport: str,
    *,
    paced: bool,
    events: int,
    burst: int,
    work: Path,
    scrub: Callable[[str], str],
) -> Delivery:
    """``events`` events through a fresh output (default settings) into a fresh rsyslogd."""
    mode = "paced" if paced else "flood"
    collector = Rsyslog(work / f"rsyslog-{transport}-{mode}")
    collector.start()
    port = collector.tcp_port if transport == "tcp" else collector.relp_port
    label = f"syslog {transport}, json"
    # A flood outruns RELP's answers: with spool_dir the overflow waits on disk, as
    # docs/events.md advises where loss matters, instead of the oldest being dropped
    # past queue_events in memory (by design, and not what this run is after).
    spool = {} if paced else {"spool_dir": str(work / f"spool-{transport}")}
    config = syslog(f"{HOST}:{port}", transport=transport, **spool)
    subject = Subject(label, build_one(transport, config))
    assert subject.output is not None
    assert collector.process is not None
    log_file = collector.dir / f"{transport}.log"
    docs = documents()
    cost: Cost | None = None
    stalled: str | None = None
    try:
        await subject.output.start()
        await connected(subject, scrub)
        gc.collect()
        collector_cpu0 = process_cpu(collector.process.pid)
        started = time.perf_counter()
        try:
            cost = await one_round(subject, docs, scrub, events=events, burst=burst, throttle=paced)
        except Stalled as exc:
            stalled = str(exc)
        landed_s = await landed(log_file, events + 1, started)  # +1: the connection check
        collector_cpu1 = process_cpu(collector.process.pid)
        await asyncio.sleep(0.2)  # anything extra (a repeat) would have landed by now
        counts = dict(subject.output.counts)
    finally:
        await subject.output.close(grace=2.0)
        collector.stop()
    collector_us = None
    if collector_cpu0 is not None and collector_cpu1 is not None:
        collector_us = 1e6 * (collector_cpu1 - collector_cpu0) / events
    return Delivery(
        label=label,
        mode=mode,
        events=events,
        cpu_us=1e6 * cost.cpu / events if cost else None,
        sent_s=cost.wall if cost else None,
        landed_s=landed_s,
        collector_cpu_us=collector_us,
        counts=counts,
        tally=tally(log_file, events),
        stalled=stalled,
    )


def report_delivery(runs: Sequence[Delivery], burst: int) -> dict[str, bool]:
    print(
        f"\nDelivery into rsyslogd (imtcp / imrelp to omfile), {burst} events per loop pass, "
        "the output's\ndefault settings (queue_events 10,000); flood: as fast as they come,"
        " with a spool_dir for the\noverflow; paced: no spool_dir, the producer idles while"
        f" more than {BACKLOG_MAX:,} wait in the queue.\nEvery line rsyslogd wrote is parsed."
    )
    print(
        f"  {'output':<18}{'mode':>6}{'events':>8}{'arrived':>9}{'missing':>9}{'repeated':>9}"
        f"{'dropped':>9}{'order':>7}{'sent ev/s':>11}{'landed ev/s':>12}{'CPU us/ev':>11}"
        f"{'rsyslogd':>10}"
    )
    verdicts: dict[str, bool] = {}
    for d in runs:
        t = d.tally
        passed = t.ok and not d.stalled and not d.counts["dropped"]
        verdicts[f"{d.label.split(',')[0].removeprefix('syslog ')} {d.mode}"] = passed
        sent = f"{d.events / d.sent_s:,.0f}" if d.sent_s else "stalled"
        rate = f"{d.events / d.landed_s:,.0f}" if d.landed_s else "never"
        cpu = f"{d.cpu_us:.2f}" if d.cpu_us is not None else "-"
        collector = f"{d.collector_cpu_us:.1f}" if d.collector_cpu_us is not None else "?"
        order = "ok" if t.in_order else "WRONG"
        print(
            f"  {d.label:<18}{d.mode:>6}{d.events:>8,}{t.arrived:>9,}{len(t.missing):>9,}"
            f"{t.repeated:>9,}{d.counts['dropped']:>9,}{order:>7}{sent:>11}{rate:>12}{cpu:>11}"
            f"{collector:>10}"
        )
        print(
            f"    {'PASS' if passed else 'LOST'}: output counts {d.counts}; {t.other} other "
            f"event(s) in the file (1 is the connection check), {t.garbled} garbled line(s)"
            + (f"; first missing {t.missing[:3]}" if t.missing else "")
            + ("" if t.sequence_ok else "; event.sequence has gaps")
        )
        if d.stalled:
            print(f"    STALLED: {d.stalled}")
    print(
        "  sent: until the output had handed the last event to the kernel (TCP) or had it"
        " answered (RELP);\n  landed: until rsyslogd's file held them all. CPU us/ev: this"
        " process, gross; rsyslogd: its CPU us/ev."
    )
    return verdicts


# --- profile --------------------------------------------------------------------------


async def profile(args: argparse.Namespace, work: Path, scrub: Callable[[str], str]) -> None:
    """One round through one output under cProfile: where the CPU per event goes."""
    collector = Rsyslog(work / "rsyslog-profile")
    collector.start()
    subjects = {s.output.name: s for s in cpu_subjects(work, collector) if s.output}
    subject = subjects[args.profile]
    assert subject.output is not None
    docs = documents()
    try:
        await subject.output.start()
        await connected(subject, scrub)
        await one_round(subject, docs, scrub, events=args.events, burst=args.burst, throttle=True)
        profiler = cProfile.Profile()
        profiler.enable()
        cost = await one_round(
            subject, docs, scrub, events=args.events, burst=args.burst, throttle=True
        )
        profiler.disable()
    finally:
        await subject.output.close(grace=2.0)
        collector.stop()
    stats = pstats.Stats(profiler)
    rows: list[tuple[float, float, int, str]] = []
    for (filename, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(filename).name}:{line}({name})" if line else name
        rows.append((tottime, cumtime, calls, where))
    n = args.events
    print(
        f"\nprofile: {subject.label}, {n:,} events, {args.burst} per loop pass, under cProfile "
        f"({1e6 * cost.cpu / n:.1f} us/event with the profiler's own overhead)"
    )
    print(f"  {'own us/ev':>10}{'cum us/ev':>10}{'calls/ev':>9}  function")
    for tottime, cumtime, calls, where in sorted(rows, reverse=True)[: args.top]:
        print(f"  {1e6 * tottime / n:>10.2f}{1e6 * cumtime / n:>10.2f}{calls / n:>9.2f}  {where}")


# --- main -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=10_000, help="events per CPU round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (+1 warm-up)")
    parser.add_argument("--burst", type=int, default=50, help="events per loop pass")
    parser.add_argument("--delivery", type=int, default=50_000, help="events per delivery run")
    parser.add_argument(
        "--profile",
        choices=("null", "file", "tcp", "cef", "relp"),
        help="instead of the bench: profile one round through this output",
    )
    parser.add_argument("--top", type=int, default=25, help="functions the profile lists")
    return parser.parse_args(argv)


async def bench(args: argparse.Namespace, work: Path) -> bool:
    scrub = Scrubber(SECRETS)
    GROUPS.extend(f"b{n}" for n in range(max(args.events, args.delivery)))
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    load = os.getloadavg()
    print(
        f"events bench: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}, Python {sys.version.split()[0]}, loop {loop}; "
        f"{len(documents())} prepared documents\n  (check, attempt, failover), scrubber with "
        f"{len(SECRETS)} secrets; rsyslogd on {HOST} only",
        flush=True,
    )
    if args.profile:
        await profile(args, work, scrub)
        return True
    subjects, patterns = await measure_cpu(args, work, scrub)
    ok = report_cpu(subjects, patterns, args.rounds, args.events)
    runs = [
        await deliver(
            transport, paced=paced, events=args.delivery, burst=args.burst, work=work, scrub=scrub
        )
        for transport in ("tcp", "relp")
        for paced in (False, True)
    ]
    delivered = report_delivery(runs, args.burst)
    load = os.getloadavg()
    print(
        f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
        f"verdict: formatting and shipping <= {TARGET_US:g} us CPU per event (net, every "
        f"output, both patterns): {'PASS' if ok else 'MISS'}\n"
        f"verdict: {args.delivery:,} events into rsyslog, none lost, none repeated, in order: "
        + ", ".join(f"{run} {'PASS' if passed else 'LOST'}" for run, passed in delivered.items()),
        flush=True,
    )
    if not all(delivered.values()):
        raise Lost("see the delivery table above")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(RSYSLOGD).exists():
        print(f"bench: could not measure: {RSYSLOGD} is missing", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="events-bench-") as tmp:
            run(bench(args, Path(tmp)))
    except Lost as exc:
        print(f"\nbench: EVENTS LOST: {exc}", file=sys.stderr)
        return 1
    except (Unmeasurable, RuntimeError) as exc:
        print(f"\nbench: could not measure: {exc}", file=sys.stderr)
        return 2
    return 0  # a MISS is a figure, not an error: it is printed above


if __name__ == "__main__":
    sys.exit(main())
