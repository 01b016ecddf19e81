#!/usr/bin/env bash
# Run the whole system locally: embedded Redis, daphne on :8080 and a worker.
# Options go to the launcher: --port 8080 --host 127.0.0.1 --workers 1 --no-redis
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/bootstrap.sh
bootstrap_venv "$VENV_DIR/.requirements-stamp" "$REPO_ROOT/requirements-local.txt" \
  "$REPO_ROOT/requirements.txt" "$REPO_ROOT/pyproject.toml"
exec "$VENV_DIR/bin/python" -m taskqueue_project.launcher "$@"
