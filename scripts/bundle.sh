#!/usr/bin/env bash
# Builds the offline bundle for an ops host that reaches no package index (the 政务云 one):
#
#   scripts/bundle.sh [OUT_DIR]          (make bundle; OUT_DIR defaults to dist)
#
# -> OUT_DIR/hotline-probe-<version>-cp311-manylinux_2_28_x86_64.tar.gz, holding the
# product's wheel and every dependency's wheel (uvloop included) for that platform,
# requirements.txt pinning each one, install.sh, the systemd unit and the example config.
#
# The target is set by the environment:
#   PYTHON_VERSION  the ops host's CPython, X.Y (default 3.11)
#   GLIBC           the oldest glibc the wheels may need (default 2.28: RHEL/Kylin/
#                   openEuler 8-era images; a wheel built for a newer glibc fails there
#                   with "GLIBC_2.34 not found", which is how the first wheelhouse broke)
#   ARCH            x86_64 or aarch64 (default: this machine's)
#   PYTHON          the interpreter that runs pip here (default: .venv/bin/python, else python3)
# The index is pip's own setting (PIP_INDEX_URL, pip.conf), so a mirror works as usual.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-dist}
python_version=${PYTHON_VERSION:-3.11}
glibc=${GLIBC:-2.28}
arch=${ARCH:-$(uname -m)}
python=${PYTHON:-.venv/bin/python}
[[ -x $python ]] || python=python3

say() { printf 'bundle: %s\n' "$*"; }
die() {
    printf 'bundle: %s\n' "$*" >&2
    exit 1
}

[[ $python_version =~ ^3\.[0-9]+$ ]] || die "PYTHON_VERSION must be X.Y, not '$python_version'"
[[ $glibc =~ ^2\.([0-9]+)$ ]] || die "GLIBC must be 2.N, not '$glibc'"
glibc_minor=${BASH_REMATCH[1]}
case $arch in x86_64 | aarch64) ;; *) die "ARCH must be x86_64 or aarch64, not '$arch'" ;; esac
tag=cp${python_version/./}
platform=manylinux_${glibc/./_}_$arch

# pip takes a wheel for any of the platforms it is given, and none other: every manylinux
# level up to the target glibc (PEP 600 names and their legacy aliases). Pure-Python
# wheels (py3-none-any) fit anywhere.
platforms=()
for ((minor = glibc_minor; minor >= 5; minor--)); do
    platforms+=(--platform "manylinux_2_${minor}_$arch")
done
((glibc_minor >= 17)) && platforms+=(--platform "manylinux2014_$arch")
if [[ $arch == x86_64 ]]; then
    ((glibc_minor >= 12)) && platforms+=(--platform manylinux2010_x86_64)
    platforms+=(--platform manylinux1_x86_64)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

version=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
name=hotline-probe-$version-$tag-$platform
root=$work/$name
mkdir -p "$root/wheels"

say "the product's wheel"
bash scripts/build-wheel.sh "$root/wheels" "$python" || die "building the product's wheel failed"
wheels=("$root/wheels/hotline_probe-$version-"*.whl)
wheel=${wheels[0]}

say "dependencies for CPython $python_version, glibc >= $glibc, $arch"
if ! "$python" -m pip download --disable-pip-version-check --dest "$root/wheels" \
    --only-binary=:all: --implementation cp --python-version "$python_version" \
    --abi "$tag" --abi abi3 --abi none "${platforms[@]}" \
    "${wheel}[fast]" >"$work/pip.log" 2>&1; then
    # pip says "No matching distribution found for NAME": say what that means here.
    missing=$(sed -n 's/.*No matching distribution found for \([^ ]*\).*/\1/p' "$work/pip.log" | head -n 1)
    if [[ -n $missing ]]; then
        die "$missing has no wheel for CPython $python_version on $arch with glibc $glibc or older (manylinux_${glibc/./_}); an older release of it may have one, or build the bundle for a newer glibc (GLIBC=2.N) if the ops host has it"
    fi
    grep -v '^WARNING: Location' "$work/pip.log" >&2 || true
    die "pip could not download the dependencies (above)"
fi

# Belt and braces: every wheel must run on the target (pip honoured the tags above; a
# wheel that claims a newer glibc here would fail on the host at import time).
"$python" - "$root/wheels" "$python_version" "$glibc_minor" "$arch" <<'PY'
import pathlib, re, sys

folder, version, glibc_minor, arch = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
python_tag = "cp" + version.replace(".", "")
legacy = {"manylinux1": 5, "manylinux2010": 12, "manylinux2014": 17}
bad = []
for wheel in sorted(pathlib.Path(folder).glob("*.whl")):
    _, _, tail = wheel.stem.partition("-")
    pythons, abis, platforms = tail.split("-")[-3:]
    if platforms == "any":
        continue
    levels = []
    for platform in platforms.split("."):
        if m := re.fullmatch(rf"manylinux_2_(\d+)_{arch}", platform):
            levels.append(int(m.group(1)))
        elif (m := re.fullmatch(rf"(manylinux\d+)_{arch}", platform)) and m.group(1) in legacy:
            levels.append(legacy[m.group(1)])
    ok_python = python_tag in pythons.split(".") or "abi3" in abis.split(".")
    if not levels or min(levels) > glibc_minor or not ok_python:
        bad.append(wheel.name)
if bad:
    sys.exit("bundle: wheels that would not run on the target: " + ", ".join(bad))
PY

# Pinned: install.sh installs exactly these, and pip says which one is missing, if any.
"$python" - "$root/wheels" "$version" >"$root/requirements.txt" <<'PY'
import pathlib, sys

print("# Every distribution of this bundle, pinned; install.sh installs from wheels/ only.")
for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    extra = "[fast]" if name == "hotline_probe" else ""
    print(f"{name.replace('_', '-')}{extra}=={version}")
PY

cp deploy/install.sh "$root/install.sh"
cp deploy/hotline-probe.service "$root/hotline-probe.service"
cp config/example.yaml "$root/config.example.yaml"
cat >"$root/BUNDLE-INFO" <<EOF
VERSION=$version
PYTHON_VERSION=$python_version
GLIBC=$glibc
ARCH=$arch
EOF
cat >"$root/README.txt" <<EOF
hotline-probe $version, offline bundle for CPython $python_version, glibc >= $glibc, $arch.

  sudo ./install.sh                  # /opt/hotline-probe, /etc/hotline-probe, the systemd unit
  sudo ./install.sh --upgrade        # a new version; config and state are kept
  sudo ./install.sh --uninstall      # removes what the install put in place
  ./install.sh --help                # --prefix DIR, --config-dir DIR, --unit-dir DIR, --python PY

Nothing is downloaded: the wheels of hotline-probe and of every dependency are in wheels/.
EOF

mkdir -p "$out"
# Same inputs, same archive: sorted names, no owners, one fixed time.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2000-01-01 00:00Z' \
    -C "$work" -czf "$out/$name.tar.gz" "$name"
count=$(find "$root/wheels" -name '*.whl' | wc -l)
say "$out/$name.tar.gz ($count wheels, $(du -h "$out/$name.tar.gz" | cut -f1))"
