#!/usr/bin/env bash
# Builds the JSONL Python plugin: plugins/jsonl-py/build.sh OUT.wasm
# Installs componentize-py (pinned below) into the repo's .venv/ if needed,
# then componentizes app.py against the repo's WIT (world `plugin`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:?usage: build.sh OUT.wasm}"
version="0.25.1"
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pip' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
fi
if [ "$("$venv/bin/componentize-py" --version 2>/dev/null)" != "componentize-py $version" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "componentize-py==$version"
fi
mkdir -p "$(dirname "$out")"
cd "$here"
"$venv/bin/componentize-py" -d "$root/wit" -w plugin componentize app -o "$out.tmp"
mv "$out.tmp" "$out"
