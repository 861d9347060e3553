"""Syslog to a collector: RFC 5424 over UDP, TCP with octet counting (RFC 6587), or TLS
(RFC 5425).

``submit`` only queues; one task per output owns the connection. While the collector is
reachable, records go from a memory queue to the socket. When it is not (refused, reset,
closed, a stalled write, a bad certificate), the queue moves to the spool and every new
record follows it there, so order is kept; once reconnected the task replays the spool
and only then returns to the memory queue. A slow or dead collector therefore costs the
probes nothing but a file append.

Plain TCP syslog has no acknowledgement: records written in the moment between the
collector's last read and its closing the connection are lost, and nothing on our side
can know which (docs/events.md says so). The task watches for the collector's close
and stops writing as soon as it sees it, which keeps that window to milliseconds.
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

from config.outputs import SyslogOutput
from events.ecs import observer
from events.formats import Rfc5424
from events.outputs.base import Output
from events.outputs.relp import RelpError, RelpSession
from events.spool import DiskSpool, MemorySpool, SpoolError

_BATCH_RECORDS = 512
_BATCH_BYTES = 256 * 1024
_UDP_MAX = 65_000  # an IPv4 datagram holds 65,507 bytes of payload
_FIRST_BACKOFF = 0.5


class _PeerClosed(ConnectionError):
    pass


class SyslogSink(Output):
    kind = "syslog"

    def __init__(self, name: str, config: SyslogOutput, *, hostname: str) -> None:
        super().__init__(name)
        from config.models import split_address  # config.models imports config.outputs

        self.config = config
        self.format = Rfc5424(config, hostname or observer()["hostname"])
        self.host, self.port = split_address(config.address)
        self.target = f"{config.transport}://{config.address}"
        self.streaming = config.transport != "udp"
        self._queue: deque[bytes] = deque()
        self._overflow = MemorySpool(config.queue_events)
        self._disk: DiskSpool | None = None
        self._startup_problem: str | None = None
        if self.streaming and config.spool_dir is not None:
            try:
                self._disk = DiskSpool(config.spool_dir, int(config.spool_max_bytes))
            except SpoolError as exc:  # events still flow, and wait in memory instead
                self._startup_problem = f"{exc}; events wait in memory instead"
        # Until connected and the spool is empty, records are parked, not queued.
        self._spooling = True
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._peer_closed = False
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
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
        full = len(self._queue) >= self.config.queue_events
        if self._spooling or full or not self._overflow.empty:
            if not self._spooling:
                # The collector takes less than we produce: park the queue, keep order.
                self._start_spooling()
            self._park(record)
        else:
            self._queue.append(record)
            self._wake.set()

    def _park(self, record: bytes) -> None:
        if self._disk is not None and self._overflow.empty:
            try:
                before = self._disk.dropped
                self._disk.append(record)
                self.counts["spooled"] += 1
                if self._disk.dropped > before:
                    self.dropped(
                        self._disk.dropped - before,
                        f"spool {self._disk.directory} is full "
                        f"({int(self.config.spool_max_bytes)} bytes): the oldest were dropped",
                    )
                return
            except SpoolError as exc:
                self.failed(f"{exc}; events wait in memory", level="error")
        before = self._overflow.dropped
        self._overflow.append(record)
        self.counts["spooled"] += 1
        if self._overflow.dropped > before:
            self.dropped(
                self._overflow.dropped - before,
                f"{self.config.queue_events} events are waiting in memory for "
                f"{self.target}: the oldest were dropped",
            )

    def _start_spooling(self) -> None:
        self._spooling = True
        queued, self._queue = self._queue, deque()
        for record in queued:
            self._park(record)

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

    async def start(self) -> None:
        if self._startup_problem:
            self.failed(self._startup_problem, level="error")
        if not self.streaming:
            await self._connect()  # a datagram socket is ready at once, or never
        self._task = asyncio.create_task(self._run(), name=f"output-{self.name}")

    async def _run(self) -> None:
        backoff = _FIRST_BACKOFF
        while not self._closed.is_set():
            if self._udp is None and not await self._connect():
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
                    await self._flush()
                    self._wake.clear()
                    if self._peer_closed:
                        raise _PeerClosed("the collector closed the connection")
                    if not self._queue:
                        await self._wake.wait()
            except (OSError, TimeoutError) as exc:
                self._disconnect(_describe(exc, self.config.send_timeout))

    async def _connect(self) -> bool:
        try:
            if not self.streaming:
                loop = asyncio.get_running_loop()
                transport, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, remote_addr=(self.host, self.port)
                )
                self._udp = transport
                return True
            relp = self.config.transport == "relp"
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
            self.failed(
                f"cannot reach {self.target}: {_describe(exc, self.config.connect_timeout)}"
            )
            return False
        if relp:
            session = RelpSession(reader, writer, self.config.send_timeout)
            try:
                await session.open()
            except (OSError, TimeoutError) as exc:
                session.abort()
                self.failed(f"cannot open RELP with {self.target}: {_describe(exc, 0)}")
                return False
            self._relp = session
        self._writer = writer
        self._peer_closed = False
        raw = writer.get_extra_info("socket")
        # A duplicate of the connection's descriptor, for peeking (asyncio's own socket
        # object refuses recv); it is the same connection, closed with it.
        self._peek = socket.socket(fileno=os.dup(raw.fileno())) if raw is not None else None
        self._reader_task = asyncio.create_task(
            self._watch_relp(self._relp) if relp and self._relp else self._watch(reader)
        )
        return True

    async def _watch(self, reader: asyncio.StreamReader) -> None:
        """A collector sends nothing; its EOF or reset is how we learn it went away."""
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
        """Spool first (oldest events), then the memory queue."""
        while True:
            stage: DiskSpool | MemorySpool | None = None
            if self._disk is not None and not self._disk.empty:
                stage = self._disk
            elif not self._overflow.empty:
                stage = self._overflow
            if stage is None:
                break
            records, token = stage.read_batch(_BATCH_BYTES)
            try:
                await self._write(records)
            except RelpError as exc:  # the answered ones are delivered: never again
                done = exc.acked + exc.refused
                if done:
                    _commit_prefix(stage, records, done)
                    self.counts["replayed"] += exc.acked
                if exc.refused:
                    self.dropped(1, str(exc))
                raise
            stage.commit(token)
            self.counts["replayed"] += len(records)
        if self._spooling:
            self._spooling = False  # no await since the check above: nothing slipped in
            self.recovered(f"sending to {self.target} again")
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(_BATCH_RECORDS, len(self._queue)))]
            try:
                await self._write(batch)
            except BaseException as exc:
                done = 0
                if isinstance(exc, RelpError):  # the answered ones are delivered
                    done = exc.acked + exc.refused
                    self.counts["sent"] += exc.acked
                    if exc.refused:
                        self.dropped(1, str(exc))
                self._queue.extendleft(reversed(batch[done:]))  # not known to be sent
                raise
            self.counts["sent"] += len(batch)

    async def _write(self, records: list[bytes]) -> None:
        if self._peer_closed or self._writer is None or self._closed_under_us():
            raise _PeerClosed("the collector closed the connection")
        if self._relp is not None:
            # RELP carries the bare syslog message: drop the octet count kept in the spool.
            await self._relp.send([r[r.index(b" ") + 1 :] for r in records])
            return
        self._writer.write(b"".join(records))
        await asyncio.wait_for(self._writer.drain(), self.config.send_timeout)

    def _closed_under_us(self) -> bool:
        """Has the collector closed, though the loop has not told our reader yet?

        A peek at the socket right before writing: a FIN already here means whatever we
        write now would be lost. For TLS this sees only a bare FIN (a close_notify alert
        is data), which is what a stopping collector sends last."""
        peek = self._peek
        if peek is None:
            return False
        try:
            return peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _disconnect(self, why: str | None) -> None:
        """Drop the connection; ``why`` is reported (None: we are stopping, nothing to say)."""
        writer, self._writer = self._writer, None
        if self._relp is not None:
            self._relp.abort()
            self._relp = None
        if self._peek is not None:
            self._peek.close()
            self._peek = None
        if writer is not None:
            writer.transport.abort()  # a stalled peer would make a clean close wait
        if self._reader_task is not None:
            self._reader_task.cancel()
        if not self._spooling:
            self._start_spooling()
        if why is not None:
            self.failed(f"lost {self.target}: {why}")

    async def close(self, grace: float = 2.0) -> None:
        """Send what is queued if the collector takes it within ``grace`` seconds; whatever is
        left goes to the spool, where the next start finds it."""
        if self._task is not None and self._writer is not None and self.streaming:
            loop = asyncio.get_running_loop()
            until = loop.time() + grace
            while (self._queue or not self._spooled_empty()) and loop.time() < until:
                if self._writer is None:
                    break
                self._wake.set()
                await asyncio.sleep(0.01)
        self._closed.set()
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._relp is not None:
            await self._relp.close()  # tells the collector; answers to nothing are pending
        if self._writer is not None:
            self._disconnect(None)
        if self._udp is not None:
            self._udp.close()
        for record in self._queue:  # the stopping daemon's last events
            self._park(record)
        self._queue.clear()
        if self._disk is not None:
            self._disk.close()

    def _spooled_empty(self) -> bool:
        return (self._disk is None or self._disk.empty) and self._overflow.empty

    def gauges(self) -> dict[str, float]:
        return {
            "queue_events": float(len(self._queue)),
            "spool_bytes": float(self._disk.size if self._disk else self._overflow.size),
        }


def _commit_prefix(stage: DiskSpool | MemorySpool, records: list[bytes], count: int) -> None:
    """Move a spool past the first ``count`` records of a batch."""
    if isinstance(stage, DiskSpool):
        stage.commit(sum(len(r) for r in records[:count]))
    else:
        stage.commit(count)


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
