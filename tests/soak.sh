#!/usr/bin/env bash
# The full soak (tests/soak/soak.py): 9 rounds, 108 moves of busy guests through the collection's engine
# with every strategy, plus a plain-virsh control arm; brings its own lab up and down. About 25 minutes.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
bash tests/lab/setup.sh
exec .venv/bin/python tests/soak/soak.py "$@"
