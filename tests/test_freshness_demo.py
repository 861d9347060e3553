"""`probe demo` shows the provincial callback check (省民呼数据回传) going down and up:
in its scripted rounds, and to a separate `probe --all --json` while the control API
switches the simulated receiver."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cli_run import CWD, command, probe

pytestmark = pytest.mark.e2e  # `probe demo` and `probe --all` as processes

CHECK = "province-callback"


async def test_demo_rounds_show_the_callback_check_down_and_up() -> None:
    """Up while callbacks flow, stale while the receiver fails them, up once mended."""
    run = await probe("demo", "--rounds", "4", "--interval", "0")
    assert run.code == 0, run.stderr
    rounds = run.stdout.split("== round ")[1:]
    rows = [next(line for line in r.splitlines() if line.startswith(CHECK)) for r in rounds]
    assert "省民呼数据回传" in rows[0]
    assert [row.split()[3] for row in rows] == ["UP", "DOWN", "DOWN", "UP"]
    assert "push: stale (newest sign of life" in rows[1]
    assert "the province's data return (回传) fails at our receiver" in rounds[1]


async def status_of(config: str) -> tuple[int, dict[str, Any]]:
    run = await probe("--all", "--json", "--events", "off", "-c", config)
    document = json.loads(run.stdout)
    (check,) = [c for c in document["checks"] if c["name"] == CHECK]
    return run.code, check


async def test_probe_all_against_the_running_demo_follows_the_switch(tmp_path: Path) -> None:
    """`probe demo --keep-running` prints its config and control API; `probe --all --json`
    with that config reads the demo's heartbeats: down when the receiver is switched to
    erroring, up again when it is switched back."""
    demo = await asyncio.create_subprocess_exec(
        *command("probe"),
        "demo",
        "--rounds",
        "1",
        "--interval",
        "0.2",
        "--keep-running",
        cwd=CWD,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert demo.stdout is not None
    output = demo.stdout
    reader: asyncio.Task[None] | None = None
    try:
        config = control = ""
        while not (config and control):
            line = (await asyncio.wait_for(output.readline(), 30)).decode()
            assert line, "the demo ended before printing its config"
            if found := re.search(r"try: probe --all -c (\S+)\)", line):
                config = found.group(1)
            if found := re.search(r"control API: (\S+)nodes", line):
                control = found.group(1)

        async def drain() -> None:  # the demo prints a table per round; keep its pipe open
            while await output.read(65536):
                pass

        reader = asyncio.create_task(drain())

        async def switch(mode: str) -> None:
            async with (
                aiohttp.ClientSession() as session,
                session.put(f"{control}nodes/{CHECK}/receiver", json={"mode": mode}) as answer,
            ):
                assert answer.status == 200

        async def wait_for(status: str) -> dict[str, Any]:
            for _ in range(60):
                _, check = await status_of(config)
                if check["status"] == status:
                    return check
                await asyncio.sleep(0.2)
            raise AssertionError(f"{CHECK} never became {status}: {check}")

        up = await wait_for("up")
        assert up["nodes"][0]["details"]["age_seconds"] < 60
        await switch("erroring")
        down = await wait_for("down")
        assert down["nodes"][0]["error"]["type"] == "stale"
        await switch("healthy")
        await wait_for("up")
    finally:
        demo.send_signal(signal.SIGINT)
        await asyncio.wait_for(demo.wait(), 15)
        if reader is not None:
            reader.cancel()
