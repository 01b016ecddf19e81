#!/usr/bin/env bash
# Run the test suite; arguments go to pytest.
#   ./test.sh            the suite in .venv (the newest Python 3.11+ on PATH)
#   ./test.sh --matrix   the suite twice: Python 3.11 with Django 5.2 (and the django-tasks
#                        backport) in .venv-py311, then Python 3.12+ with Django 6 in
#                        .venv-py3XX. CI runs this form.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ "${1:-}" = "--matrix" ]; then
  shift
  source scripts/bootstrap.sh
  newer=""
  for candidate in python3.14 python3.13 python3.12; do
    if resolve_python "$candidate" >/dev/null; then newer="$candidate"; break; fi
  done
  if ! resolve_python python3.11 >/dev/null || [ -z "$newer" ]; then
    echo "error: --matrix needs python3.11 and python3.12 or newer on PATH" >&2
    exit 1
  fi
  status=0
  for python in python3.11 "$newer"; do
    venv=".venv-py$(echo "${python#python}" | tr -d .)"
    echo "=== $python in $venv ===" >&2
    TQ_PYTHON="$python" TQ_VENV="$PWD/$venv" ./test.sh "$@" || status=$?
  done
  exit "$status"
fi

source scripts/bootstrap.sh
bootstrap_venv "$VENV_DIR/.requirements-dev-stamp" \
  "$REPO_ROOT/requirements-dev.txt" "$REPO_ROOT/requirements.txt"
"$VENV_DIR/bin/python" -c 'import sys, django
print(f"Python {sys.version.split()[0]}, Django {django.__version__}", file=sys.stderr)'
exec "$VENV_DIR/bin/python" -m pytest "$@"
