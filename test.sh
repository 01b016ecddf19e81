#!/usr/bin/env bash
# Run the test suite; arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/bootstrap.sh
bootstrap_venv "$VENV_DIR/.requirements-dev-stamp" \
  "$REPO_ROOT/requirements-dev.txt" "$REPO_ROOT/requirements.txt"
exec "$VENV_DIR/bin/python" -m pytest "$@"
