"""The container image, built and run as a user without a registry builds and runs it.

buildah builds the Dockerfile from Debian's packages (`--isolation chroot`, `--pull=never`,
`--format docker`) on the local base image of scripts/build-base-image.sh (debootstrap),
with pip reaching its packages only through the build arguments a government network
needs: PIP_INDEX_URL names a mirror this module serves over HTTPS on 127.0.0.1, and the
`pip-ca` build secret carries the CA of the mirror's certificate (made here with trustme,
so nothing else in the build trusts it: a build that succeeds used the secret). podman
then runs the image with runc, read-only, as uid 10001: `probe demo`, and `probed` with
its /healthz and its HEALTHCHECK.

Root, buildah, podman, runc and debootstrap are required: a missing one FAILS these tests,
it does not skip them. Images stay in root's image store, so the base image (about a
minute of debootstrap, once) outlives the run and later runs take well under a minute.
The build itself is not cached (no --layers): its one costly step, pip, could not be, as
the mirror's port changes every run (and a cached layer would not exercise the CA), and
uncached builds leave no intermediate images behind; the previous run's image is removed.
Every container started here is removed, also on failure. Traffic: the wheels are
fetched from the package index with the host's pip (as `pip install` would); everything
else, build and containers included, stays on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import http.server
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
BASE_SCRIPT = ROOT / "scripts" / "build-base-image.sh"
BASE_IMAGE = "localhost/hotline-probe-base:bookworm"
IMAGE = "localhost/hotline-probe:test"
TOOLS = ("buildah", "podman", "runc", "debootstrap")
HINT = (
    "run `scripts/install-test-deps.sh .venv` as root to install buildah, podman, runc, debootstrap"
)
# A first run debootstraps the base image (about a minute) before it builds (about half a
# minute); a slow mirror can make that several times longer.
FIRST_BUILD_TIMEOUT = 1200
# podman's default nofile limit (1048576) is above this machine's hard limit: explicit ones.
ULIMITS = ["--ulimit", "nofile=8192:8192", "--ulimit", "nproc=4096:4096"]
# --network host: podman's own networks (CNI here) are not set up on the test machines, and
# the checks must reach the test's listeners on the host's 127.0.0.1 anyway.
RUN_OPTIONS = [
    "--runtime=runc",
    "--network=host",
    "--read-only",
    "--user=10001:10001",
    *ULIMITS,
]
# What `probe demo` prints on the host (simulator/demo.py's scenario): every failover.
DEMO_FAILOVERS = {
    "-> police-110: failed over from node-a to node-b (connection_refused)",
    "-> dns-police-110: failed over from dns-1 to dns-2 (dns)",
    "-> grassroots: failed over from node-a to node-b (http_status)",
    "-> province-minhu: failed over from primary to standby (timeout)",
}


def _require_tools() -> None:
    missing = [name for name in TOOLS if _which(name) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: {HINT}")
    if os.geteuid() != 0:
        pytest.fail("run as root: the image is built and run in root's podman image store")


def _which(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def _run(argv: list[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _ok(argv: list[str], *, timeout: float = 120) -> str:
    """stdout of a command that must succeed; its whole output in the failure otherwise."""
    result = _run(argv, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


# --- the mirror: a PEP 503 "simple" index over HTTPS on 127.0.0.1 ----------------------


def _base_target() -> tuple[str, list[str]]:
    """Python version and manylinux platform tags of the base image's python3.

    The wheels are chosen for the image's interpreter and glibc, not for this host's.
    """
    probe = (
        "import platform, sys; "
        "print(*sys.version_info[:2], platform.machine(), *platform.libc_ver())"
    )
    major, minor, machine, libc, libc_version = _ok(
        [
            "podman",
            "run",
            "--rm",
            *RUN_OPTIONS,
            "--no-healthcheck",
            BASE_IMAGE,
            "python3",
            "-c",
            probe,
        ]
    ).split()
    assert libc == "glibc", libc
    glibc_minor = int(libc_version.split(".")[1])
    platforms = [f"manylinux_2_{n}_{machine}" for n in range(glibc_minor, 16, -1)]
    platforms += [f"manylinux2014_{machine}", f"manylinux2010_{machine}", f"manylinux1_{machine}"]
    return f"{major}.{minor}", platforms


def _requirements() -> list[str]:
    """What `pip install '.[fast]'` in the Dockerfile needs: the build backend and the
    project's dependencies with the `fast` extra, read from pyproject.toml."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    return [
        *pyproject["build-system"]["requires"],
        *project["dependencies"],
        *project["optional-dependencies"]["fast"],
    ]


def _download_wheels(dest: Path) -> None:
    python_version, platforms = _base_target()
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
    argv += [f"--dest={dest}", "--only-binary=:all:", "--implementation=cp"]
    argv += [f"--python-version={python_version}", f"--abi=cp{python_version.replace('.', '')}"]
    argv += [f"--platform={platform_tag}" for platform_tag in platforms]
    _ok([*argv, *_requirements()], timeout=600)


def _write_simple_index(root: Path) -> None:
    """simple/index.html and simple/<project>/index.html for the wheels in root/files."""
    projects: dict[str, list[Path]] = {}
    for wheel in sorted((root / "files").glob("*.whl")):
        name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()  # PEP 503
        projects.setdefault(name, []).append(wheel)
    assert projects, "pip downloaded no wheels"
    page = "<!DOCTYPE html><html><body>\n{}\n</body></html>\n"
    for name, wheels in projects.items():
        links = []
        for wheel in wheels:
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            href = html.escape(f"../../files/{wheel.name}#sha256={digest}")
            links.append(f'<a href="{href}">{html.escape(wheel.name)}</a><br>')
        (root / "simple" / name).mkdir(parents=True)
        (root / "simple" / name / "index.html").write_text(page.format("\n".join(links)))
    index = [f'<a href="{name}/">{name}</a><br>' for name in sorted(projects)]
    (root / "simple" / "index.html").write_text(page.format("\n".join(index)))


@contextlib.contextmanager
def _serve_https(root: Path, ca: trustme.CA) -> Iterator[tuple[int, list[str]]]:
    """Serve root over HTTPS on 127.0.0.1 (a port of the OS's choosing), with a certificate
    of ca for 127.0.0.1; yields the port and the list of paths answered 200."""
    served: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            if str(code) == "200":
                served.append(self.path)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="simple-index", daemon=True)
    thread.start()
    try:
        yield server.server_address[1], served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --- the build ---------------------------------------------------------------------------


@dataclass
class Built:
    image_id: str
    index_url: str
    wheels: list[str]
    served: list[str]
    inspect: dict[str, Any]
    history: list[str]


def _image_id(reference: str) -> str | None:
    result = _run(["podman", "image", "inspect", "--format", "{{.Id}}", reference])
    return result.stdout.strip() if result.returncode == 0 else None


def _build(work: Path) -> Built:
    _require_tools()
    _ok(["bash", str(BASE_SCRIPT), BASE_IMAGE], timeout=FIRST_BUILD_TIMEOUT)
    mirror = work / "mirror"
    _download_wheels(mirror / "files")
    _write_simple_index(mirror)
    ca = trustme.CA()
    ca_file = work / "pip-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    previous = _image_id(IMAGE)
    with _serve_https(mirror, ca) as (port, served):
        index_url = f"https://127.0.0.1:{port}/simple/"
        _ok(
            [
                "buildah",
                "build",
                "--isolation=chroot",
                "--pull=never",
                "--format=docker",
                "--http-proxy=false",  # no proxy variables: the mirror is local
                f"--build-arg=BASE_IMAGE={BASE_IMAGE}",
                f"--build-arg=PIP_INDEX_URL={index_url}",
                f"--secret=id=pip-ca,src={ca_file}",
                f"--tag={IMAGE}",
                str(ROOT),
            ],
            timeout=FIRST_BUILD_TIMEOUT,
        )
        served = list(served)
    image_id = _image_id(IMAGE)
    assert image_id is not None
    if previous is not None and previous != image_id:
        # The last run's image and its layers no longer in use (the cache of this build
        # stays): without this every run would leave a few hundred MB behind.
        _run(["podman", "rmi", previous])
    inspect = json.loads(_ok(["podman", "image", "inspect", IMAGE]))[0]
    history = _ok(["podman", "history", "--no-trunc", "--format", "{{.CreatedBy}}", IMAGE])
    wheels = sorted(wheel.name for wheel in (mirror / "files").glob("*.whl"))
    return Built(image_id, index_url, wheels, served, inspect, history.splitlines())


@dataclass
class ImageOnce:
    """The image, built by the first test that asks; a failed build fails the others fast."""

    work: Path
    built: Built | None = None
    failure: str | None = None

    def get(self) -> Built:
        if self.failure is not None:
            pytest.fail(f"the image build failed in an earlier test: {self.failure}")
        if self.built is None:
            try:
                self.built = _build(self.work)
            except BaseException as exc:
                self.failure = f"{type(exc).__name__}: {str(exc)[:500]}"
                raise
        return self.built


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageOnce:
    return ImageOnce(tmp_path_factory.mktemp("container-build"))


@pytest.fixture
def container_name() -> Iterator[str]:
    """A unique name for one container, removed (running or not) after the test."""
    name = f"hotline-probe-test-{secrets.token_hex(4)}"
    yield name
    if _which("podman") is not None:  # else the test has failed already, and said why
        _run(["podman", "rm", "--force", "--time", "0", name], timeout=60)


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.timeout(FIRST_BUILD_TIMEOUT + 300)
def test_image_builds_through_the_mirror_and_keeps_it_out(image: ImageOnce) -> None:
    """pip took every package from the mirror (PIP_INDEX_URL, verified with the pip-ca
    secret), and neither the index nor the CA is in the image's history or environment;
    the image keeps its HEALTHCHECK (docker format) and runs as uid 10001."""
    built = image.get()
    fetched = {path.removeprefix("/files/") for path in built.served}
    assert set(built.wheels) <= fetched, f"never fetched: {set(built.wheels) - fetched}"

    config = built.inspect["Config"]
    assert not [env for env in config.get("Env", []) if env.startswith("PIP_")], config["Env"]
    history = "\n".join(built.history)
    assert built.index_url not in history and "pip-ca" not in history, history
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/opt/hotline-probe/bin/probed"]

    healthcheck = built.inspect.get("Healthcheck") or {}
    assert healthcheck.get("Test", [])[:1] == ["CMD"], built.inspect
    assert "/healthz" in healthcheck["Test"][-1]


@pytest.mark.timeout(FIRST_BUILD_TIMEOUT + 300)
def test_probe_demo_runs_in_the_container(image: ImageOnce, container_name: str) -> None:
    """`probe demo` works in a read-only container as uid 10001: every failover of the
    scenario, and all 24 checks up at the end. NET_RAW (ambient: podman gives a non-root
    user the capabilities it adds) lets the icmp checks run instead of being left out."""
    built = image.get()
    result = _run(
        [
            "podman",
            "run",
            "--rm",
            "--name",
            container_name,
            *RUN_OPTIONS,
            "--cap-add=NET_RAW",
            "--no-healthcheck",
            "--entrypoint",
            "/opt/hotline-probe/bin/probe",
            built.image_id,
            "demo",
        ],
        timeout=180,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    failovers = {line.strip() for line in result.stdout.splitlines() if "failed over" in line}
    assert failovers == DEMO_FAILOVERS, output
    assert "leaving out the icmp checks" not in output
    assert re.search(r"^db-1-ping .* icmp +UP ", result.stdout, re.MULTILINE), output
    assert "== round 5: everything mended" in result.stdout
    summaries = re.findall(r"^\d+ checks: .*$", result.stdout, re.MULTILINE)
    assert len(summaries) == 5, output
    assert summaries[-1].startswith("24 checks: 24 up, 0 degraded, 0 down"), summaries


def _get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def _logs(name: str) -> str:
    result = _run(["podman", "logs", name])
    return f"--- podman logs {name}:\n{result.stdout}{result.stderr}"


@pytest.mark.timeout(FIRST_BUILD_TIMEOUT + 300)
def test_probed_is_healthy_and_stops_cleanly(
    image: ImageOnce, container_name: str, tmp_path: Path
) -> None:
    """probed in a read-only container as uid 10001, its config mounted read-only: it
    checks a port on 127.0.0.1 (up), /healthz answers 200, `podman healthcheck run` says
    healthy, and `podman stop` (SIGTERM) ends it with exit code 0."""
    built = image.get()
    # A port the check connects to: the kernel completes connections to a listening socket.
    listener = socket.create_server(("127.0.0.1", 0))
    port = free_port()
    config_dir = tmp_path / "etc"
    config_dir.mkdir(mode=0o755)
    config_dir.chmod(0o755)  # the mount is read by uid 10001
    config = config_dir / "config.yaml"
    config.write_text(
        f"""
checks:
  - name: loopback-port
    title: a port the test listens on
    kind: tcp
    interval: 1s
    nodes: [{{name: primary, address: "127.0.0.1:{listener.getsockname()[1]}"}}]
""",
        encoding="utf-8",
    )
    config.chmod(0o644)
    try:
        _ok(
            [
                "podman",
                "run",
                "--detach",
                "--name",
                container_name,
                *RUN_OPTIONS,
                "--volume",
                f"{config_dir}:/etc/hotline-probe:ro",
                "--env",
                f"PROBE_LISTEN=127.0.0.1:{port}",
                built.image_id,
            ]
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        check: dict[str, Any] = {}
        while time.monotonic() < deadline:
            code, text = _get(f"{base}/status")
            if code == 200:
                check = next(c for c in json.loads(text)["checks"] if c["name"] == "loopback-port")
                if check.get("status") == "up":
                    break
            time.sleep(0.2)
        assert check.get("status") == "up", f"{check}\n{_logs(container_name)}"
        code, text = _get(f"{base}/healthz")
        assert code == 200, f"{code} {text}\n{_logs(container_name)}"

        inspected = _ok(
            ["podman", "inspect", "--format", "{{json .Config.Healthcheck}}", container_name]
        )
        assert "/healthz" in json.loads(inspected)["Test"][-1], inspected
        health = _run(["podman", "healthcheck", "run", container_name], timeout=30)
        assert health.returncode == 0, f"{health.stdout}{health.stderr}\n{_logs(container_name)}"
        status = _ok(["podman", "inspect", "--format", "{{.State.Health.Status}}", container_name])
        assert status.strip() == "healthy", status

        _ok(["podman", "stop", "--time", "30", container_name], timeout=60)
        exit_code = _ok(["podman", "inspect", "--format", "{{.State.ExitCode}}", container_name])
        assert exit_code.strip() == "0", _logs(container_name)
        assert "probed stopped" in _logs(container_name)
    finally:
        listener.close()
