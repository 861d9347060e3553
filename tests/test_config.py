"""Config loading: the documented keys work, every invalid file is refused clearly."""

from __future__ import annotations

import copy
import os
import ssl
import subprocess
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from config import secret_values
from config.duration import format_duration, parse_duration
from config.kinds.freshness import FreshnessCheck
from config.kinds.http import HttpCheck
from config.kinds.tcp import TcpCheck
from config.load import ConfigError, find_config, load_config, parse_config
from config.tls import build_ssl_context
from tests.cli_run import CWD, command

ROOT = Path(__file__).resolve().parent.parent
INVALID = sorted((ROOT / "tests" / "invalid").glob("*.yaml"))

ISSUE_EXAMPLE = """
defaults: {interval: 30s, timeout: 5s, retries: {attempts: 3, backoff: 200ms}}
checks:
  - name: police-110            # unique, [a-z0-9-]
    title: 110 接处警平台对接      # free text, UTF-8
    kind: http
    timeout: 3s
    retries: {attempts: 2, backoff: 100ms}
    nodes:
      - {name: node-a, url: "https://a.police.invalid/"}
      - {name: node-b, url: "https://b.police.invalid/"}
    expect: {status: [200], body_contains: "ok"}
    tls: {warn_days: 30, crit_days: 7}
  - name: db-1
    kind: tcp
    nodes: [{name: primary, address: "host:3306"}]
"""


def test_issue_example_keys_work_as_written() -> None:
    """The YAML from the core issue loads, with defaults inherited where not overridden."""
    config = parse_config(ISSUE_EXAMPLE)
    police, db = config.checks
    assert isinstance(police, HttpCheck) and isinstance(db, TcpCheck)
    assert police.title == "110 接处警平台对接"
    assert (police.timeout, police.retries.attempts, police.retries.backoff) == (3.0, 2, 0.1)
    assert [n.name for n in police.nodes] == ["node-a", "node-b"]
    assert police.expect.status == [200] and police.expect.body_contains == "ok"
    assert police.tls is not None and (police.tls.warn_days, police.tls.crit_days) == (30, 7)
    assert (db.timeout, db.interval, db.retries.attempts, db.retries.backoff) == (5.0, 30.0, 3, 0.2)
    assert (db.nodes[0].host, db.nodes[0].port) == ("host", 3306)


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """config/example.yaml describes the Haining topology and validates."""
    monkeypatch.setenv("MINHU_TOKEN", "example-token")
    monkeypatch.setenv("ZZD_PROXY_PASSWORD", "example-proxy-password")
    monkeypatch.setenv("MINHU_SIGN_SECRET", "example-sign-secret")
    monkeypatch.setenv("CALLBACK_TOKEN", "example-callback-token")
    config = load_config(ROOT / "config" / "example.yaml")
    names = {c.name for c in config.checks}
    assert {"police-110", "grassroots", "province-minhu", "zzd-proxy", "jump-host"} <= names
    assert all(len(c.nodes) >= 2 for c in config.checks if c.name in {"police-110", "grassroots"})
    text = (ROOT / "config" / "example.yaml").read_text()
    assert "://" in text and all(
        ".invalid" in n.url for c in config.checks for n in c.nodes if hasattr(n, "url")
    )


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_file_names_the_problem(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each invalid file is refused with a message naming the file, the path and the fault."""
    monkeypatch.setenv("HOTLINE_TEST_EMPTY_VAR", "")
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message.startswith(str(path))
    assert expected in message


@pytest.mark.e2e
def test_cli_config_error_exit_3_without_traceback() -> None:
    """`probe --check-config` on a bad file exits 3 with the message and no traceback."""
    path = ROOT / "tests" / "invalid" / "bad-url-scheme.yaml"
    proc = subprocess.run(
        [*command("probe"), "--check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        cwd=CWD,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 3
    assert "checks[0].nodes[1].url: url must start with http:// or https://" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        (3, 3.0),
        ("1.5", 1.5),
        (0.25, 0.25),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    """Durations accept ms/s/m/h suffixes and plain seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 sec", "-1s", "", "ms", True, None, [1]])
def test_bad_durations(bad: object) -> None:
    """Anything else is refused with the accepted forms in the message."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_format_duration_round_trips() -> None:
    """Durations print in the unit a person would write."""
    for seconds in (0.2, 3.0, 120.0, 7200.0, 90.0):
        assert parse_duration(format_duration(seconds)) == seconds


def test_environment_overrides_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """PROBE_DEFAULTS__TIMEOUT overrides the file's default and reaches inheriting checks."""
    monkeypatch.setenv("PROBE_DEFAULTS__TIMEOUT", "9s")
    monkeypatch.setenv("PROBE_CONCURRENCY", "7")
    config = parse_config(ISSUE_EXAMPLE)
    assert config.defaults.timeout == 9.0
    assert config.concurrency == 7
    assert config.check("db-1").timeout == 9.0
    assert config.check("police-110").timeout == 3.0  # its own value still wins
    assert config.defaults.retries.attempts == 3  # deep merge keeps sibling keys


def test_secrets_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """${env:X} and ${file:P} resolve, and the values never show in reprs or dumps."""
    monkeypatch.setenv("CANARY_TOKEN", "canary-8c1f2e")
    secret_file = tmp_path / "sign-key"
    secret_file.write_text("canary-file-77a1\n")
    config = parse_config(f"""
checks:
  - name: web
    kind: http
    headers:
      X-Token: "${{env:CANARY_TOKEN}}"
      X-Sign-Key: "${{file:{secret_file}}}"
      X-Both: "t=${{env:CANARY_TOKEN}};k=${{file:{secret_file}}}"
    nodes: [{{name: a, url: "https://user:canary-pw-93@a.invalid/"}}]
""")
    check = config.check("web")
    assert isinstance(check, HttpCheck)
    assert check.headers["X-Token"] == SecretStr("canary-8c1f2e")
    assert check.headers["X-Both"].get_secret_value() == "t=canary-8c1f2e;k=canary-file-77a1"
    assert check.headers["X-Sign-Key"].get_secret_value() == "canary-file-77a1"
    assert check.nodes[0].url == "https://user:canary-pw-93@a.invalid/"  # probes get it whole
    for rendered in (
        repr(config),
        str(config),
        config.model_dump_json(),
        str(config.model_dump()),
        repr(check.nodes[0]),
    ):
        assert "canary-8c1f2e" not in rendered and "canary-file-77a1" not in rendered
        assert "canary-pw-93" not in rendered
    assert "https://a.invalid/" in repr(check.nodes[0])
    assert set(secret_values(config)) == {
        "canary-8c1f2e",
        "canary-file-77a1",
        "canary-pw-93",
        "t=canary-8c1f2e;k=canary-file-77a1",
    }


def test_missing_secret_names_variable_not_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing secret is reported by its reference; nothing else of the file leaks."""
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError, match="environment variable NOT_SET_ANYWHERE is not set"):
        parse_config("""
checks:
  - name: web
    kind: http
    headers: {Authorization: "${env:NOT_SET_ANYWHERE}", X-Other: "canary-inline-5"}
    nodes: [{name: a, url: "https://a.invalid/"}]
""")


def test_config_file_search_order(tmp_path: Path) -> None:
    """--config wins over $PROBE_CONFIG, which wins over /etc/hotline-probe/config.yaml."""
    assert find_config("/a.yaml", {"PROBE_CONFIG": "/b.yaml"}) == Path("/a.yaml")
    assert find_config(None, {"PROBE_CONFIG": "/b.yaml"}) == Path("/b.yaml")
    assert find_config(None, {}) == Path("/etc/hotline-probe/config.yaml")


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    """A missing file, a directory and non-UTF-8 bytes each get their own message."""
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"checks: \xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)


def test_config_models_are_frozen() -> None:
    """Config objects are shared by every run; they cannot be changed in place."""
    config = parse_config(ISSUE_EXAMPLE)
    with pytest.raises(ValueError, match="frozen"):
        config.checks[0].timeout = 1.0  # type: ignore[misc]


def test_what_a_config_derives_is_made_with_it_and_with_each_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The index by name and the resolved references are made with the config, and
    made again for a copy (whose checks an update may change), never filled in later."""
    monkeypatch.setenv("COPY_TOKEN", "copy-token-77")
    config = parse_config(
        "checks:\n"
        "  - {name: a, kind: http, nodes: [{name: n, url: 'http://127.0.0.1:9/'}],\n"
        "     headers: {X-Token: '${env:COPY_TOKEN}'}}\n"
    )
    (first,) = config.checks
    assert config.check("a") is first
    assert config.referenced_secrets == {"copy-token-77"}
    renamed = first.model_copy(update={"name": "b"})
    changed = config.model_copy(update={"checks": [renamed]})
    assert changed.check("b") is renamed
    with pytest.raises(KeyError):
        changed.check("a")
    assert config.check("a") is first
    for copied in (changed, config.model_copy(deep=True), copy.copy(config)):
        assert copied.referenced_secrets == {"copy-token-77"}
    assert copy.deepcopy(config).check("a").name == "a"


def test_a_freshness_check_is_made_with_its_node() -> None:
    """The node a freshness check derives from its source is there from the start, so
    a check built outside a config file has it too."""
    check = FreshnessCheck.model_validate(
        {
            "name": "cb",
            "kind": "freshness",
            "max_age": "5m",
            "source": {"type": "push", "token": "t" * 16},
        }
    )
    (node,) = check.nodes
    assert (node.name, node.target) == ("push", "POST /heartbeat/cb")


def test_references_in_url_body_and_send(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """References resolve in URLs, bodies and payloads; only their values are secret."""
    monkeypatch.setenv("CANARY_PW", "canary/pw+9@x")
    monkeypatch.setenv("CANARY_SIGN", "canary-sign-41")
    monkeypatch.setenv("CANARY_SEND", "canary\\send-3")
    ticket = tmp_path / "ticket"
    ticket.write_text("canary-ticket-66\n")
    config = parse_config(f"""
checks:
  - name: web
    kind: http
    method: POST
    body: "<Envelope><Ticket>${{file:{ticket}}}</Ticket></Envelope>"
    nodes:
      - {{name: a, url: "https://ops:${{env:CANARY_PW}}@a.invalid/ws?sign=${{env:CANARY_SIGN}}&v=2"}}
      - {{name: b, url: "https://b.invalid/ws?apiKey=canary-inline-key-8&v=2"}}
  - name: mq
    kind: tcp
    send: 'AUTH ${{env:CANARY_SEND}}\\r\\n'
    nodes: [{{name: a, address: "mq.invalid:1414"}}]
""")
    web, mq = config.checks
    assert isinstance(web, HttpCheck) and isinstance(mq, TcpCheck)
    node_a = web.nodes[0]
    assert node_a.url == "https://ops:canary%2Fpw%2B9%40x@a.invalid/ws?sign=canary-sign-41&v=2"
    assert urlsplit(node_a.url).hostname == "a.invalid"
    assert web.body == "<Envelope><Ticket>canary-ticket-66</Ticket></Envelope>"
    assert mq.payload == b"AUTH canary\\send-3\r\n"  # the value's backslash is no escape
    secrets = set(secret_values(config))
    assert {
        "canary/pw+9@x",
        "canary-sign-41",
        "canary-ticket-66",
        "canary\\send-3",
        "canary-inline-key-8",
    } <= secrets
    assert not any("Envelope" in s or "a.invalid" in s or "AUTH" in s for s in secrets)
    for rendered in (repr(config), str(config), config.model_dump_json()):
        for canary in ("canary/pw", "canary%2Fpw", "canary-sign-41", "canary-ticket-66", "send-3"):
            assert canary not in rendered
        assert "canary-inline-key-8" not in rendered
    dumped = config.model_dump()["checks"]
    assert dumped[0]["body"] == f"<Envelope><Ticket>${{file:{ticket}}}</Ticket></Envelope>"
    assert dumped[0]["nodes"][0]["url"] == "https://a.invalid/ws?sign=REDACTED&v=2"


def test_header_line_break_from_secret_file(tmp_path: Path) -> None:
    """A secret file with an inner newline is refused, naming the header but not its value."""
    secret_file = tmp_path / "token"
    secret_file.write_text("canary-line-1\ncanary-line-2\n")
    with pytest.raises(ConfigError) as raised:
        parse_config(f"""
checks:
  - name: web
    kind: http
    headers: {{X-Token: "${{file:{secret_file}}}"}}
    nodes: [{{name: a, url: "https://a.invalid/"}}]
""")
    message = str(raised.value)
    assert "checks[0].headers.X-Token: header value contains a line break" in message
    assert "canary-line" not in message


@pytest.mark.parametrize("name", ["X Token", "X-Token:", "X-Token\\r\\nX-Evil"])
def test_header_names_must_be_tokens(name: str) -> None:
    """A header name is written into the request as it stands; one that would forge a
    header or end the head is refused, and the message names it."""
    with pytest.raises(ConfigError) as raised:
        parse_config(f"""
checks:
  - name: web
    kind: http
    headers: {{"{name}": v}}
    nodes: [{{name: a, url: "http://a.invalid/"}}]
""")
    assert "checks[0].headers" in str(raised.value)
    assert "not a header name" in str(raised.value)


@pytest.mark.parametrize(
    "url", ["https://ops:canary-pw-1/x@a.invalid/", "https://ops:canary-pw-1@[a.invalid/"]
)
def test_url_errors_do_not_quote_the_password(url: str) -> None:
    """The parser's own message would quote the netloc, password and all."""
    with pytest.raises(ConfigError, match=r"checks\[0\]\.nodes\[0\]\.url: url ") as raised:
        parse_config(f'checks: [{{name: w, kind: http, nodes: [{{name: a, url: "{url}"}}]}}]')
    assert "canary-pw-1" not in str(raised.value)


def test_underscore_keys_are_not_settings_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """`_env_prefix` and friends in the file are unknown keys, not pydantic-settings options."""
    monkeypatch.setenv("X_CONCURRENCY", "3")
    with pytest.raises(ConfigError, match="_env_prefix: is not a known key"):
        parse_config('_env_prefix: "X_"\n' + ISSUE_EXAMPLE)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PROBE_CHECKS", "notjson"), ("PROBE_DEFAULTS__RETRIES", "{attempts: 2}")],
)
def test_bad_json_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """An override pydantic-settings cannot decode is a config error naming the variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"<config>: environment variable {variable}: not valid"):
        parse_config(ISSUE_EXAMPLE)


def test_deeply_nested_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nesting past the file's own bound is refused before decoding, naming the variable;
    JSON strings full of brackets are not nesting."""
    monkeypatch.setenv("PROBE_CHECKS", "[" * 3000 + "]" * 3000)
    with pytest.raises(
        ConfigError,
        match="<config>: environment variable PROBE_CHECKS: nested more than 200 levels deep",
    ):
        parse_config(ISSUE_EXAMPLE)
    monkeypatch.setenv("PROBE_CHECKS", '[{"name": "a", "title": "' + "[" * 3000 + '"}]')
    with pytest.raises(ConfigError, match=r"checks\[0\]: needs a 'kind:'"):
        parse_config(ISSUE_EXAMPLE)


@pytest.mark.e2e
@pytest.mark.parametrize("argv", [("probe", "--all"), ("probed",)], ids=["probe", "probed"])
def test_deeply_nested_override_exits_3_without_traceback(
    tmp_path: Path, argv: tuple[str, ...]
) -> None:
    """3,000 nested brackets in PROBE_CHECKS once crashed `probed` with a RecursionError
    traceback: now a config error, exit 3, from both programs."""
    config = tmp_path / "config.yaml"
    config.write_text('checks:\n  - {name: a, kind: tcp, nodes: [{name: n, address: "h:1"}]}\n')
    proc = subprocess.run(
        [*command(argv[0]), *argv[1:], "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=CWD,
        env={**os.environ, "PROBE_CHECKS": "[" * 3000 + "]" * 3000},
        timeout=30,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    assert (
        f"{argv[0]}: {config}: environment variable PROBE_CHECKS: nested more than 200 levels deep"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_bad_default_is_blamed_once() -> None:
    """A bad `defaults:` value is reported at defaults.<key>, not again at every check."""
    with pytest.raises(ConfigError) as raised:
        parse_config("""
defaults: {timeout: 0s, confirm_after: 0}
checks:
  - {name: a, kind: tcp, nodes: [{name: n, address: "h.invalid:1"}]}
  - {name: b, kind: tcp, nodes: [{name: n, address: "h.invalid:2"}]}
""")
    lines = str(raised.value).splitlines()
    assert lines[0] == "<config>: 2 problems:"
    assert sorted(lines[1:]) == [
        "  defaults.confirm_after: Input should be greater than or equal to 1",
        "  defaults.timeout: Input should be greater than 0",
    ]


def test_duplicate_keys_deep_in_the_file() -> None:
    """A key written twice inside a check is refused too; merge keys still override."""
    with pytest.raises(
        ConfigError, match="line 5, column 5: not valid YAML: duplicate key 'timeout'"
    ):
        parse_config("checks:\n  - name: a\n    kind: tcp\n    timeout: 1s\n    timeout: 2s\n")
    config = parse_config("""
checks:
  - &base {name: a, kind: tcp, timeout: 1s, nodes: [{name: n, address: "h.invalid:1"}]}
  - {<<: *base, name: b, timeout: 2s}
""")
    assert [(c.name, c.timeout) for c in config.checks] == [("a", 1.0), ("b", 2.0)]


def test_default_node_deadline_leaves_the_last_attempt_its_timeout() -> None:
    """3 attempts of 1 s, backoff 200 ms: 3 s + the longest waits (0.2+0.2) + (0.4+0.2)."""
    config = parse_config("""
checks:
  - name: db
    kind: tcp
    timeout: 1s
    retries: {attempts: 3, backoff: 200ms, max_backoff: 5s}
    nodes: [{name: a, address: "h.invalid:1"}]
""")
    assert config.checks[0].node_deadline() == pytest.approx(4.0)


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    """A CA, a client certificate with its key (plain and encrypted), a stranger's key."""
    import trustme
    from cryptography.hazmat.primitives import serialization

    ca = trustme.CA()
    client = ca.issue_cert("client.invalid")
    files = {
        name: tmp_path / f"{name}.pem"
        for name in ("ca", "cert", "key", "other_key", "encrypted_key", "junk")
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["key"]))
    ca.issue_cert("other.invalid").private_key_pem.write_to_path(str(files["other_key"]))
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), password=None)
    files["encrypted_key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"canary-key-pw-5"),
        )
    )
    files["junk"].write_text("not a certificate\n")
    return files


def tls_config(tls: str) -> str:
    node = '{name: a, address: "a.invalid:443"}'
    return f"checks: [{{name: t, kind: tls, tls: {tls}, nodes: [{node}]}}]"


@pytest.mark.parametrize(
    ("tls", "problem"),
    [
        ("{ca_file: $junk}", "ca_file $junk: no certificates found"),
        ("{cert_file: $key, key_file: $key}", "cert_file $key: no certificates found"),
        ("{cert_file: $cert}", "cert_file $cert: no private key found"),
        ("{cert_file: $cert, key_file: $junk}", "key_file $junk: no private key found"),
        (
            "{cert_file: $cert, key_file: $other_key}",
            "key_file $other_key: the key does not match the certificate in cert_file $cert",
        ),
        (
            "{cert_file: $cert, key_file: $encrypted_key}",
            "key_file $encrypted_key is encrypted: set key_password",
        ),
        (
            "{cert_file: $cert, key_file: $encrypted_key, key_password: wrong-pw}",
            "key_file $encrypted_key: key_password does not decrypt the key",
        ),
    ],
)
def test_bad_tls_files_are_config_errors(
    tls_files: dict[str, Path], tls: str, problem: str
) -> None:
    """Each unusable TLS file is refused at load, naming the file and why (never a prompt)."""
    paths = {name: str(path) for name, path in tls_files.items()}
    with pytest.raises(ConfigError) as raised:
        parse_config(tls_config(Template(tls).substitute(paths)))
    assert f"checks[0].tls: {Template(problem).substitute(paths)}" in str(raised.value)


def test_encrypted_key_with_its_password(
    tls_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """key_password (a secret, here from the environment) unlocks an encrypted key."""
    monkeypatch.setenv("CLIENT_KEY_PW", "canary-key-pw-5")
    config = parse_config(
        tls_config(
            f"{{ca_file: {tls_files['ca']}, cert_file: {tls_files['cert']}, "
            f"key_file: {tls_files['encrypted_key']}, key_password: '${{env:CLIENT_KEY_PW}}'}}"
        )
    )
    tls = config.checks[0].tls
    assert tls is not None and build_ssl_context(tls).verify_mode == ssl.CERT_REQUIRED
    assert "canary-key-pw-5" in set(secret_values(config))
    assert "canary-key-pw-5" not in repr(config) + config.model_dump_json()


@pytest.mark.e2e
def test_cli_bad_tls_file_exit_3(tls_files: dict[str, Path], tmp_path: Path) -> None:
    """`probe --check-config` refuses a CA file that is not PEM: exit 3, not an outage later."""
    path = tmp_path / "config.yaml"
    path.write_text(tls_config(f"{{ca_file: {tls_files['junk']}}}") + "\n")
    proc = subprocess.run(
        [*command("probe"), "--check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        cwd=CWD,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 3
    assert f"ca_file {tls_files['junk']}: no certificates found" in proc.stderr


def test_checks_written_alike_share_their_frozen_parts() -> None:
    """Equal sub-models are one object, checks that set the same keys share one
    fields-set, and nothing that differs is shared; copying a check with an update
    leaves the others as they were."""
    config = parse_config(
        "checks:\n"
        + "".join(
            f'  - {{name: c{i}, kind: http, nodes: [{{name: n, url: "http://127.0.0.1:9/{i}"}}], '
            f"expect: {{status: [{200 if i < 3 else 204}]}}, retries: {{attempts: 2}}}}\n"
            for i in range(4)
        )
    )
    a, b, c, d = config.checks
    assert isinstance(a, HttpCheck) and isinstance(b, HttpCheck)
    assert isinstance(c, HttpCheck) and isinstance(d, HttpCheck)
    assert a.retries is b.retries is d.retries
    assert a.expect is b.expect is c.expect
    assert d.expect is not a.expect
    assert d.expect.status == [204]
    assert a.nodes[0] is not b.nodes[0]
    assert a.__pydantic_fields_set__ is b.__pydantic_fields_set__
    changed = a.model_copy(update={"title": "new"})
    assert "title" in changed.model_fields_set
    assert "title" not in b.model_fields_set


def test_alike_checks_fit_in_little_memory() -> None:
    """The config of 1,000 HTTP checks takes under 3 KB a check once loaded (it was
    3.6 KB before equal parts were shared; the daemon holds it for its whole life)."""
    import gc
    import tracemalloc

    document = "checks:\n" + "".join(
        f'  - {{name: c{i}, kind: http, nodes: [{{name: n, url: "http://127.0.0.1:9/c{i}"}}], '
        f"expect: {{status: [200]}}, retries: {{attempts: 1}}}}\n"
        for i in range(1000)
    )
    gc.collect()
    tracemalloc.start()
    try:
        config = parse_config(document)
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(config.checks) == 1000
    assert held / 1000 < 3000, f"{held / 1000:.0f} bytes a check"


def test_parts_that_only_compare_equal_are_not_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two references that resolve to the same text, and 0.0 beside -0.0, stay apart:
    sharing must not change how a check is written back (model_dump) or what it sends."""
    monkeypatch.setenv("PU", "alice")
    monkeypatch.setenv("PU2", "alice")
    config = parse_config(
        "checks:\n"
        + "".join(
            f'  - {{name: c{i}, kind: http, nodes: [{{name: n, url: "http://127.0.0.1:9/"}}], '
            f"expect: {{json: {{x: {zero}}}}}, "
            f'proxy: {{url: "http://127.0.0.1:3128", username: "${{env:{var}}}"}}}}\n'
            for i, (zero, var) in enumerate((("-0.0", "PU"), ("0.0", "PU2")))
        )
    )
    a, b = config.checks
    assert isinstance(a, HttpCheck) and isinstance(b, HttpCheck)
    assert a.proxy is not b.proxy and a.expect is not b.expect
    assert [c.model_dump()["proxy"]["username"] for c in (a, b)] == ["${env:PU}", "${env:PU2}"]
    assert str(a.expect.json_fields["x"]) == "-0.0"


def test_urls_show_no_credentials_in_a_repr() -> None:
    """A node, a proxy and a freshness http source hide the password and secret query
    values of their URL wherever the model itself is printed (a log line, a traceback)."""
    config = parse_config(
        "checks:\n"
        '  - {name: web, kind: http, nodes: [{name: n, url: "https://u:canary-pw-1@h.invalid/"}], '
        'proxy: {url: "http://p:canary-pw-2@proxy.invalid:3128"}}\n'
        "  - {name: cb, kind: freshness, max_age: 5m, source: {type: http, "
        'url: "https://u:canary-pw-3@h.invalid/x?token=canary-tok-4", field: at}}\n'
    )
    web, callback = config.checks
    assert isinstance(web, HttpCheck) and isinstance(callback, FreshnessCheck)
    shown = repr(web.nodes[0]) + repr(web.proxy) + repr(callback.source)
    assert "canary" not in shown
    assert "h.invalid" in shown and "proxy.invalid" in shown
