"""Config loading: the documented keys work, every invalid file is refused clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from config import secret_values
from config.duration import format_duration, parse_duration
from config.load import ConfigError, find_config, load_config, parse_config
from config.models import CHECK_MODELS, HttpCheck, TcpCheck, kind_of
from probes import PROBES

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


def test_cli_config_error_exit_3_without_traceback() -> None:
    """`probe --check-config` on a bad file exits 3 with the message and no traceback."""
    path = ROOT / "tests" / "invalid" / "bad-url-scheme.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "--check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
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
    for rendered in (repr(config), str(config), config.model_dump_json()):
        assert "canary-8c1f2e" not in rendered and "canary-file-77a1" not in rendered
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


def test_every_kind_in_the_schema_has_a_probe() -> None:
    """The discriminated union and the probe registry name the same kinds."""
    assert {kind_of(model) for model in CHECK_MODELS} == set(PROBES)


def test_config_models_are_frozen() -> None:
    """Config objects are shared by every run; they cannot be changed in place."""
    config = parse_config(ISSUE_EXAMPLE)
    with pytest.raises(ValueError, match="frozen"):
        config.checks[0].timeout = 1.0  # type: ignore[misc]
