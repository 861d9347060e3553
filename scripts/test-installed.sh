#!/usr/bin/env bash
# What users install, run as they run it: the built wheel (no extras, as many install it)
# in a fresh virtual environment outside the checkout; `probed --check-config` on the
# example config the wheel carries, `probe demo`, then the tests marked e2e with their
# `probe` and `probed` taken from that environment (tests/cli_run.py). A module or file
# the wheel leaves out fails here, as it would on an ops host; an editable install hides it.
#
#   scripts/test-installed.sh        (`make test` runs it; needs the project's .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-python3}

say() { printf 'test-installed: %s\n' "$*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/hotline-probe-installed.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The tests run probe as other users too (nobody, in the icmp tests): let them read it.
chmod 0755 "$work"

say "building the wheel"
bash scripts/build-wheel.sh "$work/dist"
say "installing $(basename "$work"/dist/*.whl) into a fresh venv, $work/venv"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$work"/dist/*.whl \
    >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; exit 1; }

cd "$work"  # nothing of the tree is importable from here
"$work/venv/bin/probe" --version
where=$("$work/venv/bin/python" -c 'import cli, config; print(cli.__file__, config.__file__)')
[[ $where != *"$root"* ]] || { say "the installed copy imports from the tree: $where" >&2; exit 1; }
example=$("$work/venv/bin/python" -c 'import config, pathlib; print(pathlib.Path(config.__file__).with_name("example.yaml"))')
# The example's secrets are references; give them stand-in values (never real ones).
MINHU_TOKEN=stand-in MINHU_SIGN_SECRET=stand-in ZZD_PROXY_PASSWORD=stand-in \
    CALLBACK_TOKEN=stand-in-0123456789 "$work/venv/bin/probed" --check-config --config "$example"

say "probe demo"
if ! "$work/venv/bin/probe" demo >"$work/demo.log" 2>&1; then
    cat "$work/demo.log" >&2
    say "probe demo failed from the installed copy" >&2
    exit 1
fi
grep -E '^== round|checks: ' "$work/demo.log"

say "the e2e tests against the installed copy"
cd "$root"
HOTLINE_PROBE_INSTALLED=$work/venv .venv/bin/python -m pytest -m e2e -q -p no:cacheprovider
