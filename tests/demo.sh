#!/usr/bin/env bash
# The main job on a fresh machine: setup, then the lab demo (see tests/lab/demo.py).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$top/tests/lab/setup.sh"
exec "$top/.venv/bin/python" "$top/tests/lab/demo.py" "$@"
