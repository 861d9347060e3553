"""The wheel users install holds the whole product: every package and module of the tree
that is not tests or tooling, the example config, and both console scripts.

The wheel is built here as `pip wheel .` builds it for a user. Running the installed copy
is `scripts/test-installed.sh`'s part (`make test`), which repeats the e2e tests with it.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOT_THE_PRODUCT = {"tests", "bench", "build", "dist", "docs", "scripts", "deploy"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel as `make bundle` and `make test` build it: from a clean copy of the tree."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-wheel.sh"), str(out), sys.executable],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("hotline_probe-*.whl")
    return zipfile.ZipFile(built)


def _tree_packages() -> set[str]:
    """Every package of the tree outside tests and tooling, as a path (events/outputs)."""
    found = set()
    for init in ROOT.rglob("__init__.py"):
        relative = init.parent.relative_to(ROOT)
        if relative.parts[0] in NOT_THE_PRODUCT or relative.parts[0].startswith("."):
            continue
        found.add(relative.as_posix())
    return found


def test_every_package_of_the_tree_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    """A package missing from the wheel (events.outputs once was) fails here, not on a host."""
    names = wheel.namelist()
    in_wheel = {str(PurePosixPath(n).parent) for n in names if n.endswith("/__init__.py")}
    tree = _tree_packages()
    assert {"config", "probes", "events/outputs", "probes/tcp_protocols"} <= tree
    assert tree - in_wheel == set(), "packages left out of the wheel"
    assert not {p for p in in_wheel if p.split("/")[0] in NOT_THE_PRODUCT}, "tooling in the wheel"
    # Every module of each package, not only its __init__.
    for package in tree:
        for module in (ROOT / package).glob("*.py"):
            assert f"{package}/{module.name}" in names, f"{package}/{module.name} not in the wheel"


def test_wheel_has_the_modules_scripts_and_data(wheel: zipfile.ZipFile) -> None:
    """cli.py and daemon.py, the example config `probe demo` reads, and both commands."""
    names = set(wheel.namelist())
    assert {"cli.py", "daemon.py", "config/example.yaml"} <= names
    # Top-level modules are listed by hand (py-modules): each one of the tree must be there.
    modules = {p.name for p in ROOT.glob("*.py")}
    assert modules - names == set(), "top-level modules left out of the wheel (py-modules)"
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = wheel.read(entry_points).decode()
    assert "probe = cli:main" in scripts
    assert "probed = daemon:main" in scripts
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    text = wheel.read(metadata).decode()
    assert f"Version: {project['version']}" in text
    for requirement in project["dependencies"]:
        name = requirement.split(">")[0].split("<")[0].split("=")[0].split(";")[0].strip()
        assert f"Requires-Dist: {name}" in text, f"{name} missing from the wheel's requirements"
