"""The offline bundle for the 政务云 ops host: built by `scripts/bundle.sh` (`make bundle`),
installed by its own install.sh with no package index reachable, and run from there.

"No index reachable" is a network namespace of the test's own (`unshare -n`) holding only
a loopback interface: pip there could not reach an index if it tried, and `probe demo`
talks to its simulators on 127.0.0.1 as always.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUNDLE_SCRIPT = ROOT / "scripts" / "bundle.sh"
GLIBC_MINOR = 28  # the default target: wheels must run on glibc 2.28
LEGACY = {"manylinux1": 5, "manylinux2010": 12, "manylinux2014": 17}
# The interpreter under this venv: install.sh makes a venv of its own, as on a host.
BASE_PYTHON = str(
    Path(sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")
)

pytestmark = pytest.mark.timeout(240)


def _environment() -> dict[str, str]:
    """This environment less pip's settings: an ops host has none of this machine's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}


def _build(out: Path, **target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BUNDLE_SCRIPT), str(out)],
        env={**os.environ, "PYTHON": sys.executable, **target},
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle, built once for this module."""
    out = tmp_path_factory.mktemp("dist")
    done = _build(out)
    assert done.returncode == 0, done.stderr
    (archive,) = out.glob("hotline-probe-*.tar.gz")
    return archive


@pytest.fixture
def unpacked(bundle: Path, tmp_path: Path) -> Path:
    with tarfile.open(bundle) as archive:
        archive.extractall(tmp_path / "bundle", filter="data")
    (folder,) = (tmp_path / "bundle").iterdir()
    return folder


def offline(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """ARGV in a new network namespace with nothing but loopback."""
    script = 'ip link set lo up && exec "$@"'
    return subprocess.run(
        ["unshare", "--net", "bash", "-c", script, "offline", *argv],
        cwd=cwd,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _glibc_levels(platform_tags: str) -> list[int]:
    levels = []
    for tag in platform_tags.split("."):
        if found := re.fullmatch(r"manylinux_2_(\d+)_x86_64|manylinux_2_(\d+)_aarch64", tag):
            levels.append(int(found.group(1) or found.group(2)))
        elif (legacy := tag.rsplit("_", 1)[0].removesuffix("_x86")) in LEGACY:
            levels.append(LEGACY[legacy])
    return levels


def test_bundle_holds_wheels_for_glibc_2_28_and_the_files_to_install(bundle: Path) -> None:
    """Named for its platform; every binary wheel runs on glibc 2.28 (cryptography's 2.34
    wheel once slipped in); each wheel pinned in requirements.txt; uvloop included."""
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None
    name = f"hotline-probe-{version.group(1)}-cp311-manylinux_2_28_{os.uname().machine}"
    assert bundle.name == f"{name}.tar.gz"
    with tarfile.open(bundle) as archive:
        members = {m.name: m for m in archive.getmembers()}
        requirements = archive.extractfile(f"{name}/requirements.txt")
        assert requirements is not None
        pinned = requirements.read().decode()
    for needed in ("install.sh", "hotline-probe.service", "config.example.yaml", "BUNDLE-INFO"):
        assert f"{name}/{needed}" in members, needed
    assert members[f"{name}/install.sh"].mode & 0o111, "install.sh is not executable"
    wheels = [Path(n).name for n in members if n.endswith(".whl")]
    assert any(w.startswith("hotline_probe-") for w in wheels)
    assert any(w.startswith("uvloop-") for w in wheels)
    assert any(w.startswith("cryptography-") for w in wheels)
    for wheel in wheels:
        platform_tags = wheel.removesuffix(".whl").split("-")[-1]
        if platform_tags != "any":
            levels = _glibc_levels(platform_tags)
            assert levels and min(levels) <= GLIBC_MINOR, f"{wheel} needs a newer glibc"
        project, release = wheel.split("-")[:2]
        assert re.search(rf"^{project.replace('_', '-')}(\[fast\])?=={release}$", pinned, re.M)


def test_offline_install_runs_the_demo_then_upgrades_and_uninstalls(
    unpacked: Path, tmp_path: Path
) -> None:
    """install.sh with no index: the venv, the unit pointing at the prefix, a config
    skeleton; the installed `probe demo` works; --upgrade keeps an edited config; a
    second plain install refuses; --uninstall removes the program and unit, keeps the
    edited config."""
    prefix, etc, units = tmp_path / "opt", tmp_path / "etc", tmp_path / "units"
    places = ["--prefix", str(prefix), "--config-dir", str(etc), "--unit-dir", str(units)]
    python = ["--python", BASE_PYTHON]

    done = offline(["./install.sh", *places, *python], unpacked)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Next:" in done.stdout and f"Edit {etc}/config.yaml" in done.stdout
    unit = (units / "hotline-probe.service").read_text()
    assert f"ExecStart={prefix}/bin/probed --config {etc}/config.yaml" in unit
    assert "/opt/hotline-probe" not in unit
    config = etc / "config.yaml"
    assert config.read_text() == (unpacked / "config.example.yaml").read_text()
    assert config.stat().st_mode & 0o777 == 0o644  # the service's dynamic user must read it

    demo = offline(
        [str(prefix / "bin" / "probe"), "demo", "--rounds", "2", "--interval", "0"], tmp_path
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    first_round = demo.stdout.split("== round 2")[0]
    police = next(line for line in first_round.splitlines() if line.startswith("police-110 "))
    assert "DEGRADED" in police and "node-b" in police

    config.write_text(config.read_text() + "# edited by the operator\n")
    again = offline(["./install.sh", *places, *python], unpacked)
    assert again.returncode == 1 and "exists already" in again.stderr
    upgraded = offline(["./install.sh", "--upgrade", *places, *python], unpacked)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert config.read_text().endswith("# edited by the operator\n")
    assert "kept" in upgraded.stdout
    assert (prefix / "bin" / "probed").exists()
    assert not list(tmp_path.glob("opt.old-*")), "the previous version was left beside"

    removed = offline(["./install.sh", "--uninstall", *places], unpacked)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not prefix.exists()
    assert not (units / "hotline-probe.service").exists()
    assert not (etc / "config.yaml.example").exists()
    assert config.read_text().endswith("# edited by the operator\n"), "the edited config went"
    assert f"kept {config}" in removed.stdout


def test_uninstall_removes_an_unedited_skeleton(unpacked: Path, tmp_path: Path) -> None:
    """What install.sh put there and nobody changed goes with --uninstall, empty dir too."""
    prefix, etc = tmp_path / "opt", tmp_path / "etc"
    places = ["--prefix", str(prefix), "--config-dir", str(etc), "--unit-dir", str(tmp_path)]
    done = offline(["./install.sh", *places, "--python", BASE_PYTHON], unpacked)
    assert done.returncode == 0, done.stderr
    removed = offline(["./install.sh", "--uninstall", *places], unpacked)
    assert removed.returncode == 0, removed.stderr
    assert not prefix.exists() and not etc.exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("PYTHON_VERSION=3.99", "this bundle's wheels are for CPython 3.99"),
        ("GLIBC=2.99", "the bundle's wheels need glibc 2.99 or newer"),
        ("ARCH=s390x", "the bundle is for s390x"),
    ],
)
def test_install_refuses_a_host_the_wheels_do_not_fit(
    unpacked: Path, tmp_path: Path, setting: str, message: str
) -> None:
    """Another Python, an older glibc, another processor: a clear refusal before anything
    is written, not a broken venv."""
    info = unpacked / "BUNDLE-INFO"
    key = setting.split("=")[0]
    lines = [
        setting if line.startswith(f"{key}=") else line for line in info.read_text().split("\n")
    ]
    info.write_text("\n".join(lines))
    prefix = tmp_path / "opt"
    done = offline(["./install.sh", "--prefix", str(prefix), "--python", BASE_PYTHON], unpacked)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not prefix.exists()


def test_bundle_names_a_dependency_without_a_fitting_wheel(tmp_path: Path) -> None:
    """For a glibc older than any wheel of a dependency, the build stops and says which
    dependency, for which target, instead of pip's resolver trace."""
    done = _build(tmp_path, GLIBC="2.5")
    assert done.returncode == 1
    assert re.search(
        r"bundle: \S+ has no wheel for CPython 3\.11 on \S+ with glibc 2\.5 or older", done.stderr
    ), done.stderr
    assert not list(tmp_path.glob("*.tar.gz"))
