#!/usr/bin/env bash
# Installs hotline-probe from this offline bundle: no package index is asked, ever.
#
#   ./install.sh [--prefix DIR] [--config-dir DIR] [--unit-dir DIR] [--python PYTHON]
#   ./install.sh --upgrade   [same options]   a new version; config and state are kept
#   ./install.sh --uninstall [--prefix DIR]   removes what an install put in place
#
# Defaults: --prefix /opt/hotline-probe (a virtual environment of its own: the product's
# top-level packages are named config, probes, engine, ...), --config-dir
# /etc/hotline-probe, --unit-dir /etc/systemd/system, --python: python3.X of the bundle.
#
# What it puts in place, and records in PREFIX/install-manifest for --uninstall:
#   PREFIX/                 the virtual environment, with probe and probed in PREFIX/bin
#   UNIT_DIR/hotline-probe.service   its paths rewritten to PREFIX and CONFIG_DIR
#   CONFIG_DIR/config.yaml  a skeleton (the example config), only if there is none yet;
#                           the example is always refreshed as config.yaml.example
# It never starts or enables the service, and never touches /var/lib/hotline-probe
# (systemd makes and keeps it, StateDirectory=): heartbeats and spools outlive an upgrade
# and an uninstall.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
prefix=/opt/hotline-probe
config_dir=/etc/hotline-probe
unit_dir=/etc/systemd/system
python=""
mode=install

say() { printf 'install.sh: %s\n' "$*"; }
die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 1
}
usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while (($#)); do
    case $1 in
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --config-dir) config_dir=${2:?--config-dir needs a directory}; shift 2 ;;
        --unit-dir) unit_dir=${2:?--unit-dir needs a directory}; shift 2 ;;
        --python) python=${2:?--python needs an interpreter}; shift 2 ;;
        --upgrade) mode=upgrade; shift ;;
        --uninstall) mode=uninstall; shift ;;
        -h | --help) usage 0 ;;
        *) printf 'install.sh: unknown argument %s\n' "$1" >&2; usage 3 >&2 ;;
    esac
done
[[ $prefix == /* ]] || prefix=$PWD/$prefix
[[ $config_dir == /* ]] || config_dir=$PWD/$config_dir
[[ $unit_dir == /* ]] || unit_dir=$PWD/$unit_dir
manifest=$prefix/install-manifest

# --- uninstall ---------------------------------------------------------------------
if [[ $mode == uninstall ]]; then
    [[ -f $manifest ]] || die "$prefix holds no hotline-probe installed by this script (no $manifest)"
    while read -r kind path sum; do
        case $kind in
            unit)
                rm -f "$path" && say "removed $path (run: systemctl daemon-reload)" ;;
            config)
                # The skeleton goes only as it was installed: an edited config is the
                # operator's work, kept.
                if [[ -f $path ]] && [[ $(sha256sum <"$path" | cut -d' ' -f1) == "$sum" ]]; then
                    rm -f "$path" && say "removed $path (unchanged skeleton)"
                elif [[ -f $path ]]; then
                    say "kept $path: it was edited after the install"
                fi ;;
            example) rm -f "$path" ;;
        esac
    done <"$manifest"
    rm -rf "$prefix"
    say "removed $prefix"
    if rmdir "$config_dir" 2>/dev/null; then say "removed the empty $config_dir"; fi
    say "left alone: /var/lib/hotline-probe and /var/log/hotline-probe (state and logs)"
    exit 0
fi

# --- what this bundle is for, and whether this host is that ---------------------------
# shellcheck source=/dev/null
. "$here/BUNDLE-INFO"  # VERSION, PYTHON_VERSION, GLIBC, ARCH
[[ -n $python ]] || python=python$PYTHON_VERSION
command -v "$python" >/dev/null 2>&1 \
    || die "no $python on this host: the bundle's wheels are for CPython $PYTHON_VERSION (--python PATH names another interpreter of that version)"
have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ $have == "$PYTHON_VERSION" ]] \
    || die "$python is Python $have; this bundle's wheels are for CPython $PYTHON_VERSION (build one for $have: make bundle PYTHON_VERSION=$have)"
machine=$(uname -m)
[[ $machine == "$ARCH" ]] || die "this host is $machine; the bundle is for $ARCH"
libc=$("$python" -c 'import platform; print(platform.libc_ver()[1] or "0")')
if ! "$python" -c 'import sys; have, need = (tuple(map(int, v.split("."))) for v in sys.argv[1:]); sys.exit(have < need)' "$libc" "$GLIBC"; then
    die "this host's glibc is $libc; the bundle's wheels need glibc $GLIBC or newer"
fi
"$python" -c 'import venv, ensurepip' 2>/dev/null \
    || die "$python cannot make virtual environments (Debian/Ubuntu: install python$PYTHON_VERSION-venv)"

if [[ $mode == install && -e $prefix ]]; then
    die "$prefix exists already: use --upgrade to replace the program (config and state are kept), or --uninstall first"
fi
if [[ $mode == upgrade && ! -f $manifest ]]; then
    die "nothing to upgrade at $prefix (no $manifest): install first"
fi

# --- the program: a new virtual environment, filled from the bundle's wheels only ----------
# An upgrade builds the new environment beside the old one and swaps them only once it
# works, so a failed upgrade leaves the running version in place. A venv cannot be
# moved (its scripts name their interpreter by path), so the new one is made at PREFIX
# after the old one has stepped aside.
old="" kept_config=""
if [[ $mode == upgrade ]]; then
    kept_config=$(grep '^config ' "$manifest" || true)  # the skeleton's checksum, for --uninstall
    old=$prefix.old-$$
    mv "$prefix" "$old"
fi
restore() {
    rm -rf "$prefix"
    if [[ -n $old ]]; then
        mv "$old" "$prefix" && say "the previous version is back in $prefix"
    fi
}
trap 'restore' ERR
mkdir -p "$(dirname "$prefix")"
"$python" -m venv "$prefix"
# --no-index: nothing is fetched; --find-links: the bundle's wheels; the pinned list names
# every distribution, so a missing wheel is an error here, not a download.
PIP_CONFIG_FILE=/dev/null "$prefix/bin/python" -m pip install --quiet --no-index \
    --disable-pip-version-check --no-cache-dir --find-links "$here/wheels" \
    --requirement "$here/requirements.txt"
"$prefix/bin/probed" --help >/dev/null
trap - ERR
if [[ -n $old ]]; then rm -rf "$old"; fi
say "installed hotline-probe $VERSION in $prefix"

# --- the unit and the config ---------------------------------------------------------
: >"$manifest"
mkdir -p "$unit_dir"
unit=$unit_dir/hotline-probe.service
sed -e "s#/opt/hotline-probe#$prefix#g" -e "s#/etc/hotline-probe/config.yaml#$config_dir/config.yaml#g" \
    "$here/hotline-probe.service" >"$unit.tmp"
chmod 0644 "$unit.tmp" && mv "$unit.tmp" "$unit"
printf 'unit %s\n' "$unit" >>"$manifest"
say "unit: $unit"

mkdir -p "$config_dir"
install -m 0644 "$here/config.example.yaml" "$config_dir/config.yaml.example"
printf 'example %s\n' "$config_dir/config.yaml.example" >>"$manifest"
# The daemon runs as a dynamic user that owns nothing: the config must be readable by all.
if [[ -e $config_dir/config.yaml ]]; then
    say "config: kept $config_dir/config.yaml (the new example is $config_dir/config.yaml.example)"
    if [[ -n $kept_config ]]; then printf '%s\n' "$kept_config" >>"$manifest"; fi
else
    install -m 0644 "$here/config.example.yaml" "$config_dir/config.yaml"
    printf 'config %s %s\n' "$config_dir/config.yaml" \
        "$(sha256sum <"$config_dir/config.yaml" | cut -d' ' -f1)" >>"$manifest"
    say "config: a skeleton in $config_dir/config.yaml"
fi

if [[ $mode == upgrade ]]; then
    cat <<EOF

Next:
  $prefix/bin/probed --check-config --config $config_dir/config.yaml
  systemctl daemon-reload && systemctl restart hotline-probe
EOF
else
    cat <<EOF

Next:
  1. Edit $config_dir/config.yaml: the checks' nodes (the example's hosts end in
     .invalid and never resolve), and the secrets it references as \${env:NAME}
     (MINHU_TOKEN, MINHU_SIGN_SECRET, ZZD_PROXY_PASSWORD, CALLBACK_TOKEN in the example):
     give them with \`systemctl edit hotline-probe\` (Environment=) or as credentials
     (LoadCredential=, referenced as \${file:/run/credentials/hotline-probe.service/NAME}).
  2. $prefix/bin/probe --check-config --config $config_dir/config.yaml
  3. $prefix/bin/probe --all --config $config_dir/config.yaml     (one round, now)
  4. systemctl daemon-reload && systemctl enable --now hotline-probe
EOF
fi
