"""Syslog to a collector: RFC 5424 over UDP, TCP with octet counting (RFC 6587), TLS
(RFC 5425), or RELP (acknowledged).

``submit`` only queues; one task per output owns the connection. Records are always in
one order, held in these places, oldest first:

    retry     a batch that was on its way when the connection broke
    spool     on disk (``spool_dir``), then its memory overflow (disk full, no spool_dir)
    queue     in memory, while the collector keeps up

While the collector keeps up, new records join the queue. When it is unreachable or
slower than the producer (the queue is full), the queue moves into the spool and every
new record follows it there ("spooling"), so order is kept; after reconnecting the task
sends the retry batch, replays the spool, and only then returns to the queue. A slow or
dead collector costs the caller a file append, never a wait.

Plain TCP syslog has no acknowledgement: records written in the moment between the
collector's last read and its closing the connection, or into the buffers of a collector
that stalls, are lost with the connection (docs/events.md). RELP has none of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections import deque
from collections.abc import Mapping
from typing import Any

from config.common import split_address
from config.outputs import SyslogOutput
from events.ecs import observer
from events.formats import Rfc5424
from events.outputs.base import Output, Problem
from events.outputs.relp import RelpError, RelpSession
from events.spool import DiskSpool, MemorySpool, SpoolError, Token

_BATCH_RECORDS = 512
_BATCH_BYTES = 256 * 1024
_QUEUE_BYTES = 16 * 1024 * 1024  # the memory queue's bound besides queue_events
_UDP_MAX = 65_000  # an IPv4 datagram holds 65,507 bytes of payload
_FIRST_BACKOFF = 0.5
_LINGER = 0.005


class _PeerClosed(ConnectionError):
    pass


class SyslogSink(Output):
    kind = "syslog"

    def __init__(self, name: str, config: SyslogOutput, *, hostname: str) -> None:
        super().__init__(name)
        self.config = config
        self.format = Rfc5424(config, hostname or observer()["hostname"])
        self.host, self.port = split_address(config.address)
        self.target = f"{config.transport}://{config.address}"
        self.streaming = config.transport != "udp"
        self.needs_json = config.format == "json"
        self._queue: deque[bytes] = deque()
        self._queue_bytes = 0
        self._retry: list[bytes] = []
        self._overflow = MemorySpool(config.queue_events, _QUEUE_BYTES, low=is_diagnostic)
        self._disk: DiskSpool | None = None
        self._startup_problem: str | None = None
        self._open_disk()
        self._spooling = True  # until connected with an empty spool
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._peer_closed = False
        self._writer: asyncio.StreamWriter | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._peek: socket.socket | None = None
        self._relp: RelpSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._udp: asyncio.DatagramTransport | None = None

    # --- the caller's side: never blocks, never raises ----------------------------

    def submit(self, doc: Mapping[str, Any], line: str) -> None:
        frame = self.format.frame(doc, line, self.scrub)
        if not self.streaming:
            self._send_datagram(frame)
            return
        record = b"%d %b" % (len(frame), frame)
        if not self._spooling:
            if len(self._queue) < self.config.queue_events and self._queue_bytes < _QUEUE_BYTES:
                self._queue.append(record)
                self._queue_bytes += len(record)
                self._wake.set()
                return
            self._start_spooling()  # the collector takes less than we produce
        self._park(record)

    def _start_spooling(self) -> None:
        self._spooling = True
        queued, self._queue, self._queue_bytes = self._queue, deque(), 0
        for record in queued:
            self._park(record)

    def _park(self, record: bytes) -> None:
        """Into the spool, behind everything older."""
        self._wake.set()
        if self._disk is not None and self._overflow.empty:
            before = self._disk.dropped
            try:
                self._disk.append(record)
            except SpoolError as exc:
                self.failed(f"{exc}; events wait in memory", level="error")
            else:
                self.counts["spooled"] += 1
                if self._disk.dropped > before:
                    self.dropped(
                        self._disk.dropped - before,
                        f"spool {self._disk.directory} is full "
                        f"({int(self.config.spool_max_bytes)} bytes): diagnostics were "
                        "dropped first, then the oldest events",
                    )
                if self._disk.cursor_problem:
                    self.failed(f"spool {self._disk.directory}: {self._disk.cursor_problem}")
                return
        before = self._overflow.dropped
        self._overflow.append(record)
        if not self._startup_problem:  # memory the spool_dir should have been: not kept
            self.counts["spooled"] += 1
        if self._overflow.dropped > before:
            self.dropped(
                self._overflow.dropped - before,
                f"more events wait in memory for {self.target} than it may hold "
                f"({self.config.queue_events}): diagnostics were dropped first, then the oldest "
                "events",
            )

    def _send_datagram(self, frame: bytes) -> None:
        if self._udp is None:
            self.dropped(1, f"no socket for {self.target} yet")
            return
        if len(frame) > _UDP_MAX:
            self.dropped(1, f"an event of {len(frame)} bytes does not fit a UDP datagram")
            return
        self._udp.sendto(frame)
        self.counts["sent"] += 1

    # --- the connection's side ----------------------------------------------------

    def _open_disk(self) -> None:
        """Open the spool_dir; when it is unusable, events still flow and wait in memory,
        where a stop loses them: they count as ``dropped`` then, never as ``spooled``."""
        if not self.streaming or self.config.spool_dir is None or self._disk is not None:
            return
        try:
            self._disk = DiskSpool(
                self.config.spool_dir, int(self.config.spool_max_bytes), low=is_diagnostic
            )
        except SpoolError as exc:
            self._startup_problem = f"{exc}; events wait in memory instead and are lost at a stop"
        else:
            self._startup_problem = None

    def kept(self) -> None:
        """A reload tries an unusable spool_dir again, and reports it if it still is."""
        if self._startup_problem:
            self._open_disk()
        if self._startup_problem:
            self.problems(Problem(self.name, "output-failed", self._startup_problem, "error"))

    async def start(self) -> None:
        if self._startup_problem:
            self.failed(self._startup_problem, level="error")
        if not self.streaming:
            await self._connect()  # a datagram socket is ready at once, or never
        self._task = asyncio.create_task(self._run(), name=f"output-{self.name}")

    def _pending(self) -> bool:
        return bool(self._retry or self._queue) or not self._spool_empty()

    def _spool_empty(self) -> bool:
        return (self._disk is None or self._disk.empty) and self._overflow.empty

    async def _run(self) -> None:
        backoff = _FIRST_BACKOFF
        while not self._closed.is_set():
            try:
                connected = self._udp is not None or await self._connect()
            except Exception as exc:  # a bug or an odd OS error must not end the output
                self.failed(f"internal error while connecting: {exc!r}", level="error")
                connected = False
            if not connected:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), backoff)
                backoff = min(backoff * 2, self.config.reconnect_max)
                continue
            backoff = _FIRST_BACKOFF
            if not self.streaming:
                await self._closed.wait()
                return
            try:
                while not self._closed.is_set():
                    self._wake.clear()
                    await self._flush()
                    if self._peer_closed:
                        raise _PeerClosed("the collector closed the connection")
                    if not self._pending():
                        await self._wake.wait()
                        # Let a few milliseconds of events gather: one write and one
                        # syscall for many of them, where a SIEM does not notice 5 ms.
                        await asyncio.sleep(_LINGER)
            except (OSError, TimeoutError) as exc:
                self._disconnect(_describe(exc, self.config.send_timeout))
            except Exception as exc:
                self._disconnect(f"internal error: {exc!r}")

    async def _connect(self) -> bool:
        try:
            if not self.streaming:
                loop = asyncio.get_running_loop()
                transport, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, remote_addr=(self.host, self.port)
                )
                self._udp = transport
                return True
            context: ssl.SSLContext | None = None
            server_name: str | None = None
            if self.config.transport == "tls":
                # Built for every connection: a renewed CA or client certificate on disk
                # is picked up at the next reconnect.
                context = _client_context(self.config)
                tls = self.config.tls
                server_name = (tls.server_name if tls else None) or self.host
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host, self.port, ssl=context, server_hostname=server_name, limit=1024
                ),
                self.config.connect_timeout,
            )
        except (OSError, TimeoutError, ValueError) as exc:
            why = _describe(exc, self.config.connect_timeout)
            self.failed(f"cannot reach {self.target}: {why}")
            return False
        if self.config.transport == "relp":
            session = RelpSession(reader, writer, self.config.send_timeout)
            try:
                await session.open()
            except (OSError, TimeoutError) as exc:
                session.abort()
                self.failed(f"cannot open RELP with {self.target}: {_describe(exc, 0)}")
                return False
            except BaseException:  # cancelled by close(): the connection is not ours yet
                session.abort()
                raise
            self._relp = session
            self._watch_task = asyncio.create_task(self._watch_relp(session))
        else:
            self._watch_task = asyncio.create_task(self._watch(reader))
        self._writer = writer
        self._peer_closed = False
        raw = writer.get_extra_info("socket")
        # A duplicate of the connection's descriptor, for peeking (asyncio's own socket
        # object refuses recv); it is the same connection, closed with it.
        self._peek = socket.socket(fileno=os.dup(raw.fileno())) if raw is not None else None
        return True

    async def _watch(self, reader: asyncio.StreamReader) -> None:
        """A syslog collector sends nothing: its EOF or reset is how we learn it left."""
        with contextlib.suppress(OSError):
            while await reader.read(4096):
                pass
        self._peer_closed = True
        self._wake.set()

    async def _watch_relp(self, session: RelpSession) -> None:
        await session.closed.wait()
        self._peer_closed = True
        self._wake.set()

    async def _flush(self) -> None:
        """Retry batch, then the spool (disk, then memory), then the queue."""
        if self._retry:
            batch, self._retry = self._retry, []
            await self._send(batch, "sent", lambda done: None, retry=True)
        while True:
            stage: DiskSpool | MemorySpool | None = None
            if self._disk is not None and not self._disk.empty:
                stage = self._disk
            elif not self._overflow.empty:
                stage = self._overflow
            if stage is None:
                break
            records, token = stage.read_batch(_BATCH_BYTES)
            await self._send(records, "replayed", _committer(stage, records, token))
        if self._spooling:
            self._spooling = False  # no await since the spool was found empty
            self.recovered(f"sending to {self.target} again")
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(_BATCH_RECORDS, len(self._queue)))]
            self._queue_bytes -= sum(len(r) for r in batch)
            await self._send(batch, "sent", lambda done: None, retry=True)

    async def _send(
        self, records: list[bytes], outcome: str, commit: Any, *, retry: bool = False
    ) -> None:
        """Write records; count and commit what the collector took. What it did not take
        goes back: to the retry batch (from memory) or stays in the spool (uncommitted)."""
        session = self._relp
        try:
            refused = await self._write(records)
        except BaseException as exc:
            done = exc.acked if isinstance(exc, RelpError) else session.progress if session else 0
            if done:
                commit(done)
                self.counts[outcome] += done
            if retry:
                self._retry = records[done:] + self._retry
            raise
        commit(len(records))
        self.counts[outcome] += len(records) - refused
        if refused:
            why = session.refusal if session else ""
            self.dropped(refused, f"{self.target} refused {refused} events: {why}")

    async def _write(self, records: list[bytes]) -> int:
        """Put records on the wire; returns how many the collector refused (RELP)."""
        if self._peer_closed or self._writer is None or self._closed_under_us():
            raise _PeerClosed("the collector closed the connection")
        if self._relp is not None:
            # RELP carries the bare syslog message: drop the octet count kept in the spool.
            return await self._relp.send([r[r.index(b" ") + 1 :] for r in records])
        self._writer.write(b"".join(records))
        if self._writer.transport.get_write_buffer_size():  # the kernel did not take it all
            async with asyncio.timeout(self.config.send_timeout):
                await self._writer.drain()
        return 0

    def _closed_under_us(self) -> bool:
        """Has the collector closed, though the loop has not told our watcher yet?

        A peek at the socket right before writing: a FIN already here means whatever we
        write now would be lost. For TLS this sees only a bare FIN (a close_notify alert
        is data), which is what a stopping collector sends last."""
        if self._peek is None or self._relp is not None:  # RELP's answers are data
            return False
        try:
            return self._peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _disconnect(self, why: str | None) -> None:
        """Drop the connection; ``why`` is reported (None: we are stopping)."""
        writer, self._writer = self._writer, None
        if self._relp is not None:
            self._relp.abort()
            self._relp = None
        if self._peek is not None:
            self._peek.close()
            self._peek = None
        if writer is not None:
            writer.transport.abort()  # a stalled peer would make a clean close wait
        if self._watch_task is not None:
            self._watch_task.cancel()
            self._watch_task = None
        if not self._spooling:
            self._start_spooling()
        if why is not None:
            self.failed(f"lost {self.target}: {why}")

    async def close(self, grace: float = 2.0) -> None:
        """Send what waits if the collector takes it within ``grace`` seconds; whatever
        is left goes to the spool, where the next start finds it, in order."""
        if self._task is not None and self.streaming:
            loop = asyncio.get_running_loop()
            until = loop.time() + grace
            while self._pending() and self._writer is not None and loop.time() < until:
                self._wake.set()
                await asyncio.sleep(0.01)
        self._closed.set()
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._relp is not None:
            await self._relp.close()  # says goodbye; no answers are pending any more
        self._disconnect(None)
        if self._udp is not None:
            self._udp.close()
        self._keep_unsent()

    def _keep_unsent(self) -> None:
        """The stopping daemon's last events: retry, then overflow, then queue, after
        what the disk already holds, in that order (see the module docstring)."""
        memory: list[bytes] = []
        while not self._overflow.empty:
            records, token = self._overflow.read_batch()
            self._overflow.commit(token)
            memory += records
        memory += self._queue
        self._queue.clear()
        retry, self._retry = self._retry, []
        if self._disk is None:
            if retry or memory:
                where = (
                    f"an unusable spool_dir ({self._startup_problem.split('; ')[0]})"
                    if self._startup_problem
                    else "no spool_dir"
                )
                self.dropped(
                    len(retry) + len(memory),
                    f"stopped with events unsent to {self.target} and {where} to keep them",
                )
            return
        try:
            self._disk.prepend(retry)
            for record in memory:
                self._disk.append(record)
        except SpoolError as exc:
            self.dropped(len(retry) + len(memory), f"stopped and could not keep them: {exc}")
        self._disk.close()

    def gauges(self) -> dict[str, float]:
        held = self._disk.size if self._disk else 0
        return {
            "queue_events": float(len(self._queue)),
            "spool_bytes": float(held + self._overflow.size),
        }


# What a full spool keeps longest: check results, state changes and the daemon's life.
# Everything else (refused heartbeats, outputs' and notifications' trouble, logs) is a
# diagnostic, dropped first (events.spool).
_VALUABLE = frozenset(
    {
        b"check", b"attempt", b"failover", b"failback", b"state-change",
        b"node-state-change", b"flapping-start", b"flapping-end", b"daemon-start",
        b"daemon-stop", b"daemon-reload", b"daemon-reload-failed",
    }
)  # fmt: skip


def is_diagnostic(record: bytes) -> bool:
    """Is a spooled record (``LEN <PRI>1 TIMESTAMP HOST APP PROCID MSGID ...``, MSGID
    being event.action) of low value? Read from the bytes, so also after a restart."""
    fields = record.split(b" ", 7)
    return len(fields) < 8 or fields[6] not in _VALUABLE


def _committer(stage: DiskSpool | MemorySpool, records: list[bytes], token: Token) -> Any:
    """Commit the first ``done`` records of a batch read from a spool stage."""

    def commit(done: int) -> None:
        stage.commit(token if done == len(records) else stage.token_after(records[:done], token))

    return commit


def _client_context(config: SyslogOutput) -> ssl.SSLContext:
    tls = config.tls
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls and tls.ca_file else None)
    if tls and tls.cert_file:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    if tls and not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no progress within {timeout:g}s (the collector accepts but does not read?)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio's "Connect call failed (...)" says less
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
