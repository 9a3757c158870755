#!/usr/bin/env bash
# Galaxy's importer (galaxy-importer 0.4.44, in a virtual environment of its own: it pins other versions than
# ours) over the collection as built: fails on any WARNING or ERROR it reports. tests/run.sh runs it (about 40 s
# with its environment made from nothing).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$top/.venv-importer"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/pip" show galaxy-importer 2>/dev/null | grep -q '^Version: 0.4.44$'; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q galaxy-importer==0.4.44
fi
out=$(mktemp -d /tmp/vmm-import.XXXXXX)
trap 'rm -rf "$out"' EXIT
"$top/.venv/bin/ansible-galaxy" collection build --output-path "$out" --force "$top" >/dev/null
cd "$out"
PATH="$venv/bin:$PATH" "$venv/bin/python" -m galaxy_importer.main "$out"/*.tar.gz > "$out/import.log" 2>&1 || {
    cat "$out/import.log"; echo "galaxy-importer failed"; exit 1; }
if grep -E '^(WARNING|ERROR)' "$out/import.log"; then
    echo "galaxy-importer: the lines above must be fixed"; exit 1
fi
grep -E "Importer processing completed" "$out/import.log"
echo "galaxy-importer 0.4.44: no warning"
