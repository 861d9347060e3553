"""``kind: dns`` patterns over the answer, authority and additional sections.

The records come from dnsmasq serving the zone authoritatively (NS records in authority,
the SOA on NXDOMAIN) and from a scripted server for what dnsmasq does not send: glue in
additional, a TTL of 0, sinkholed answers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.rcode
import pytest

from config.kinds.dns import DnsCheck
from config.load import ConfigError
from core.errors import ErrorType
from core.result import Status
from engine.runner import run_check
from probes.base import ProbeContext
from tests.dns_peers import DNSMASQ, SOA, ZONE, Dnsmasq, dnsmasq, fault_server, reply_with
from tests.test_probe_dns import ask, details_of, dns_check, error_of, random_loopback, resolv_conf

needs_dnsmasq = pytest.mark.skipif(
    not DNSMASQ.exists(), reason=f"{DNSMASQ} is missing (dnsmasq-base)"
)
NS_LINES = [f"{ZONE}. 300 IN NS ns1.{ZONE}.", f"{ZONE}. 300 IN NS ns2.{ZONE}."]


@pytest.fixture(scope="module")
def zone() -> Iterator[Dnsmasq]:
    if not DNSMASQ.exists():
        pytest.skip(f"{DNSMASQ} is missing (dnsmasq-base)")
    with dnsmasq(auth=True) as running:
        yield running


# --- the text a pattern sees ----------------------------------------------------------------


@needs_dnsmasq
@pytest.mark.parametrize(
    ("query", "line"),
    [
        (f"{{name: v4only.{ZONE}}}", r"^v4only\.hotline\.test\. 300 IN A 127\.0\.20\.9$"),
        (f"{{name: txt.{ZONE}, type: TXT}}", r'^txt\.hotline\.test\. 300 IN TXT "v=spf1 -all"$'),
        (f"{{name: {ZONE}, type: MX}}", r"^hotline\.test\. 300 IN MX 10 mail\.hotline\.test\.$"),
    ],
    ids=["A", "TXT", "MX"],
)
async def test_a_record_is_matched_as_its_zone_file_line(
    zone: Dnsmasq, ctx: ProbeContext, query: str, line: str
) -> None:
    """A pattern sees each record as one line: absolute name, TTL, class, type, data."""
    result = await ask(zone.address, query, ctx, expect=f"{{answer: {{every: ['{line}']}}}}")
    assert result.status is Status.UP, result.nodes[0].error


@needs_dnsmasq
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_nxdomain_authority_holds_the_soa(
    zone: Dnsmasq, ctx: ProbeContext, transport: str
) -> None:
    """An NXDOMAIN answer is judged on its authority section, over UDP and TCP alike."""
    soa = r"^hotline\.test\. \d+ IN SOA ns1\.hotline\.test\. hostmaster\.hotline\.test\. "
    result = await ask(
        zone.address,
        f"{{name: gone.{ZONE}}}",
        ctx,
        transport=transport,
        expect=f"{{rcode: NXDOMAIN, authority: {{some: ['{soa}']}}}}",
    )
    assert result.status is Status.UP, result.nodes[0].error
    assert details_of(result)["transport"] == transport


# --- each rule, passing and failing ----------------------------------------------------------


@needs_dnsmasq
async def test_some_fails_when_no_record_matches(zone: Dnsmasq, ctx: ProbeContext) -> None:
    """`some` fails when no record matches, naming the pattern and the first record."""
    result = await ask(
        zone.address,
        f"{{name: gone.{ZONE}}}",
        ctx,
        expect=r"{rcode: NXDOMAIN, authority: {some: [' IN SOA ns9\.']}}",
    )
    assert error_of(result) == (
        ErrorType.ASSERTION,
        rf"authority section, some / IN SOA ns9\./: no record matches "
        f"(1 record, the first: {ZONE}. 300 IN SOA {SOA})",
    )


@needs_dnsmasq
async def test_each_some_pattern_needs_its_own_match(zone: Dnsmasq, ctx: ProbeContext) -> None:
    """Every pattern of `some` must be matched: one secondary server missing is a failure."""
    both = await ask(
        zone.address,
        f"{{name: app.{ZONE}}}",
        ctx,
        expect=r"{authority: {some: [' NS ns1\.', ' NS ns2\.']}}",
    )
    assert both.status is Status.UP, both.nodes[0].error
    missing = await ask(
        zone.address,
        f"{{name: app.{ZONE}}}",
        ctx,
        expect=r"{authority: {some: [' NS ns1\.', ' NS ns3\.']}}",
    )
    assert error_of(missing) == (
        ErrorType.ASSERTION,
        rf"authority section, some / NS ns3\./: no record matches "
        f"(2 records, the first: {NS_LINES[0]})",
    )


@needs_dnsmasq
async def test_every_names_the_record_that_does_not_match(zone: Dnsmasq, ctx: ProbeContext) -> None:
    """`every` fails on the first record that does not match: here the CNAME before the A."""
    passes = await ask(
        zone.address,
        f"{{name: www.{ZONE}}}",
        ctx,
        expect=r"{authority: {every: [' IN NS ns[12]\.hotline\.test\.$']}}",
    )
    assert passes.status is Status.UP, passes.nodes[0].error
    result = await ask(
        zone.address, f"{{name: www.{ZONE}}}", ctx, expect="{answer: {every: [' IN A ']}}"
    )
    assert error_of(result) == (
        ErrorType.ASSERTION,
        f"answer section, every / IN A /: not matched by www.{ZONE}. 300 IN CNAME app.{ZONE}.",
    )


@needs_dnsmasq
async def test_none_catches_a_ttl_of_zero(zone: Dnsmasq, ctx: ProbeContext) -> None:
    """`none` fails on a record that matches (a TTL of 0) and passes when none does."""
    no_zero_ttl = r"{answer: {none: ['^\S+ 0 IN ']}}"
    passes = await ask(zone.address, f"{{name: app.{ZONE}}}", ctx, expect=no_zero_ttl)
    assert passes.status is Status.UP, passes.nodes[0].error
    uncached = reply_with(
        answer=[f"app.{ZONE}. 60 IN A 127.1.1.2", f"www.{ZONE}. 0 IN A 127.1.1.1"]
    )
    async with fault_server(uncached) as (address, _):
        result = await ask(address, f"{{name: app.{ZONE}}}", ctx, expect=no_zero_ttl)
    assert error_of(result) == (
        ErrorType.ASSERTION,
        rf"answer section, none /^\S+ 0 IN /: matched by www.{ZONE}. 0 IN A 127.1.1.1",
    )


@pytest.mark.parametrize(
    ("addresses", "up"),
    [(["127.0.0.1", "127.0.0.2"], False), (["127.0.0.1", "127.1.1.1"], True)],
    ids=["all-sinkholed", "one-real"],
)
async def test_not_every_fails_when_every_record_matches(
    ctx: ProbeContext, addresses: list[str], up: bool
) -> None:
    """`not_every` fails only when every record matches (answers that are all the sinkhole)."""
    lines = [f"app.{ZONE}. 60 IN A {address}" for address in addresses]
    async with fault_server(reply_with(answer=lines)) as (address, _):
        result = await ask(
            address,
            f"{{name: app.{ZONE}}}",
            ctx,
            expect=r"{answer: {not_every: [' 127\.0\.0\.\d+$']}}",
        )
    if up:
        assert result.status is Status.UP, result.nodes[0].error
    else:
        assert error_of(result) == (
            ErrorType.ASSERTION,
            r"answer section, not_every / 127\.0\.0\.\d+$/: every record matches "
            f"(2 records, the first: app.{ZONE}. 60 IN A 127.0.0.1)",
        )


@needs_dnsmasq
@pytest.mark.parametrize(
    ("rule", "up"),
    [("some", False), ("every", False), ("none", True), ("not_every", False)],
)
async def test_an_empty_section(zone: Dnsmasq, ctx: ProbeContext, rule: str, up: bool) -> None:
    """An empty section passes `none` and fails the others, which need a record to judge."""
    result = await ask(
        zone.address,
        f"{{name: gone.{ZONE}}}",
        ctx,
        expect=f"{{rcode: NXDOMAIN, answer: {{{rule}: ['.']}}}}",
    )
    if up:
        assert result.status is Status.UP, result.nodes[0].error
    else:
        assert error_of(result) == (
            ErrorType.ASSERTION,
            f"answer section, {rule} /./: the section is empty",
        )


# --- authority and additional of a referral ---------------------------------------------------

REFERRAL = reply_with(
    authority=[
        f"sub.{ZONE}. 3600 IN NS ns1.sub.{ZONE}.",
        f"sub.{ZONE}. 3600 IN NS ns2.sub.{ZONE}.",
    ],
    additional=[
        f"ns1.sub.{ZONE}. 3600 IN A 127.0.30.1",
        f"ns2.sub.{ZONE}. 3600 IN A 127.0.30.2",
        f"ns1.sub.{ZONE}. 3600 IN AAAA ::1",
    ],
)


async def test_referral_with_glue(ctx: ProbeContext) -> None:
    """A referral is judged on its NS records in authority and their glue in additional."""
    query = f"{{name: app.sub.{ZONE}, recursion: false}}"
    rules = (
        r"{values: [], authority: {every: [' IN NS ns[12]\.sub\.hotline\.test\.$']}, "
        r"additional: {some: ['^ns1\.sub\.hotline\.test\. 3600 IN A 127\.0\.30\.1$', "
        r"'^ns2\.sub\.hotline\.test\. 3600 IN A 127\.0\.30\.2$']}}"
    )
    async with fault_server(REFERRAL) as (address, peer):
        result = await ask(address, query, ctx, expect=rules)
        v4_glue = await ask(address, query, ctx, expect="{values: [], additional: {none: [AAAA]}}")
    assert result.status is Status.UP, result.nodes[0].error
    assert error_of(v4_glue) == (
        ErrorType.ASSERTION,
        f"additional section, none /AAAA/: matched by ns1.sub.{ZONE}. 3600 IN AAAA ::1",
    )
    assert not peer.queries[0].flags & dns.flags.RD  # recursion: false


async def test_the_edns_record_is_not_an_additional_record(ctx: ProbeContext) -> None:
    """The OPT pseudo-record of EDNS is not judged: an additional section with only it is empty."""
    async with fault_server(reply_with()) as (address, peer):
        result = await ask(
            address, f"{{name: app.{ZONE}}}", ctx, expect="{values: [], additional: {every: [OPT]}}"
        )
    assert peer.queries[0].edns == 0  # so the reply carried an OPT record too
    assert error_of(result) == (
        ErrorType.ASSERTION,
        "additional section, every /OPT/: the section is empty",
    )


# --- with the other expect keys ---------------------------------------------------------------


@needs_dnsmasq
async def test_sections_combine_with_the_other_keys(zone: Dnsmasq, ctx: ProbeContext) -> None:
    """Section patterns are judged with contains, after the rcode: a wrong rcode stays dns."""
    both = await ask(
        zone.address,
        f"{{name: app.{ZONE}}}",
        ctx,
        expect=r"{contains: 127.0.20.1, authority: {some: [' IN NS ns2\.']}}",
    )
    assert both.status is Status.UP, both.nodes[0].error
    missing = await ask(
        zone.address,
        f"{{name: app.{ZONE}}}",
        ctx,
        expect=r"{contains: 127.0.20.7, authority: {some: [' IN NS ns2\.']}}",
    )
    assert error_of(missing) == (
        ErrorType.ASSERTION,
        f"app.{ZONE} A answers do not include 127.0.20.7",
    )
    gone = await ask(
        zone.address, f"{{name: gone.{ZONE}}}", ctx, expect="{authority: {some: [SOA]}}"
    )
    assert error_of(gone) == (ErrorType.DNS, f"NXDOMAIN for gone.{ZONE} A, expected NOERROR")


@needs_dnsmasq
async def test_a_long_record_is_shortened(zone: Dnsmasq, ctx: ProbeContext) -> None:
    """The record a message names is cut to 100 characters (TXT data can run to kilobytes)."""
    result = await ask(
        zone.address, f"{{name: big.{ZONE}, type: TXT}}", ctx, expect="{answer: {none: ['x{50}']}}"
    )
    error_type, message = error_of(result)
    start = f"answer section, none /x{{50}}/: matched by big.{ZONE}. 300 IN TXT "
    assert error_type is ErrorType.ASSERTION
    assert message.startswith(start)
    assert message.endswith("xxx...")
    assert len(message) == len(start) + 100 - len(f"big.{ZONE}. 300 IN TXT ") + 3
    assert details_of(result)["transport"] == "tcp"  # too large for UDP: asked again


@pytest.mark.skipif(
    os.geteuid() != 0, reason="resolv.conf has no port: the server must listen on 53 (root)"
)
async def test_system_resolver_keeps_the_authority_of_nxdomain(tmp_path: Path) -> None:
    """Through the system resolver, an NXDOMAIN keeps its authority section for the patterns."""
    # dnsmasq serves authoritatively only on an interface's own address, and 127.0.0.1:53
    # may be taken: a scripted server on an address of 127/8 of its own stands in.
    host = random_loopback()
    check = dns_check(
        None,
        f"{{name: gone.{ZONE}}}",
        expect=r"{rcode: NXDOMAIN, authority: {some: [' IN SOA ns1\.hotline\.test\. ']}}",
    )
    nxdomain = reply_with(dns.rcode.NXDOMAIN, authority=[f"{ZONE}. 300 IN SOA {SOA}"])
    async with (
        ProbeContext(resolv_conf=resolv_conf(tmp_path, host)) as ctx,
        fault_server(nxdomain, host=host, port=53),
    ):
        result = await run_check(check, ctx)
    assert result.status is Status.UP, result.nodes[0].error


# --- the config --------------------------------------------------------------------------------


def test_one_pattern_may_stand_alone() -> None:
    """A rule takes one pattern as well as a list of them."""
    check = dns_check(None, "{name: app.example.invalid}", expect="{authority: {some: ' IN SOA '}}")
    assert isinstance(check, DnsCheck) and check.expect.authority is not None
    assert [p.pattern for p in check.expect.authority.some] == [" IN SOA "]


@pytest.mark.parametrize(
    ("written", "refused"),
    [("'\\t0\\tIN'", True), ('"\\t0\\tIN"', True), ("'[\\t ]0'", True), ("'\\\\t'", False)],
    ids=["escape", "tab", "in-a-class", "backslash-then-t"],
)
def test_patterns_looking_for_a_tab_are_refused(written: str, refused: bool) -> None:
    """A tab (blackbox_exporter's separator) never occurs in a record, so it is refused."""
    expect = f"{{answer: {{none: [{written}]}}}}"
    if not refused:
        dns_check(None, "{name: app.example.invalid}", expect=expect)
        return
    with pytest.raises(ConfigError, match="looks for a tab, which a record never holds"):
        dns_check(None, "{name: app.example.invalid}", expect=expect)
