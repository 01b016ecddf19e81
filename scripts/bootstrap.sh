# Shared venv bootstrap, sourced by run.sh and test.sh (bash; Linux and macOS).
# Usage: bootstrap_venv <stamp-file> <requirements-file> [<file it includes> ...]

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="$REPO_ROOT/.venv"

# Print the first python >= 3.11 on PATH.
find_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "error: Python 3.11 or newer is required (tried python3.13, python3.12, python3.11, python3)" >&2
  return 1
}

# Create .venv with a suitable python unless it already exists.
ensure_venv() {
  if [ -x "$VENV_DIR/bin/python" ]; then
    return 0
  fi
  local python
  python="$(find_python)"
  echo "Creating $VENV_DIR with $python" >&2
  "$python" -m venv "$VENV_DIR"
}

# True if the stamp is missing or older than any of the given files.
stamp_is_stale() {
  local stamp="$1" file
  shift
  [ -f "$stamp" ] || return 0
  for file in "$@"; do
    [ "$file" -nt "$stamp" ] && return 0
  done
  return 1
}

# Make .venv exist and hold the packages of the given requirements file.
bootstrap_venv() {
  local stamp="$1" requirements="$2"
  shift
  ensure_venv
  if stamp_is_stale "$stamp" "$@"; then
    echo "Installing $(basename "$requirements") into .venv" >&2
    "$VENV_DIR/bin/python" -m pip install --quiet -r "$requirements"
    touch "$stamp"
  fi
}
