"""The loopback simulators behave, per mode, the way real broken peers do on the wire.

Real sockets only. The exception types asserted here are the ones the error
classifier sees from aiohttp and asyncio.
"""

import asyncio
import contextlib
import errno
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from simulator import Mode, SimForwardProxy, SimHttpNode, SimNode, Simulator
from simulator.modes import GARBAGE_BYTES
from simulator.proxy import loopback_target

# Long enough for any loopback answer, short enough to keep the file fast.
HANG = 0.3
SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator() as simulator:
        yield simulator


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[aiohttp.ClientSession]:
    # Depends on `sim` so the client closes before the servers do.
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def ca_context(sim: Simulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(sim.ca_file))


async def get_json(client: aiohttp.ClientSession, url: str, **kwargs: Any) -> object:
    async with asyncio.timeout(2):
        async with client.get(url, **kwargs) as response:
            assert response.status == 200
            return await response.json()


async def raw_http(
    port: int, request: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    return reader, writer


async def read_all(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(2):
        return await reader.read()


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    # The peer resetting or breaking the connection is what most of these tests are about.
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


async def wait_for_requests(node: SimNode, count: int) -> None:
    async with asyncio.timeout(2):
        await node.wait_for_requests(count)


# -- HTTP nodes -----------------------------------------------------------------


async def test_healthy_answers_any_method_and_path(
    sim: Simulator, client: aiohttp.ClientSession
) -> None:
    """Healthy nodes answer 200 with their identity for GET, SOAP POST and HEAD alike."""
    node = await sim.add_http("12345-gov", "primary")
    assert node.url == f"http://127.0.0.1:{node.port}/"
    assert node.address == f"127.0.0.1:{node.port}"
    expected = {"status": "ok", "link": "12345-gov", "node": "primary"}
    assert await get_json(client, node.url + "any/path?x=1") == expected
    soap = "<soap:Envelope><soap:Body><Ping/></soap:Body></soap:Envelope>"
    async with client.post(node.url + "ws", data=soap, headers={"SOAPAction": "Ping"}) as resp:
        assert resp.status == 200
        assert await resp.json() == expected
    async with client.head(node.url) as resp:
        assert resp.status == 200
    assert node.requests == 3


async def test_healthy_body_can_be_replaced(sim: Simulator, client: aiohttp.ClientSession) -> None:
    """healthy_body swaps the healthy JSON, e.g. for a Spring Boot actuator's {"status": "UP"}."""
    node = await sim.add_http("actuator", "a")
    node.healthy_body = {"status": "UP"}
    assert await get_json(client, node.url) == {"status": "UP"}


async def test_refusing_gives_econnrefused_and_recovers_on_the_same_port(
    sim: Simulator, client: aiohttp.ClientSession
) -> None:
    """Refusing closes the listener (ECONNREFUSED); healthy re-binds the very same port."""
    node = await sim.add_http("link", "a")
    port = node.port
    await get_json(client, node.url)
    await node.set_mode(Mode.REFUSING)
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        await client.get(node.url)
    assert caught.value.errno == errno.ECONNREFUSED
    await node.set_mode(Mode.HEALTHY)
    assert node.port == port
    await get_json(client, node.url)


async def test_node_can_start_refusing(sim: Simulator) -> None:
    """A node created in refusing mode still owns a port it later listens on."""
    node = await sim.add_http("link", "a", mode=Mode.REFUSING)
    assert node.port > 0
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", node.port)
    await node.set_mode(Mode.HEALTHY)
    _, writer = await asyncio.open_connection("127.0.0.1", node.port)
    await close(writer)


async def test_hanging_accepts_but_never_answers(
    sim: Simulator, client: aiohttp.ClientSession
) -> None:
    """Hanging takes the request (it is counted) and sends nothing back."""
    node = await sim.add_http("link", "a", mode=Mode.HANGING)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.get(node.url), HANG)
    assert node.requests == 1


async def test_hanging_request_is_answered_once_the_node_recovers(
    sim: Simulator, client: aiohttp.ClientSession
) -> None:
    """A request parked by hanging is served by whatever mode comes next."""
    node = await sim.add_http("link", "a", mode=Mode.HANGING)
    pending = asyncio.create_task(get_json(client, node.url))
    await wait_for_requests(node, 1)
    assert not pending.done()
    await node.set_mode(Mode.HEALTHY)
    assert await pending == {"status": "ok", "link": "link", "node": "a"}


async def test_slow_answers_healthy_after_the_delay(
    sim: Simulator, client: aiohttp.ClientSession
) -> None:
    """Slow delays a healthy answer by slow_delay seconds."""
    node = await sim.add_http("link", "a", mode=Mode.SLOW)
    node.slow_delay = 0.2
    started = time.monotonic()
    await get_json(client, node.url)
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize(
    ("mode", "status", "body"),
    [
        (Mode.ERRORING, 503, b"simulated outage\n"),
        (Mode.WRONG_BODY, 200, b'{"status": "maintenance"}'),
    ],
)
async def test_http_level_failures(
    sim: Simulator, client: aiohttp.ClientSession, mode: Mode, status: int, body: bytes
) -> None:
    """Erroring answers 503 and wrong_body a 200 whose JSON is not ok."""
    node = await sim.add_http("link", "a", mode=mode)
    async with client.get(node.url) as response:
        assert response.status == status
        assert await response.read() == body


async def test_reset_cuts_the_body_with_a_tcp_rst(
    sim: Simulator, client: aiohttp.ClientSession
) -> None:
    """Reset sends headers and 10 of 1000 promised bytes, then an RST, not a FIN."""
    node = await sim.add_http("link", "a", mode=Mode.RESET)
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.get(node.url) as response:
            await response.read()
    reader, writer = await raw_http(node.port)
    received = bytearray()

    async def read_until_reset() -> None:
        while chunk := await reader.read(4096):
            received.extend(chunk)

    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(read_until_reset(), 2)
    assert received.endswith(b'Content-Length: 1000\r\n\r\n{"status":')
    await close(writer)


async def test_trickle_sends_one_byte_at_a_time(
    sim: Simulator, client: aiohttp.ClientSession
) -> None:
    """Trickle answers headers at once, then a byte per trickle_interval, never finishing."""
    node = await sim.add_http("link", "a", mode=Mode.TRICKLE)
    node.trickle_interval = 0.05
    async with client.get(node.url) as response:
        assert response.status == 200
        assert response.content_length is not None
        assert response.content_length >= 100_000  # more than will ever arrive
        async with asyncio.timeout(2):
            for _ in range(3):
                assert await response.content.readexactly(1) == b"."
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(response.read(), HANG)


async def test_huge_body_never_ends(sim: Simulator, client: aiohttp.ClientSession) -> None:
    """Huge_body streams a chunked body that goes on past any sane limit."""
    node = await sim.add_http("link", "a", mode=Mode.HUGE_BODY)
    async with client.get(node.url) as response:
        assert response.status == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        received = 0
        async with asyncio.timeout(5):
            while received < 4 * 1024 * 1024:
                received += len(await response.content.read(65536))


async def test_garbage_is_not_http(sim: Simulator, client: aiohttp.ClientSession) -> None:
    """Garbage answers NUL-led non-HTTP bytes and closes; aiohttp cannot parse it."""
    node = await sim.add_http("link", "a", mode=Mode.GARBAGE)
    with pytest.raises(aiohttp.ClientResponseError):
        await client.get(node.url)
    reader, writer = await raw_http(node.port)
    assert await read_all(reader) == GARBAGE_BYTES
    await close(writer)


# -- HTTPS nodes ----------------------------------------------------------------


async def test_https_verifies_with_the_ca_file(
    sim: Simulator, client: aiohttp.ClientSession, ca_context: ssl.SSLContext
) -> None:
    """A TLS node's good certificate verifies against sim.ca_file for IP and name."""
    node = await sim.add_http("link", "a", tls=True)
    assert node.url.startswith("https://127.0.0.1:")
    await get_json(client, node.url, ssl=ca_context)
    await get_json(client, f"https://localhost:{node.port}/", ssl=ca_context)


@pytest.mark.parametrize(
    ("mode", "verify_code", "message"),
    [
        (Mode.EXPIRED_CERTIFICATE, 10, "certificate has expired"),
        (Mode.BAD_CERTIFICATE, 18, "self-signed certificate"),
    ],
)
async def test_certificate_modes_fail_verification(
    sim: Simulator,
    client: aiohttp.ClientSession,
    ca_context: ssl.SSLContext,
    mode: Mode,
    verify_code: int,
    message: str,
) -> None:
    """The certificate modes fail verification with their own verify_code, same port."""
    node = await sim.add_http("link", "a", tls=True)
    port = node.port
    await node.set_mode(mode)
    assert node.port == port
    with pytest.raises(aiohttp.ClientConnectorCertificateError) as caught:
        await client.get(node.url, ssl=ca_context)
    error = caught.value.certificate_error
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.verify_code == verify_code
    assert error.verify_message == message
    # The node itself still works; only the certificate is wrong.
    await get_json(client, node.url, ssl=False)


async def test_certificate_switch_is_seen_by_a_pooled_client(
    sim: Simulator, client: aiohttp.ClientSession, ca_context: ssl.SSLContext
) -> None:
    """Switching certificates drops kept-alive connections, so the next request re-handshakes."""
    node = await sim.add_http("link", "a", tls=True)
    await get_json(client, node.url, ssl=ca_context)
    await node.set_mode(Mode.EXPIRED_CERTIFICATE)
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await client.get(node.url, ssl=ca_context)
    await node.set_mode(Mode.HEALTHY)
    await get_json(client, node.url, ssl=ca_context)


async def test_certificate_modes_need_a_tls_node(sim: Simulator) -> None:
    """A plain node rejects the certificate modes and names the ones it supports."""
    node = await sim.add_http("link", "a")
    with pytest.raises(ValueError, match=r"does not support 'bad_certificate'.*healthy"):
        await node.set_mode(Mode.BAD_CERTIFICATE)
    with pytest.raises(ValueError, match="unknown mode 'sleepy'"):
        await node.set_mode("sleepy")
    assert node.mode is Mode.HEALTHY


# -- TCP nodes ------------------------------------------------------------------


async def test_tcp_sends_banner_and_answers_ping(sim: Simulator) -> None:
    """A TCP node sends its banner on connect and answers PING with +PONG."""
    node = await sim.add_tcp("jump", "host", banner=SSH_BANNER)
    assert node.url == f"tcp://127.0.0.1:{node.port}"
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    async with asyncio.timeout(2):
        assert await reader.readline() == SSH_BANNER
        writer.write(b"PING\r\n")
        assert await reader.readline() == b"+PONG\r\n"
    await close(writer)
    assert node.requests == 1


async def test_tcp_refusing_then_healthy_on_the_same_port(sim: Simulator) -> None:
    """A refusing TCP node gets ECONNREFUSED and listens again on its old port."""
    node = await sim.add_tcp("redis", "a")
    port = node.port
    await node.set_mode(Mode.REFUSING)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await node.set_mode(Mode.HEALTHY)
    assert node.port == port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"PING\r\n")
    async with asyncio.timeout(2):
        assert await reader.readline() == b"+PONG\r\n"
    await close(writer)


async def test_tcp_hanging_accepts_and_stays_silent(sim: Simulator) -> None:
    """A hanging TCP node accepts, sends no banner and ignores PING."""
    node = await sim.add_tcp("jump", "host", banner=SSH_BANNER, mode=Mode.HANGING)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(b"PING\r\n")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), HANG)
    await close(writer)


async def test_tcp_reset_right_after_accept(sim: Simulator) -> None:
    """A resetting TCP node answers the connect with an RST."""
    node = await sim.add_tcp("jump", "host", banner=SSH_BANNER, mode=Mode.RESET)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    with pytest.raises(ConnectionResetError):
        await read_all(reader)
    await close(writer)


async def test_tcp_garbage_banner(sim: Simulator) -> None:
    """A garbage TCP node sends non-protocol bytes instead of its banner, then closes."""
    node = await sim.add_tcp("jump", "host", banner=SSH_BANNER, mode=Mode.GARBAGE)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    assert await read_all(reader) == GARBAGE_BYTES
    await close(writer)


async def test_tls_tcp_healthy_handshake(sim: Simulator, ca_context: ssl.SSLContext) -> None:
    """A TLS TCP node completes a verified handshake and talks inside it."""
    node = await sim.add_tcp("mq", "a", banner=b"+OK ready\r\n", tls=True)
    assert node.url.startswith("tls://")
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", node.port, ssl=ca_context, server_hostname="localhost"
    )
    async with asyncio.timeout(2):
        assert await reader.readline() == b"+OK ready\r\n"
        writer.write(b"PING\r\n")
        assert await reader.readline() == b"+PONG\r\n"
    await close(writer)


@pytest.mark.parametrize(
    ("mode", "error", "verify_code"),
    [
        (Mode.EXPIRED_CERTIFICATE, ssl.SSLCertVerificationError, 10),
        (Mode.BAD_CERTIFICATE, ssl.SSLCertVerificationError, 18),
        # Plain bytes where a ServerHello should be.
        (Mode.GARBAGE, ssl.SSLError, None),
        (Mode.RESET, ConnectionResetError, None),
        (Mode.HANGING, TimeoutError, None),
    ],
)
async def test_tls_tcp_handshake_failures(
    sim: Simulator,
    ca_context: ssl.SSLContext,
    mode: Mode,
    error: type[Exception],
    verify_code: int | None,
) -> None:
    """Each failure mode of a TLS TCP node breaks the handshake the way it should."""
    node = await sim.add_tcp("mq", "a", tls=True, mode=mode)
    with pytest.raises(error) as caught:
        await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", node.port, ssl=ca_context, server_hostname="localhost"
            ),
            HANG,
        )
    if verify_code is not None:
        assert isinstance(caught.value, ssl.SSLCertVerificationError)
        assert caught.value.verify_code == verify_code


# -- forward proxy --------------------------------------------------------------


async def test_proxy_forwards_absolute_uri_requests(
    sim: Simulator, client: aiohttp.ClientSession
) -> None:
    """A plain-HTTP request through the proxy reaches the target node and comes back."""
    proxy = await sim.add_proxy("egress", "squid")
    node = await sim.add_http("link", "a")
    body = await get_json(client, node.url + "health?deep=1", proxy=proxy.url)
    assert body == {"status": "ok", "link": "link", "node": "a"}
    assert (proxy.requests, node.requests) == (1, 1)


async def test_proxy_connect_tunnels_tls_to_an_https_node(
    sim: Simulator, client: aiohttp.ClientSession, ca_context: ssl.SSLContext
) -> None:
    """CONNECT opens a tunnel through which TLS to an HTTPS node verifies end to end."""
    proxy = await sim.add_proxy("egress", "squid")
    node = await sim.add_http("link", "a", tls=True)
    await get_json(client, node.url, proxy=proxy.url, ssl=ca_context)
    assert (proxy.requests, node.requests) == (1, 1)


async def test_proxy_basic_auth(
    sim: Simulator, client: aiohttp.ClientSession, ca_context: ssl.SSLContext
) -> None:
    """Without or with wrong credentials the proxy answers 407; with them it forwards."""
    proxy = await sim.add_proxy("egress", "squid", username="probe", password="s3cret")
    plain = await sim.add_http("link", "plain")
    secure = await sim.add_http("link", "secure", tls=True)
    async with client.get(plain.url, proxy=proxy.url) as response:
        assert response.status == 407
        assert response.headers["Proxy-Authenticate"] == 'Basic realm="sim"'
    wrong = aiohttp.BasicAuth("probe", "guess")
    async with client.get(plain.url, proxy=proxy.url, proxy_auth=wrong) as response:
        assert response.status == 407
    with pytest.raises(aiohttp.ClientHttpProxyError) as caught:
        await client.get(secure.url, proxy=proxy.url, ssl=ca_context)
    assert caught.value.status == 407
    auth = aiohttp.BasicAuth("probe", "s3cret")
    await get_json(client, plain.url, proxy=proxy.url, proxy_auth=auth)
    await get_json(client, secure.url, proxy=proxy.url, proxy_auth=auth, ssl=ca_context)


@pytest.mark.parametrize(
    "request_head",
    [
        b"CONNECT 0.0.0.0:443 HTTP/1.1\r\nHost: 0.0.0.0:443\r\n\r\n",  # off loopback
        b"CONNECT example.invalid:443 HTTP/1.1\r\nHost: example.invalid:443\r\n\r\n",
        b"GET http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n",
        b"GET http://[::]:8080/x HTTP/1.1\r\nHost: [::]:8080\r\n\r\n",
    ],
)
async def test_proxy_refuses_non_loopback_targets_before_connecting(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, request_head: bytes
) -> None:
    """Non-loopback targets get 403 and the proxy opens no connection for them at all."""
    proxy = await sim.add_proxy("egress", "squid")
    real_open_connection = asyncio.open_connection
    dialled: list[object] = []

    async def guarded_open_connection(
        host: str, port: int, **kwargs: object
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # A tripwire for the hard network rule, not a stand-in: it refuses, never fakes.
        dialled.append(host)
        raise AssertionError(f"proxy tried to dial {host}:{port}")

    monkeypatch.setattr(asyncio, "open_connection", guarded_open_connection)
    reader, writer = await real_open_connection("127.0.0.1", proxy.port)
    writer.write(request_head)
    answer = await read_all(reader)
    await close(writer)
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert dialled == []


def test_loopback_target_never_resolves_names() -> None:
    """Only "localhost" and loopback IP literals are dialable; every other name is refused."""
    assert loopback_target("localhost") == "127.0.0.1"
    assert loopback_target("127.0.0.1") == "127.0.0.1"
    assert loopback_target("127.0.0.5") == "127.0.0.5"
    assert loopback_target("::1") == "::1"
    unspecified = "0.0.0.0"  # noqa: S104 - a target under test, nothing binds to it
    # Addresses that are not loopback yet name no other host: the unspecified ones.
    for host in ("example.invalid", "::", unspecified, "127.0.0.1.nip.io"):
        assert loopback_target(host) is None


async def test_proxy_answers_502_when_the_target_is_down(
    sim: Simulator, client: aiohttp.ClientSession, ca_context: ssl.SSLContext
) -> None:
    """A refused loopback target gives 502 (plain) or ClientHttpProxyError 502 (CONNECT)."""
    proxy = await sim.add_proxy("egress", "squid")
    plain = await sim.add_http("link", "plain", mode=Mode.REFUSING)
    secure = await sim.add_http("link", "secure", tls=True, mode=Mode.REFUSING)
    async with client.get(plain.url, proxy=proxy.url) as response:
        assert response.status == 502
    with pytest.raises(aiohttp.ClientHttpProxyError) as caught:
        await client.get(secure.url, proxy=proxy.url, ssl=ca_context)
    assert caught.value.status == 502


async def test_proxy_modes(sim: Simulator, client: aiohttp.ClientSession) -> None:
    """The proxy's own modes: erroring answers 502, hanging is silent, refusing refuses."""
    proxy = await sim.add_proxy("egress", "squid")
    node = await sim.add_http("link", "a")
    port = proxy.port
    await proxy.set_mode(Mode.ERRORING)
    async with client.get(node.url, proxy=proxy.url) as response:
        assert response.status == 502
    await proxy.set_mode(Mode.HANGING)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.get(node.url, proxy=proxy.url), HANG)
    await proxy.set_mode(Mode.REFUSING)
    with pytest.raises(aiohttp.ClientProxyConnectionError) as caught:
        await client.get(node.url, proxy=proxy.url)
    assert caught.value.errno == errno.ECONNREFUSED
    await proxy.set_mode(Mode.HEALTHY)
    assert proxy.port == port
    await get_json(client, node.url, proxy=proxy.url)
    assert node.requests == 1


async def test_proxy_rejects_http_only_modes(sim: Simulator) -> None:
    """The proxy supports only healthy, refusing, hanging and erroring."""
    proxy = await sim.add_proxy("egress", "squid")
    assert isinstance(proxy, SimForwardProxy)
    with pytest.raises(ValueError, match="healthy, refusing, hanging, erroring"):
        await proxy.set_mode(Mode.TRICKLE)


# -- the Simulator and its control API ------------------------------------------


async def test_simulator_looks_nodes_up_by_link_and_node(sim: Simulator) -> None:
    """sim.node finds what add_* made; duplicates and unknown names are errors."""
    node = await sim.add_http("link", "a")
    tcp = await sim.add_tcp("link", "b")
    assert sim.node("link", "a") is node
    assert sim.nodes == (node, tcp)
    with pytest.raises(ValueError, match="already exists"):
        await sim.add_tcp("link", "a")
    with pytest.raises(KeyError):
        sim.node("link", "zzz")


async def test_mode_setter_applies_in_the_background(sim: Simulator) -> None:
    """Assigning node.mode switches at once and re-binds once settle() returns."""
    node = await sim.add_http("link", "a")
    node.mode = Mode.REFUSING
    assert node.mode is Mode.REFUSING
    await node.settle()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", node.port)


async def test_control_api_lists_and_switches_nodes(
    sim: Simulator, client: aiohttp.ClientSession
) -> None:
    """The control API lists nodes, switches modes, 404s unknown nodes, 400s bad modes."""
    node = await sim.add_http("link", "a")
    proxy = await sim.add_proxy("egress", "squid")
    control = await sim.start_control()
    async with client.get(control.url + "nodes") as response:
        assert response.status == 200
        listed = await response.json()
    assert [(n["link"], n["node"], n["kind"], n["mode"]) for n in listed] == [
        ("link", "a", "http", "healthy"),
        ("egress", "squid", "proxy", "healthy"),
    ]
    assert listed[0]["address"] == node.address
    assert listed[0]["requests"] == 0

    url = control.url + "nodes/link/a"
    async with client.put(url, json={"mode": "refusing"}) as response:
        assert response.status == 200
        assert (await response.json())["mode"] == "refusing"
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", node.port)

    async with client.put(control.url + "nodes/link/nope", json={"mode": "healthy"}) as response:
        assert response.status == 404
    async with client.put(url, json={"mode": "sleepy"}) as response:
        assert response.status == 400
        text = await response.text()
        assert all(mode.value in text for mode in Mode)
    async with client.put(control.url + "nodes/egress/squid", json={"mode": "trickle"}) as resp:
        assert resp.status == 400
    assert proxy.mode is Mode.HEALTHY


async def test_stop_leaves_no_tasks_or_sockets_behind() -> None:
    """Stopping a simulator mid-request wakes every parked handler and leaves no task."""
    async with aiohttp.ClientSession() as session:
        simulator = Simulator()
        hanging = await simulator.add_http("link", "hanging", mode=Mode.HANGING)
        trickle = await simulator.add_http("link", "trickle", tls=True, mode=Mode.TRICKLE)
        tcp = await simulator.add_tcp("jump", "host", mode=Mode.HANGING)
        proxy = await simulator.add_proxy("egress", "squid")
        proxied: SimHttpNode = await simulator.add_http("link", "behind", mode=Mode.HANGING)
        requests = [
            asyncio.create_task(session.get(hanging.url)),
            asyncio.create_task(session.get(trickle.url, ssl=False)),
            asyncio.create_task(session.get(proxied.url, proxy=proxy.url)),
        ]
        _, tcp_writer = await asyncio.open_connection("127.0.0.1", tcp.port)
        for node in (hanging, trickle, proxied):
            await wait_for_requests(node, 1)
        async with asyncio.timeout(3):
            await simulator.stop()
        outcomes = await asyncio.gather(*requests, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, aiohttp.ClientResponse):
                outcome.release()
        await close(tcp_writer)
    assert asyncio.all_tasks() == {asyncio.current_task()}
