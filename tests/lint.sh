#!/usr/bin/env bash
# ansible-lint with the production profile over the collection's roles and playbooks.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$top/.venv/bin:$PATH"
cd "$top"
NO_COLOR=1 ansible-lint --profile production --offline --nocolor "$@"
