"""``probe demo``: the example topology, played by loopback simulators, with faults injected.

The demo reads config/example.yaml, starts one simulated peer per node on 127.0.0.1,
rewrites every address to point at its simulator (and every TLS check at the
simulators' CA; icmp hosts become 127.0.0.x addresses, which the kernel answers), then
runs the same runner as ``probe --all`` round after round while a scripted scenario
breaks and mends nodes. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import itertools
import os
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yaml

from simulator.modes import Mode
from simulator.peers import Simulator
from simulator.proxy import SimForwardProxy
from simulator.tcp_node import GREETINGS

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "example.yaml"
DEMO_TOKEN = "demo-token-not-a-secret"  # noqa: S105 - stands in for ${env:...} references
SSH_BANNER = GREETINGS["ssh"]


@dataclass(frozen=True)
class Step:
    title: str
    changes: tuple[tuple[str, str, Mode], ...]  # (check, node, mode)


SCENARIO = (
    Step(
        "the 110 link's preferred node refuses connections; DNS server 1 answers SERVFAIL",
        (("police-110", "node-a", Mode.REFUSING), ("dns-police-110", "dns-1", Mode.ERRORING)),
    ),
    Step(
        "grassroots node-a answers 503 and the provincial primary hangs",
        (("grassroots", "node-a", Mode.ERRORING), ("province-minhu", "primary", Mode.HANGING)),
    ),
    Step(
        "110 node-a and DNS server 1 are back; database server 2 stops; "
        "the portal's certificate expired",
        (
            ("police-110", "node-a", Mode.HEALTHY),
            ("dns-police-110", "dns-1", Mode.HEALTHY),
            ("db-2", "primary", Mode.REFUSING),
            ("portal-cert", "primary", Mode.EXPIRED_CERTIFICATE),
        ),
    ),
    Step(
        "the 浙政钉 forward proxy refuses connections: the province is out of reach",
        (("forward-proxy", "zzd-proxy", Mode.REFUSING),),
    ),
    Step(
        "everything mended",
        (
            ("grassroots", "node-a", Mode.HEALTHY),
            ("province-minhu", "primary", Mode.HEALTHY),
            ("db-2", "primary", Mode.HEALTHY),
            ("portal-cert", "primary", Mode.HEALTHY),
            ("forward-proxy", "zzd-proxy", Mode.HEALTHY),
        ),
    ),
)

# The provincial data return (省民呼数据回传): before each round the simulated province
# posts a callback to a simulated receiver (a node the control API can switch like the
# others, e.g. PUT /nodes/province-callback/receiver {"mode": "erroring"}); the receiver
# heartbeats each one it processed. A push freshness check hears only those heartbeats.
# Rounds are seconds apart, so the demo compresses time: a failed callback stands for
# SILENCE without heartbeats, longer than the example's max_age.
CALLBACK_STEPS = {
    2: ("the province's data return (回传) fails at our receiver", Mode.ERRORING),
    4: ("the data return flows again", Mode.HEALTHY),
}
RECEIVER = "receiver"
SILENCE = timedelta(minutes=20)


async def build(sim: Simulator, example: str) -> dict[str, Any]:
    """Start a simulator per node of the example config text; return the rewritten document."""
    demo = copy.deepcopy(yaml.safe_load(example))
    # Short timeouts keep a hanging node from holding a round for long.
    demo["defaults"] = {
        "interval": "10s",
        "timeout": "1s",
        "retries": {"attempts": 2, "backoff": "100ms"},
    }
    proxies: dict[str, SimForwardProxy] = {}
    # Push heartbeats are kept beside the simulators' files, where `probe --all -c` finds them.
    demo.setdefault("state_dir", str(sim.ca_file.parent))
    # The event outputs name /var/log, /var/lib and the SIEM: no place for a demo, nor
    # for a probed that a test starts with this document.
    demo.pop("outputs", None)
    if any(check["kind"] == "icmp" for check in demo["checks"]) and not _can_ping():
        _say("demo: leaving out the icmp checks: this process may open no ICMP socket")
        demo["checks"] = [check for check in demo["checks"] if check["kind"] != "icmp"]
    loopback_hosts = (f"127.0.0.{n}" for n in itertools.count(2))
    for check in demo["checks"]:
        kind = check["kind"]
        if kind == "icmp":
            # Loopback never hangs: keep the check's own timeout, which its echoes must
            # fit; replies come at once, so the round need not wait out the spacing.
            check["echo_interval"] = "10ms"
            for node in check["nodes"]:
                node["host"] = next(loopback_hosts)
            continue
        for key in ("timeout", "retries"):
            check.pop(key, None)
        if kind == "freshness":
            await _freshness_source(sim, check)
            continue
        if kind == "dns":
            await _dns_nodes(sim, check)
            continue
        for node in check["nodes"]:
            if kind in ("http", "proxy"):
                await _http_node(sim, check, node)
            else:
                await _stream_node(sim, check, node)
        if "proxy" in check:
            check["proxy"] = await _forward_proxy(sim, check["proxy"], proxies)
        if "sign" in check:
            check["sign"] = {**check["sign"], "secret": DEMO_TOKEN}
        if kind == "tls" or any(n.get("url", "").startswith("https:") for n in check["nodes"]):
            check["tls"] = {**check.get("tls", {}), "ca_file": str(sim.ca_file)}
        for header, value in list(check.get("headers", {}).items()):
            if isinstance(value, str) and value.startswith("${"):
                check["headers"][header] = DEMO_TOKEN
    return dict(demo)


async def _http_node(sim: Simulator, check: dict[str, Any], node: dict[str, Any]) -> None:
    original = urlsplit(node["url"])
    peer = await sim.add_http(check["name"], node["name"], tls=original.scheme == "https")
    if "UP" in str(check.get("expect", {}).get("json", {}).get("status", "")):
        peer.healthy_body = {"status": "UP"}  # a Spring Boot actuator answers like this
    query = f"?{original.query}" if original.query else ""
    node["url"] = peer.url.rstrip("/") + (original.path or "/") + query


async def _dns_nodes(sim: Simulator, check: dict[str, Any]) -> None:
    """One simulated server per node. A check without nodes would ask this machine's
    resolver, which may send the query off the machine: it gets one too."""
    expect = check.get("expect", {})
    for key in ("values", "contains"):
        expect.pop(key, None)  # the real addresses: the simulators answer a loopback one
    for node in check.setdefault("nodes", [{"name": "system"}]):
        node["address"] = (await sim.add_dns(check["name"], node["name"])).address


def _can_ping() -> bool:
    """Whether this process may open an ICMP socket, decided as probes/icmp.py does."""
    from icmplib import ICMPLibError, ICMPv4Socket

    from core.errors import ProbeFailure
    from probes import icmp_access

    try:
        access = icmp_access.choose()
        ICMPv4Socket(privileged=access.privileged).close()
    except (ProbeFailure, ICMPLibError):
        return False
    return True


async def _forward_proxy(
    sim: Simulator, options: dict[str, Any], proxies: dict[str, SimForwardProxy]
) -> dict[str, Any]:
    """One simulated forward proxy per proxy host, with the check's user name and a
    stand-in password; the control API knows it as forward-proxy/<first host label>."""
    host = urlsplit(options["url"]).hostname or "proxy"
    username = options.get("username")
    if host not in proxies:
        proxies[host] = await sim.add_proxy(
            "forward-proxy",
            host.split(".")[0],
            username=username,
            password=DEMO_TOKEN if username else None,
        )
    rewritten = {**options, "url": proxies[host].url}
    if username:
        rewritten["password"] = DEMO_TOKEN
    return rewritten


async def _freshness_source(sim: Simulator, check: dict[str, Any]) -> None:
    source = check["source"]
    if source.get("type") == "push":
        if str(source.get("token", "")).startswith("${"):
            source["token"] = DEMO_TOKEN
        await sim.add_http(check["name"], RECEIVER)


async def province_calls_back(sim: Simulator, config: Any, ctx: Any) -> None:
    """One callback per push freshness check; the receiver heartbeats if it processed it."""
    from probes.http.aiohttp_client import session

    now = ctx.clock.now()
    for check in config.checks:
        if getattr(getattr(check, "source", None), "type", None) != "push":
            continue
        receiver = sim.node(check.name, RECEIVER)
        try:
            async with (
                asyncio.timeout(1.0),
                session(ctx).post(receiver.url + "callback", json={"case": "demo"}) as answer,
            ):
                processed = answer.status < 300
        except (TimeoutError, OSError, aiohttp.ClientError):
            processed = False
        await ctx.heartbeats.record(check.name, at=now if processed else now - SILENCE)


async def _stream_node(sim: Simulator, check: dict[str, Any], node: dict[str, Any]) -> None:
    protocol = check.get("protocol")
    if protocol is not None and protocol not in GREETINGS:
        # A preset the simulator cannot play would be down in every round: probe the
        # port alone instead, and say so rather than show a made-up outage.
        _say(f"demo: {check['name']}: the simulator cannot play {protocol}; checking the port")
        del check["protocol"]
        protocol = None
    wants_ssh = "SSH" in str(check.get("expect", {}).get("reply_regex", ""))
    banner = GREETINGS[protocol] if protocol else SSH_BANNER if wants_ssh else b""
    peer = await sim.add_tcp(check["name"], node["name"], banner=banner, tls=check["kind"] == "tls")
    node["address"] = peer.address


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probe demo",
        description="Run the example checks against loopback simulators while a scenario "
        "breaks and mends nodes. Only 127.0.0.1 is contacted.",
    )
    parser.add_argument(
        "--rounds", type=int, default=len(SCENARIO), help=f"rounds to run (default {len(SCENARIO)})"
    )
    parser.add_argument(
        "--interval", type=float, default=2.0, help="seconds between rounds (default 2)"
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the scenario, keep the simulators up and keep checking; "
        "flip nodes through the control API printed at start",
    )
    parser.add_argument("--json", action="store_true", help="print each round as JSON")
    parser.add_argument("--events", action="store_true", help="JSON events on stderr")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.rounds < 1 or args.interval < 0:
        print("probe demo: --rounds must be >= 1 and --interval >= 0", file=sys.stderr)
        return 3
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how --keep-running ends
        asyncio.run(_demo(args, EXAMPLE.read_text(encoding="utf-8")))
    return 0


async def _demo(args: argparse.Namespace, example: str) -> None:
    from config.load import parse_config
    from core.heartbeats import HeartbeatStore
    from engine import report
    from engine.runner import run_all
    from events.log import Pipeline
    from probes.base import ProbeContext

    events = Pipeline(level="info" if args.events else "critical")
    events.install()
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    with tempfile.TemporaryDirectory(prefix="hotline-demo-") as workdir:
        async with Simulator(directory=Path(workdir)) as sim, ProbeContext() as ctx:
            document = await build(sim, example)
            config_path = Path(workdir) / "demo-config.yaml"
            text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
            config_path.write_text(text, encoding="utf-8")
            config = parse_config(text, source=str(config_path))
            ctx.heartbeats = HeartbeatStore(config.state_dir, clock=ctx.clock)
            control = await sim.start_control() if args.keep_running else None
            _say(f"{len(sim.nodes)} simulated nodes for {len(config.checks)} checks on 127.0.0.1")
            if control is not None:
                _say(f"config: {config_path}  (try: probe --all -c {config_path})")
                _say(
                    f"control API: {control.url}nodes  "
                    f'(PUT /nodes/police-110/node-a with {{"mode": "refusing"}})'
                )

            on_result = events.emit_result if args.events else None

            round_no = 0
            while round_no < args.rounds or args.keep_running:
                step = SCENARIO[round_no] if round_no < len(SCENARIO) else None
                if step is not None:
                    for check, node, mode in step.changes:
                        await sim.node(check, node).set_mode(mode)
                round_no += 1
                title = step.title if step else "no change (flip nodes through the control API)"
                _say(f"\n== round {round_no}: {title}")
                if round_no in CALLBACK_STEPS:
                    note, mode = CALLBACK_STEPS[round_no]
                    for receiver in [n for n in sim.nodes if n.node == RECEIVER]:
                        await receiver.set_mode(mode)
                    _say(f"   and {note}")
                await province_calls_back(sim, config, ctx)
                results = await run_all(config, ctx, on_result=on_result)
                if args.json:
                    import json

                    print(json.dumps(report.document(results), ensure_ascii=False, indent=2))
                else:
                    print(report.table(results, color=color))
                    for result in results:
                        if result.failed_over:
                            error = result.preferred.error
                            why = f" ({error.type})" if error else ""
                            print(
                                f"  -> {result.name}: failed over from "
                                f"{result.preferred.name} to {result.active_node}{why}"
                            )
                sys.stdout.flush()
                if round_no < args.rounds or args.keep_running:
                    await asyncio.sleep(args.interval)


def _say(text: str) -> None:
    print(text, flush=True)
