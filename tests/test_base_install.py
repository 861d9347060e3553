"""`probe` as a base install runs it: without the optional ``[fast]`` extra (no uvloop).

Here uvloop is made unimportable by a ``sitecustomize`` on ``PYTHONPATH``; the installed
copy that `make test` checks (scripts/test-installed.sh) has no uvloop at all. Without
it, the program once ran inside ``except ImportError:``, Python chained that exception
into every later one, and the plain HTTP client took it for its failure: a body over
the cap was reported as "probe crashed: ModuleNotFoundError".
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

from engine import loop
from tests.cli_run import probe
from tests.endpoint import scripted

TOO_BIG = b"HTTP/1.1 200 OK\r\n\r\n" + b"a" * 50_000
ANNOUNCED_BIG = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n"
NOT_GZIP = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 15\r\n\r\nnot gzip at all"
CUT_GZIP = gzip.compress(b'{"state": "ok"}' * 100)[:-12]
SHORT_GZIP = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (
    len(CUT_GZIP),
    CUT_GZIP,
)


@pytest.fixture
def without_uvloop(tmp_path: Path) -> dict[str, str]:
    """The environment for a `probe` that cannot import uvloop, as on a base install."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['uvloop'] = None\n")
    return {"PYTHONPATH": str(shim)}


def test_the_program_runs_outside_the_import_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without uvloop, an exception the program raises carries no ImportError context."""
    monkeypatch.setitem(sys.modules, "uvloop", None)

    async def fails() -> None:
        raise ValueError("the program's own failure")

    with pytest.raises(ValueError, match="own failure") as raised:
        loop.run(fails())
    assert raised.value.__context__ is None


@pytest.mark.e2e  # `probe` as a process: `make test` repeats it on the wheel, no extras
@pytest.mark.parametrize(
    ("answer", "kind", "words"),
    [
        (TOO_BIG, "body_too_large", "10000"),
        (ANNOUNCED_BIG, "body_too_large", "99999999 bytes announced"),
        (NOT_GZIP, "protocol", "gzip"),
        (SHORT_GZIP, "protocol", "gzip body is cut short"),
    ],
    ids=["body-over-cap", "announced-big", "corrupt-gzip", "cut-gzip"],
)
async def test_plain_client_failures_keep_their_type_without_uvloop(
    tmp_path: Path, without_uvloop: dict[str, str], answer: bytes, kind: str, words: str
) -> None:
    """`probe --all` on a base install names a body failure as such, never `internal`."""
    async with scripted(answer, close=False) as port:
        config = tmp_path / "config.yaml"
        config.write_text(
            "checks:\n"
            "  - {name: web, kind: http, timeout: 2s, retries: {attempts: 1}, "
            f'max_body_bytes: 10000, nodes: [{{name: a, url: "http://127.0.0.1:{port}/"}}]}}\n'
        )
        run = await probe(
            "--all", "--json", "-c", str(config), "--events", "off", env=without_uvloop
        )
    assert run.code == 2, run.stdout + run.stderr
    error = json.loads(run.stdout)["checks"][0]["nodes"][0]["error"]
    assert error["type"] == kind, error
    assert words in error["message"]
    assert "uvloop" not in run.stdout + run.stderr
