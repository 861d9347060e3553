"""Steady-state cost of ``probed``, and its CPU per probe against blackbox_exporter.

Targets (issue):

(A) 10,000 HTTP checks on a 60 s interval against a loopback server: the daemon keeps up
    (schedule lateness p99 under 100 ms, and the runs that fall due are done), stays
    under 150 MB resident and under 15% of one core.
(B) At a steady 500 probes/s the daemon spends at most half the CPU per probe that
    prometheus-blackbox-exporter spends when driven at the same rate, in the same run.

It prints figures, it is not a timed test. Exits 1 when a target is missed, 2 when a
figure could not be taken (a process died, the exporter answered a failed probe). Every
process it starts runs on, and is contacted on, 127.0.0.1 only, and is stopped on exit,
Ctrl-C and SIGTERM included.

Usage (the exporter once, as root: ``bash scripts/install-test-deps.sh --bench``)::

    .venv/bin/python bench/bench_daemon.py            # about 3 minutes
    .venv/bin/python bench/bench_daemon.py --interval 20s --window 40s --rate-window 10s
    .venv/bin/python bench/bench_daemon.py --part a   # or b: one half only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import aiohttp
from yarl import URL

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"  # the only address anything here binds to or connects to
CLK_TCK = os.sysconf("SC_CLK_TCK")
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"

LATENESS_P99_MAX_S = 0.1
RUNS_DONE_MIN = 0.99  # of the runs due in the window; the edges hold runs still in flight
RSS_MAX_MB = 150.0  # MB = 10^6 bytes, the stricter reading of "150 MB"
CPU_MAX_SHARE = 0.15
CPU_PER_PROBE_MAX_RATIO = 0.5
RATE_TOLERANCE = 0.02  # the driver must hold the asked rate within 2%, or B is not fair

DRIVER_TICK_S = 0.002
SAMPLE_EVERY_S = 1.0
READY_TIMEOUT_S = 120.0  # loading 10,000 checks takes a few seconds; a hang is a failure


class Unmeasurable(Exception):
    """A figure could not be taken honestly: reported as such, never as PASS or FAIL."""


# --- processes ------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the bench dies, even by SIGKILL,
    which no ``finally`` can catch; then nothing the bench started outlives it."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """A process we started, in a session of its own: a Ctrl-C at the terminal reaches
    the bench alone, which then stops its children itself (it may still need them)."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        stdout: int | IO[bytes],
        stderr: int | IO[bytes],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the whole group (the daemon drains in-flight checks), then SIGKILL."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Children:
    """Every process the bench started, so one ``finally`` can stop them all."""

    def __init__(self) -> None:
        self._all: list[Child] = []

    def start(self, name: str, cmd: Sequence[str], **kwargs: Any) -> Child:
        child = Child(name, cmd, **kwargs)
        self._all.append(child)
        return child

    def stop(self, child: Child) -> None:
        child.stop()
        self._all.remove(child)

    def stop_all(self) -> None:
        while self._all:
            self.stop(self._all[-1])


@dataclass(frozen=True)
class Cpu:
    """CPU seconds of a process: user (its own code) and system (the kernel on its
    behalf: here mostly loopback TCP, which no user-space change can make cheaper)."""

    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.user - other.user, self.system - other.system)


def cpu_times(child: Child) -> Cpu:
    """utime and stime of every thread of the process, from /proc (clock ticks)."""
    try:
        stat = Path(f"/proc/{child.pid}/stat").read_text()
    except OSError:
        raise Unmeasurable(f"{child.name} (pid {child.pid}) is gone") from None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
    return Cpu(int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK)


def cpu_seconds(child: Child) -> float:
    return cpu_times(child).total


def status_kb(child: Child, key: str) -> int:
    """A ``kB`` line of /proc/PID/status: VmRSS (now) or VmHWM (the peak so far)."""
    try:
        text = Path(f"/proc/{child.pid}/status").read_text()
    except OSError:
        raise Unmeasurable(f"{child.name} (pid {child.pid}) is gone") from None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise Unmeasurable(f"no {key} in /proc/{child.pid}/status")


def free_port() -> int:
    # The kernel picks; the short race until the child binds it is harmless on a bench
    # machine, and a lost race shows as a child that fails to start, not a wrong figure.
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_target(children: Children) -> tuple[Child, int]:
    """bench/server.py, shared by every measurement: it prints its port first."""
    server = children.start(
        "target server",
        [sys.executable, str(HERE / "server.py")],
        stdout=subprocess.PIPE,
        stderr=None,
    )
    assert server.proc.stdout is not None
    line = server.proc.stdout.readline().decode().strip()
    if not line.isdigit():
        raise Unmeasurable(f"bench/server.py did not start (printed {line!r})")
    return server, int(line)


def tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


class Watch:
    """Samples a child every second while the measurement sleeps: resident memory,
    liveness, and (for the daemon) its event stream, so reading it at a window edge is
    quick. A child that dies ends the measurement at once rather than at the window end.
    """

    def __init__(self, child: Child, events: EventCounter | None = None) -> None:
        self.child = child
        self.events = events
        self.max_rss_kb = 0
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        if not self.child.alive():
            raise Unmeasurable(f"{self.child.name} exited with code {self.child.proc.returncode}")
        self.max_rss_kb = max(self.max_rss_kb, status_kb(self.child, "VmRSS"))
        if self.events is not None:
            self.events.update()

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_EVERY_S)

    async def sleep(self, seconds: float) -> None:
        assert self._task is not None
        sleeper = asyncio.ensure_future(asyncio.sleep(max(0.0, seconds)))
        await asyncio.wait({sleeper, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            sleeper.cancel()
            self._task.result()  # raises the sampler's Unmeasurable
            raise Unmeasurable(f"sampling {self.child.name} stopped")

    async def __aenter__(self) -> Watch:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Closed before the child is stopped, so its exit is not taken for a crash.
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Unmeasurable):
                await self._task


# --- reading the daemon ----------------------------------------------------------------


class EventCounter:
    """Check runs the daemon finished, counted in its event stream (one JSON line per run).

    Read at the very instant the CPU is read, which the scraped counter cannot be: a
    scrape of 10,000 checks takes seconds and blocks the daemon while it renders.
    """

    MARK = b'"action":"check"'

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self._carry = b""  # a line the daemon is still writing: counted once complete
        self.count = 0

    def update(self) -> int:
        data = self._carry + self._file.read()
        cut = data.rfind(b"\n") + 1
        self.count += data[:cut].count(self.MARK)
        self._carry = data[cut:]
        return self.count

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class Scrape:
    at: float  # monotonic time the request was sent
    took: float  # seconds until the whole body was in
    size: int
    lateness: dict[float, float]  # cumulative count per bucket upper bound, +Inf too
    runs: dict[str, float]  # hotline_probe_checks_total summed over checks, by outcome
    skipped: float

    @property
    def total_runs(self) -> float:
        return sum(self.runs.values())


EMPTY = Scrape(at=0.0, took=0.0, size=0, lateness={}, runs={}, skipped=0.0)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def parse_metrics(text: str, at: float, took: float) -> Scrape:
    """The three families the bench reads, by a line scan: prometheus_client's parser
    would spend seconds on 170,000 lines, on a core the daemon shares."""
    lateness: dict[float, float] = {}
    runs: dict[str, float] = {}
    skipped = 0.0
    for line in text.splitlines():
        if not line.startswith("hotline_probe_"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        if name == "hotline_probe_schedule_lateness_seconds_bucket":
            lateness[float(dict(_LABEL.findall(labels))["le"])] = float(value)
        elif name == "hotline_probe_checks_total":
            outcome = dict(_LABEL.findall(labels))["outcome"]
            runs[outcome] = runs.get(outcome, 0.0) + float(value)
        elif name == "hotline_probe_runs_skipped_total":
            skipped += float(value)
    if math.inf not in lateness:
        raise Unmeasurable("/metrics has no hotline_probe_schedule_lateness_seconds histogram")
    return Scrape(at, took, len(text), lateness, runs, skipped)


async def scrape(http: aiohttp.ClientSession, url: str) -> Scrape:
    at = time.monotonic()
    async with http.get(url) as response:
        if response.status != 200:
            raise Unmeasurable(f"GET {url} answered {response.status}")
        text = await response.text()
    return parse_metrics(text, at, time.monotonic() - at)


@dataclass(frozen=True)
class Lateness:
    count: float  # runs started between the two scrapes
    p99_bound: float  # upper bound of the bucket that holds the 99th percentile
    under_target: float  # fraction of runs started within LATENESS_P99_MAX_S of plan


def lateness_between(a: Scrape, b: Scrape) -> Lateness:
    bounds = sorted(b.lateness)
    diff = {le: b.lateness[le] - a.lateness.get(le, 0.0) for le in bounds}
    count = diff[math.inf]
    if count <= 0:
        raise Unmeasurable("no run started between the two scrapes")
    if LATENESS_P99_MAX_S not in diff:
        raise Unmeasurable(f"the lateness histogram has no {LATENESS_P99_MAX_S} s bucket")
    p99 = next(le for le in bounds if diff[le] >= 0.99 * count)
    return Lateness(count, p99, diff[LATENESS_P99_MAX_S] / count)


async def wait_ready(http: aiohttp.ClientSession, url: str, child: Child) -> float:
    """Poll until ``url`` answers 200; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_S:
        if not child.alive():
            raise Unmeasurable(f"{child.name} exited with code {child.proc.returncode}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with http.get(url) as response:
                await response.read()
                if response.status == 200:
                    return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise Unmeasurable(f"{child.name} did not answer {url} within {READY_TIMEOUT_S:.0f} s")


# --- (A) and the daemon half of (B) -------------------------------------------------------


@dataclass(frozen=True)
class DaemonRun:
    checks: int
    interval: float
    warmup: float
    window: float  # seconds between the two CPU readings
    cpu: float  # CPU seconds of the daemon in the window
    cpu_system: float  # the kernel's part of it
    runs: int  # check runs finished in the window (event stream)
    scraped_runs: float  # the same from hotline_probe_checks_total between two scrapes
    scraped_span: float  # seconds between those two scrapes
    outcomes: dict[str, float]  # runs by outcome over the daemon's life
    skipped: float  # runs skipped because the previous one still ran, over its life
    lateness: Lateness  # in the window (A) or over the daemon's life (B)
    max_rss_kb: int
    hwm_kb: int
    scrape: Scrape  # the last one: its size and duration
    scrape_cpu: float  # CPU seconds the daemon spent in that scrape (about)
    startup: float
    server_cpu: float  # the target server's CPU seconds in the window

    @property
    def due(self) -> float:
        return self.checks * self.window / self.interval

    @property
    def not_up(self) -> float:
        return sum(v for k, v in self.outcomes.items() if k != "up")


def write_daemon_config(
    path: Path, *, listen: int, target: int, checks: int, interval: float, concurrency: int
) -> None:
    lines = [
        f'listen: "{HOST}:{listen}"',
        f"concurrency: {concurrency}",
        f"defaults: {{interval: {interval:g}s, timeout: 5s, retries: {{attempts: 1}}}}",
        "checks:",
    ]
    lines += [
        f'  - {{name: c{i}, kind: http, nodes: [{{name: n, url: "http://{HOST}:{target}/c{i}"}}]}}'
        for i in range(checks)
    ]
    path.write_text("\n".join(lines) + "\n")


def daemon_env() -> dict[str, str]:
    # PROBE_* would be merged into the config and the systemd variables would make the
    # daemon talk to a notify socket: neither belongs in a measurement.
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PROBE_")
        and k not in {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
    }


async def measure_daemon(
    *,
    label: str,
    probed: str,
    checks: int,
    interval: float,
    warmup: float,
    window: float,
    concurrency: int,
    scrape_in_window: bool,
    server: Child,
    target_port: int,
    children: Children,
    work: Path,
) -> DaemonRun:
    """Start ``probed`` on ``checks`` checks, let one interval pass, measure a window.

    With ``scrape_in_window`` the window holds one /metrics scrape, as a Prometheus at
    its default 1m scrape_interval puts into every minute: its render CPU is counted and
    its stall shows in the lateness. Without it (B), the window holds no scrape: a
    scrape's cost depends on the scrape interval, not on the probe rate compared.
    """
    port = free_port()
    config = work / f"{label}.yaml"
    write_daemon_config(
        config,
        listen=port,
        target=target_port,
        checks=checks,
        interval=interval,
        concurrency=concurrency,
    )
    events_path = work / f"{label}.events.jsonl"
    # Events to a file, not /dev/null: counting them gives the runs at any instant.
    with events_path.open("wb") as events_out:
        daemon = children.start(
            f"probed ({label})",
            [probed, "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=events_out,
            env=daemon_env(),
        )
    events = EventCounter(events_path)
    metrics_url = f"http://{HOST}:{port}/metrics"
    timeout = aiohttp.ClientTimeout(total=120)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, Watch(daemon, events) as watch:
            try:
                startup = await wait_ready(http, metrics_url, daemon)
            except Unmeasurable as exc:
                raise Unmeasurable(f"{exc}\n{tail(events_path)}") from None
            await watch.sleep(warmup)

            t0, cpu0, runs0 = time.monotonic(), cpu_times(daemon), events.update()
            srv0 = cpu_seconds(server)
            first = await scrape(http, metrics_url) if scrape_in_window else EMPTY
            scrape_cpu = cpu_seconds(daemon) - cpu0.total
            await watch.sleep(window - (time.monotonic() - t0))
            t1, cpu1, runs1 = time.monotonic(), cpu_times(daemon), events.update()
            srv1 = cpu_seconds(server)

            last = await scrape(http, metrics_url)
            if not scrape_in_window:
                scrape_cpu = cpu_seconds(daemon) - cpu1.total
            watch.sample()
            hwm = status_kb(daemon, "VmHWM")
            max_rss = watch.max_rss_kb
    finally:
        events.close()
        children.stop(daemon)
    return DaemonRun(
        checks=checks,
        interval=interval,
        warmup=warmup,
        window=t1 - t0,
        cpu=(cpu1 - cpu0).total,
        cpu_system=(cpu1 - cpu0).system,
        runs=runs1 - runs0,
        scraped_runs=last.total_runs - first.total_runs,
        scraped_span=last.at - first.at if scrape_in_window else last.at - t0,
        outcomes=last.runs,
        skipped=last.skipped,
        lateness=lateness_between(first, last),
        max_rss_kb=max_rss,
        hwm_kb=hwm,
        scrape=last,
        scrape_cpu=scrape_cpu,
        startup=startup,
        server_cpu=srv1 - srv0,
    )


# --- the blackbox_exporter half of (B) ---------------------------------------------------


class Driver:
    """GET /probe at a fixed rate, over keep-alive connections as Prometheus scrapes.

    A 2 ms ticker releases as many requests as the clock says are due, so the average
    rate is exact whatever the sleep jitter, and a slow answer does not hold back the
    next request (they overlap, as independent scrapes would).
    """

    def __init__(self, http: aiohttp.ClientSession, url: URL, rate: float) -> None:
        self._http = http
        self._url = url
        self._rate = rate
        self._stop = False
        self._inflight: set[asyncio.Task[None]] = set()
        self.done = 0  # answered 200 with probe_success 1
        self.failed = 0
        self.first_failure = ""
        self.answer_seconds = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        issued = 0
        while not self._stop:
            due = int((loop.time() - start) * self._rate) + 1
            for _ in range(due - issued):
                task = asyncio.create_task(self._one())
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            issued = max(issued, due)
            await asyncio.sleep(DRIVER_TICK_S)

    async def stop(self) -> None:
        self._stop = True
        await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _one(self) -> None:
        sent = time.monotonic()
        try:
            async with self._http.get(self._url) as response:
                body = await response.read()
            # The exporter answers 200 also for a failed probe; the verdict is in the body.
            ok = response.status == 200 and b"\nprobe_success 1\n" in body
            why = f"status {response.status}, probe_success not 1"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            ok, why = False, f"{type(exc).__name__}: {exc}"
        self.answer_seconds += time.monotonic() - sent
        if ok:
            self.done += 1
        else:
            self.failed += 1
            self.first_failure = self.first_failure or why


@dataclass(frozen=True)
class ExporterRun:
    version: str
    warmup: float
    window: float
    cpu: float
    cpu_system: float
    probes: int
    failed: int
    mean_answer_ms: float
    max_rss_kb: int
    server_cpu: float
    driver_cpu: float  # the bench process itself: not counted, shown for scale


def exporter_version(exporter: str) -> str:
    out = subprocess.run(
        [exporter, "--version"], capture_output=True, text=True, check=False, timeout=10
    )
    match = re.search(r"version (\S+)", out.stdout + out.stderr)
    return match[1] if match else "unknown version"


async def measure_exporter(
    *,
    exporter: str,
    version: str,
    rate: float,
    warmup: float,
    window: float,
    server: Child,
    target_port: int,
    children: Children,
    work: Path,
) -> ExporterRun:
    port = free_port()
    log_path = work / "blackbox.log"
    with log_path.open("wb") as log:
        child = children.start(
            "blackbox_exporter",
            [
                exporter,
                f"--config.file={HERE / 'blackbox.yml'}",
                f"--web.listen-address={HOST}:{port}",
            ],
            stdout=log,
            stderr=log,
        )
    url = URL(f"http://{HOST}:{port}/probe").with_query(
        module="http_2xx", target=f"http://{HOST}:{target_port}/x"
    )
    # Keep-alive to the exporter, like Prometheus; the exporter's own GET to the target
    # is a fresh connection each time, as ours is.
    connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as http,
            Watch(child) as watch,
        ):
            try:
                await wait_ready(http, f"http://{HOST}:{port}/metrics", child)
            except Unmeasurable as exc:
                raise Unmeasurable(f"{exc}\n{tail(log_path)}") from None
            driver = Driver(http, url, rate)
            driving = asyncio.create_task(driver.run())
            try:
                # Warm-up: connections opened, the Go runtime's heap and GC pacing settled.
                await watch.sleep(warmup)
                t0, cpu0, done0 = time.monotonic(), cpu_times(child), driver.done
                srv0, own0, answered0 = (
                    cpu_seconds(server),
                    time.process_time(),
                    driver.answer_seconds,
                )
                await watch.sleep(window)
                t1, cpu1, done1 = time.monotonic(), cpu_times(child), driver.done
                srv1, own1, answered1 = (
                    cpu_seconds(server),
                    time.process_time(),
                    driver.answer_seconds,
                )
            finally:
                await driver.stop()
                driving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await driving
            max_rss = watch.max_rss_kb
    finally:
        children.stop(child)
    if driver.failed:
        raise Unmeasurable(
            f"{driver.failed} of {driver.done + driver.failed} exporter probes failed "
            f"(first: {driver.first_failure}); its CPU per probe would mean nothing"
        )
    probes = done1 - done0
    return ExporterRun(
        version=version,
        warmup=warmup,
        window=t1 - t0,
        cpu=(cpu1 - cpu0).total,
        cpu_system=(cpu1 - cpu0).system,
        probes=probes,
        failed=driver.failed,
        mean_answer_ms=1000 * (answered1 - answered0) / max(probes, 1),
        max_rss_kb=max_rss,
        server_cpu=srv1 - srv0,
        driver_cpu=own1 - own0,
    )


# --- report -----------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def mb(kb: int) -> float:
    return kb * 1024 / 1e6


class Table:
    def __init__(self, *headers: str, widths: Sequence[int]) -> None:
        self._widths = widths
        self.row(*headers)

    def row(self, *cells: str) -> None:
        first, *rest = cells
        line = f"  {first:<{self._widths[0]}}"
        line += "".join(f"{c:>{w}}" for c, w in zip(rest, self._widths[1:], strict=True))
        print(line.rstrip())


def report_a(run: DaemonRun, concurrency: int) -> bool:
    late = run.lateness
    ok_late = late.p99_bound <= LATENESS_P99_MAX_S
    ok_runs = run.runs >= RUNS_DONE_MIN * run.due
    ok_up = run.not_up == 0
    peak_kb = max(run.max_rss_kb, run.hwm_kb)
    ok_rss = mb(peak_kb) < RSS_MAX_MB
    share = run.cpu / run.window
    ok_cpu = share < CPU_MAX_SHARE
    print(
        f"\n(A) {run.checks:,} http checks every {run.interval:g} s, concurrency {concurrency}, "
        f"one GET per run on a fresh connection\n"
        f"    warm-up {run.warmup:g} s (the first interval: the splay spreads first runs over "
        f"it), then a {run.window:.1f} s window\n"
        f"    the window holds one /metrics scrape, as Prometheus at its default 1m "
        f"scrape_interval would make\n"
    )
    table = Table("figure", "measured", "target", "", widths=(40, 26, 14, 6))
    p99 = f"<= {late.p99_bound:g} s" if math.isfinite(late.p99_bound) else "> 10 s"
    table.row(
        "schedule lateness p99 (bucket bound)",
        p99,
        f"<= {LATENESS_P99_MAX_S:g} s",
        verdict(ok_late),
    )
    table.row(
        f"  runs started within {LATENESS_P99_MAX_S:g} s of plan",
        f"{late.under_target:.2%} of {late.count:,.0f}",
        ">= 99%",
        "",
    )
    table.row(
        "runs finished in the window",
        f"{run.runs:,} of {run.due:,.0f} due",
        f">= {RUNS_DONE_MIN:.0%}",
        verdict(ok_runs),
    )
    table.row("runs up (none failed), whole run", f"{run.not_up:,.0f} not up", "0", verdict(ok_up))
    table.row(
        "resident memory, max of 1 s samples",
        f"{mb(run.max_rss_kb):.1f} MB",
        f"< {RSS_MAX_MB:g} MB",
        "",
    )
    table.row(
        "resident memory, VmHWM (peak, life)",
        f"{mb(run.hwm_kb):.1f} MB",
        f"< {RSS_MAX_MB:g} MB",
        verdict(ok_rss),
    )
    table.row(
        "CPU, utime+stime / window",
        f"{share:.1%} of one core",
        f"< {CPU_MAX_SHARE:.0%}",
        verdict(ok_cpu),
    )
    s = run.scrape
    print(
        f"\n  info: CPU {run.cpu:.2f} s in {run.window:.1f} s ({run.cpu_system:.2f} s of it in "
        f"the kernel), of which the scrape about "
        f"{run.scrape_cpu:.2f} s ({(run.cpu - run.scrape_cpu) / run.window:.1%} of a core "
        f"without it)\n"
        f"  info: /metrics is {s.size / 1e6:.1f} MB and took {s.took:.2f} s to fetch; "
        f"its render runs in the daemon, beside the checks\n"
        f"  info: scraped hotline_probe_checks_total: {run.scraped_runs:,.0f} runs in "
        f"{run.scraped_span:.1f} s between scrapes ({run.scraped_runs / run.scraped_span:.1f}/s, "
        f"due {run.checks / run.interval:.1f}/s); runs skipped (overlap), life: "
        f"{run.skipped:,.0f}\n"
        f"  info: start-up to first /metrics answer {run.startup:.1f} s; target server "
        f"{run.server_cpu / run.window:.1%} of a core in the window (far from its limit)"
    )
    return ok_late and ok_runs and ok_up and ok_rss and ok_cpu


def report_b(ours: DaemonRun, theirs: ExporterRun, rate: float) -> bool:
    ours_us = 1e6 * ours.cpu / ours.runs
    theirs_us = 1e6 * theirs.cpu / theirs.probes
    ratio = ours_us / theirs_us
    ok_ratio = ratio <= CPU_PER_PROBE_MAX_RATIO
    ours_rate, theirs_rate = ours.runs / ours.window, theirs.probes / theirs.window
    print(
        f"\n(B) CPU per probe at a steady {rate:g} probes/s, measured one after the other, "
        f"the target server shared\n"
        f"    probed: {ours.checks:,} checks every {ours.interval:g} s, warm-up {ours.warmup:g} s "
        f"(one interval), window {ours.window:.1f} s, no /metrics scrape in it\n"
        f"    blackbox_exporter {theirs.version}: GET /probe?module=http_2xx at {rate:g}/s from "
        f"the bench, keep-alive,\n"
        f"      every answer checked for probe_success 1; warm-up {theirs.warmup:g} s, window "
        f"{theirs.window:.1f} s\n"
    )
    table = Table(
        "process",
        "probes",
        "per s",
        "CPU s",
        "of it sys",
        "of a core",
        "CPU/probe",
        widths=(20, 10, 9, 8, 11, 11, 13),
    )
    table.row(
        "probed",
        f"{ours.runs:,}",
        f"{ours_rate:.1f}",
        f"{ours.cpu:.2f}",
        f"{ours.cpu_system:.2f}",
        f"{ours.cpu / ours.window:.1%}",
        f"{ours_us:.0f} us",
    )
    table.row(
        "blackbox_exporter",
        f"{theirs.probes:,}",
        f"{theirs_rate:.1f}",
        f"{theirs.cpu:.2f}",
        f"{theirs.cpu_system:.2f}",
        f"{theirs.cpu / theirs.window:.1%}",
        f"{theirs_us:.0f} us",
    )
    # The comparison is "at a steady rate": a daemon that falls behind it fails here,
    # while a driver that cannot hold it makes the exporter's figure meaningless.
    ok_rate = ours.runs >= RUNS_DONE_MIN * ours.due
    ok_up = ours.not_up == 0
    print()
    table = Table("figure", "measured", "target", "", widths=(44, 24, 12, 6))
    table.row(
        "CPU per probe, probed / blackbox_exporter",
        f"{ours_us:.0f} / {theirs_us:.0f} us = {ratio:.2f}",
        f"<= {CPU_PER_PROBE_MAX_RATIO:g}",
        verdict(ok_ratio),
    )
    table.row(
        "probed held the rate (runs finished/due)",
        f"{ours.runs:,} / {ours.due:,.0f}",
        f">= {RUNS_DONE_MIN:.0%}",
        verdict(ok_rate),
    )
    table.row(
        "probed runs up (none failed), whole run", f"{ours.not_up:,.0f} not up", "0", verdict(ok_up)
    )
    print(
        f"\n  Counted: each process's own utime+stime (all threads) from /proc over its window. "
        f"The driver's\n"
        f"  CPU is counted on neither side: probed schedules itself, blackbox_exporter is "
        f"driven from\n"
        f"  outside as Prometheus drives it; so each figure is the CPU per probe of that "
        f"process alone.\n"
        f"  blackbox_exporter's figure includes serving the /probe request and rendering "
        f"its answer;\n"
        f"  probed's includes scheduling, state, metrics updates and one JSON event per run.\n"
        f"  info: driver (this process, not counted) {theirs.driver_cpu:.2f} s CPU; exporter "
        f"answered in {theirs.mean_answer_ms:.2f} ms on average, peak RSS "
        f"{mb(theirs.max_rss_kb):.0f} MB\n"
        f"  info: probed: {ours.skipped:,.0f} runs skipped (overlap), lateness p99 over its "
        f"life <= {ours.lateness.p99_bound:g} s, peak RSS {mb(ours.hwm_kb):.0f} MB;\n"
        f"        one /metrics scrape of {ours.checks:,} checks (after the window) costs it "
        f"about {ours.scrape_cpu:.2f} s CPU\n"
        f"  info: target server {ours.server_cpu / ours.window:.1%} / "
        f"{theirs.server_cpu / theirs.window:.1%} of a core in the two windows"
    )
    if abs(theirs_rate / rate - 1) > RATE_TOLERANCE:
        raise Unmeasurable(f"the driver held {theirs_rate:.1f} probes/s, not {rate:g}")
    return ok_ratio and ok_rate and ok_up


# --- main -------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)?")
_UNIT: dict[str | None, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


def duration(text: str) -> float:
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (500ms, 20s, 1m, 30)")
    return float(match[1]) * _UNIT[match[2]]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        description=doc.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--part", choices=("a", "b", "all"), default="all")
    a = parser.add_argument_group("(A) keeping up with many checks")
    a.add_argument("--checks", type=int, default=10_000)
    a.add_argument("--interval", type=duration, default=60.0, help="of every check")
    a.add_argument("--warmup", type=duration, help="before the window (default: one interval)")
    a.add_argument("--window", type=duration, default=60.0, help="measured span")
    a.add_argument("--concurrency", type=int, default=500, help="the config's concurrency")
    b = parser.add_argument_group("(B) CPU per probe against blackbox_exporter")
    b.add_argument("--rate-checks", type=int, default=5_000)
    b.add_argument("--rate-interval", type=duration, default=10.0, help="rate = checks/interval")
    b.add_argument("--rate-warmup", type=duration, help="probed's (default: one interval)")
    b.add_argument("--rate-window", type=duration, default=20.0, help="each process's window")
    b.add_argument("--exporter-warmup", type=duration, default=3.0)
    b.add_argument("--exporter", default=BLACKBOX, help="blackbox_exporter binary")
    return parser.parse_args(argv)


def revision() -> str:
    """The commit measured, and whether the tree differs from it: figures age with code."""
    root = str(HERE.parent)
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown revision"
    return f"commit {head}" + (" with local changes" if dirty else "")


def find_probed() -> str:
    # The console script beside the interpreter running the bench: the venv's install.
    beside = Path(sys.executable).parent / "probed"
    if not beside.exists():
        raise Unmeasurable(f"no probed beside {sys.executable}; pip install -e . first")
    return str(beside)


async def bench(args: argparse.Namespace, children: Children, work: Path) -> bool:
    # SIGTERM ends the bench like Ctrl-C does: the finally blocks stop every child.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)

    probed = find_probed()
    run_b = args.part in ("b", "all")
    version = ""
    if run_b:
        if not os.access(args.exporter, os.X_OK):
            raise Unmeasurable(
                f"{args.exporter} is missing: run "
                "`bash scripts/install-test-deps.sh --bench` as root"
            )
        version = exporter_version(args.exporter)
    server, target_port = start_target(children)
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(
        f"probed bench: {revision()}; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"driver loop {loop_name}\n  target bench/server.py on {HOST}:{target_port}; only "
        f"{HOST} is used",
        flush=True,
    )
    ok = True
    if args.part in ("a", "all"):
        print(
            f"(A) running: warm-up {args.warmup or args.interval:g} s + window {args.window:g} s",
            flush=True,
        )
        a = await measure_daemon(
            label="a",
            probed=probed,
            checks=args.checks,
            interval=args.interval,
            warmup=args.warmup or args.interval,
            window=args.window,
            concurrency=args.concurrency,
            scrape_in_window=True,
            server=server,
            target_port=target_port,
            children=children,
            work=work,
        )
        ok &= report_a(a, args.concurrency)
    if run_b:
        rate = args.rate_checks / args.rate_interval
        print(
            f"\n(B) running: probed {args.rate_warmup or args.rate_interval:g} + "
            f"{args.rate_window:g} s, then blackbox_exporter {args.exporter_warmup:g} + "
            f"{args.rate_window:g} s",
            flush=True,
        )
        ours = await measure_daemon(
            label="b",
            probed=probed,
            checks=args.rate_checks,
            interval=args.rate_interval,
            warmup=args.rate_warmup or args.rate_interval,
            window=args.rate_window,
            concurrency=args.concurrency,
            scrape_in_window=False,
            server=server,
            target_port=target_port,
            children=children,
            work=work,
        )
        theirs = await measure_exporter(
            exporter=args.exporter,
            version=version,
            rate=rate,
            warmup=args.exporter_warmup,
            window=args.rate_window,
            server=server,
            target_port=target_port,
            children=children,
            work=work,
        )
        ok &= report_b(ours, theirs, rate)
    print(f"\noverall: {verdict(ok)}")
    return ok


def run(coro_factory: Callable[[], Any]) -> bool:
    try:
        import uvloop
    except ImportError:  # the driver then needs more CPU, which is not counted anyway
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return bool(runner.run(coro_factory()))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    children = Children()
    try:
        with tempfile.TemporaryDirectory(prefix="probed-bench-") as tmp:
            try:
                ok = run(lambda: bench(args, children, Path(tmp)))
            finally:
                children.stop_all()  # before the directory with their files goes
    except Unmeasurable as exc:
        print(f"\nbench: could not measure: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\nbench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
