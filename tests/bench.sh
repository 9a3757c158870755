#!/usr/bin/env bash
# Benchmarks: print figures and ratios (they assert nothing about speed). Each brings its own lab.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
bash tests/lab/setup.sh
for b in tests/benchmarks/bench_*.py; do
    printf '\n=== benchmark %s\n' "$b"
    .venv/bin/python "$b"
done
