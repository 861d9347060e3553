#!/usr/bin/env bash
# Builds the product's wheel as a fresh checkout would, into OUT_DIR:
#
#   scripts/build-wheel.sh OUT_DIR [PYTHON]     (PYTHON defaults to .venv/bin/python)
#
# From a copy of the files git tracks (and untracked ones it does not ignore), never from
# the work tree itself: setuptools keeps build/lib between builds and packs whatever is
# left there, so a module deleted or moved in the tree would still ship from an old build.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/build-wheel.sh OUT_DIR [PYTHON]}
python=${2:-.venv/bin/python}
[[ $out == /* ]] || out=$PWD/$out
if [[ $python == */* && $python != /* ]]; then python=$PWD/$python; fi

copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' path; do
        [[ -f $path ]] && printf '%s\0' "$path"  # skip files deleted but not yet staged
    done \
    | xargs -0 cp --parents -t "$copy"
mkdir -p "$out"
(cd "$copy" && "$python" -m pip wheel --quiet --disable-pip-version-check --no-deps \
    -w "$out" .) >"$copy/build.log" 2>&1 || { cat "$copy/build.log" >&2; exit 1; }
