#!/usr/bin/env bash
# Run the test suite; arguments go to pytest.
#   ./test.sh            the suite in .venv (the newest Python 3.11+ on PATH)
#   ./test.sh --matrix   the suite twice: Python 3.11 with Django 5.2 (and the django-tasks
#                        backport) in .venv-py311, then the newest Python 3.12+ with the
#                        newest Django the package allows (6.x) in .venv-py3XX, then the
#                        behaviour tests on a real Redis Cluster and a real Sentinel set
#                        (TQ_TEST_TOPOLOGY=cluster|sentinel ./test.sh runs one of those
#                        sessions alone). CI runs this.
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
    secondary=$([ "$python" = python3.11 ] && echo 1 || echo 0)  # soaks: newest leg only
    echo "=== $python in $venv ===" >&2
    TQ_MATRIX_SECONDARY="$secondary" TQ_PYTHON="$python" TQ_VENV="$PWD/$venv" ./test.sh "$@" \
      || status=$?
  done
  # The behaviour tests once more on a real Redis Cluster and a real Sentinel set (the
  # newest Python only: the topology, not the interpreter, is what these sessions vary).
  # The Cluster and Sentinel sessions mostly wait on servers: run them side by side, each
  # printing its own log once done (the two deployments use free ports of their own).
  logs="$(mktemp -d)"
  pids=()
  for topology in cluster sentinel; do
    TQ_TEST_TOPOLOGY="$topology" TQ_PYTHON="$newer" TQ_VENV="$PWD/$venv" ./test.sh "$@" \
      >"$logs/$topology.log" 2>&1 &
    pids+=("$!")
  done
  for i in 0 1; do
    topology=$([ "$i" = 0 ] && echo cluster || echo sentinel)
    wait "${pids[$i]}" || status=$?
    echo "=== $newer on a Redis $topology ===" >&2
    cat "$logs/$topology.log"
  done
  rm -rf "$logs"
  exit "$status"
fi

source scripts/bootstrap.sh
bootstrap_venv "$VENV_DIR/.requirements-dev-stamp" "$REPO_ROOT/requirements-dev.txt" \
  "$REPO_ROOT/requirements-local.txt" "$REPO_ROOT/requirements.txt" "$REPO_ROOT/pyproject.toml"
# Test what `pip install django-taskqueue` gives a new site on this Python: the newest
# releases the package allows (Django 6.1 on 3.12+), even where a tool of this repository's
# own project caps one lower (django-prometheus: Django < 6.1; pip says so and goes on).
if stamp_is_stale "$VENV_DIR/.package-deps-stamp" "$VENV_DIR/.requirements-dev-stamp"; then
  "$VENV_DIR/bin/python" -m pip install --quiet --upgrade --upgrade-strategy eager \
    -e "$REPO_ROOT[embedded-redis]"
  touch "$VENV_DIR/.package-deps-stamp"
fi
"$VENV_DIR/bin/python" -c 'import sys, django
print(f"Python {sys.version.split()[0]}, Django {django.__version__}", file=sys.stderr)'
exec "$VENV_DIR/bin/python" -m pytest "$@"
