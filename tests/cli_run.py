"""Running ``probe`` and ``probed`` as real processes from a test.

By default they run from this source tree (``python -m cli``). With
``HOTLINE_PROBE_INSTALLED=VENV`` they are that virtual environment's console scripts,
run from a folder outside the tree: `make test` installs the built wheel into a fresh
venv and runs the tests marked ``e2e`` against it, so a module the wheel leaves out
fails there as it would on an ops host (an editable install hides it).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALLED = os.environ.get("HOTLINE_PROBE_INSTALLED") or None
_MODULES = {"probe": "cli", "probed": "daemon"}
# The installed copy runs where the tree is not on its path: not the checkout's folder.
CWD = Path(tempfile.gettempdir()) if INSTALLED else ROOT


def command(program: str) -> list[str]:
    """The argv that starts ``probe`` or ``probed``."""
    if INSTALLED:
        return [str(Path(INSTALLED) / "bin" / program)]
    return [sys.executable, "-m", _MODULES[program]]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


async def probe(*args: str, env: dict[str, str] | None = None) -> Run:
    """``probe ARGS`` with ``env`` added to this process's environment."""
    process = await asyncio.create_subprocess_exec(
        *command("probe"),
        *args,
        cwd=CWD,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())
