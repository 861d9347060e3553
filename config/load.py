"""Find, read and validate the config file; every failure becomes one ConfigError.

The YAML is read here (config/yaml_doc.py) rather than through pydantic-settings'
YamlConfigSettingsSource so that a syntax error can name its line and column and an
unreadable file its reason.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import ValidationError

from config import env
from config.probe_config import ProbeConfig
from config.yaml_doc import load_document

DEFAULT_PATH = Path("/etc/hotline-probe/config.yaml")
ENV_VAR = "PROBE_CONFIG"


class ConfigError(Exception):
    """A config problem, worded for the person who edits the file."""


def find_config(cli_path: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """``--config``, then ``$PROBE_CONFIG``, then the system path."""
    if cli_path:
        return Path(cli_path)
    if environ.get(ENV_VAR):
        return Path(environ[ENV_VAR])
    return DEFAULT_PATH


def load_for(program: str, cli_path: str | None) -> tuple[Path, ProbeConfig] | None:
    """What `probe` and `probed` do first: find and load the file, or say why not on
    stderr (the caller then exits 3)."""
    path = find_config(cli_path)
    try:
        return path, load_config(path)
    except ConfigError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return None


def load_config(path: Path) -> ProbeConfig:
    return parse_config(_read(path), source=str(path))


def parse_config(document: str, *, source: str = "<config>") -> ProbeConfig:
    """Validate a YAML document, with ``PROBE_*`` environment variables overriding it."""
    try:
        data = load_document(document)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with a 'checks:' list")
    # No setting starts with "_"; say so plainly rather than through pydantic's wording
    # for private attributes.
    if options := [key for key in data if isinstance(key, str) and key.startswith("_")]:
        _refuse(source, [f"{key}: {_WORDING['extra_forbidden']}" for key in options])
    try:
        environment = env.overrides(
            {name: field.annotation for name, field in ProbeConfig.model_fields.items()}
        )
    except env.OverrideError as exc:
        raise ConfigError(f"{source}: {_environment_problem(exc)}") from None
    merged = env.deep_merge(data, environment)
    try:
        return ProbeConfig.model_validate(merged)
    except ValidationError as exc:
        _refuse(source, [f"{_path(e['loc'], merged)}: {_message(e)}" for e in exc.errors()])


def _refuse(source: str, lines: list[str]) -> NoReturn:
    noun = "problem" if len(lines) == 1 else "problems"
    raise ConfigError(
        f"{source}: {len(lines)} {noun}:\n" + "\n".join(f"  {line}" for line in lines)
    ) from None


_SETTINGS_FIELD = re.compile(r'field "([^"]+)"')


def _environment_problem(exc: env.OverrideError) -> str:
    """pydantic-settings could not decode an override (``PROBE_CHECKS=notjson``).

    It names the field; the variable may be ``PROBE_CHECKS`` or a nested one such as
    ``PROBE_DEFAULTS__RETRIES``, in any case, so the environment is searched for it.
    """
    if exc.variable:
        return f"environment variable {exc.variable}: {exc}"
    match = _SETTINGS_FIELD.search(str(exc))
    variable = (env.PREFIX + (match.group(1) if match else "")).upper()
    names = sorted(
        name
        for name in os.environ
        if name.upper() == variable or name.upper().startswith(variable + env.DELIMITER)
    )
    named = " or ".join(names) or f"{variable}*"
    # The decoder's message gives a position, never the value (it may hold a token).
    cause = exc.__cause__
    if isinstance(cause, json.JSONDecodeError):
        return (
            f"environment variable {named}: not valid JSON ({cause.msg} at char {cause.pos}); "
            "a list or mapping setting given in the environment must be JSON"
        )
    return f"environment variable {named}: cannot be parsed"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (give --config PATH or set {ENV_VAR})") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return f"not valid YAML: {problem}"
    return f"line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {problem}"


def _path(loc: Sequence[int | str], data: Any) -> str:
    """``('checks', 2, 'http', 'nodes', 0, 'url')`` -> ``checks[2].nodes[0].url``.

    pydantic puts the discriminator's value into the location of a union member; it
    is not a key of the file, so it is dropped by walking the document alongside.
    """
    out = ""
    node = data
    after_index = False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            after_index = True
            continue
        if _is_tag(node, part, after_index):
            after_index = False
            continue
        after_index = False
        out += f".{part}" if out else str(part)
        node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _is_tag(node: Any, part: str, after_index: bool) -> bool:
    """Whether ``part`` is a union tag: a check's ``kind:`` (right after its index in
    ``checks``) or a freshness source's ``type:`` (never also one of its keys)."""
    if not isinstance(node, dict):
        return False
    return (after_index and node.get("kind") == part) or (
        node.get("type") == part and part not in node
    )


_WORDING = {
    "missing": "is required",
    "extra_forbidden": "is not a known key (check the spelling)",
}


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind in _WORDING:
        return _WORDING[kind]
    ctx = error.get("ctx", {})
    tag = "type" if ctx.get("discriminator") == "'type'" else "kind"
    noun = "source type" if tag == "type" else "kind"
    if kind == "union_tag_invalid":
        return f"unknown {noun} {ctx.get('tag')!r}; known {noun}s: {ctx.get('expected_tags')}"
    if kind == "string_pattern_mismatch":
        return "use lowercase letters, digits and inner hyphens only (it becomes a metric label)"
    if kind == "union_tag_not_found":
        if tag == "type":
            return "needs a 'type:' (push, http, sql, file)"
        return "needs a 'kind:' (http, tcp, tls, ...)"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")
