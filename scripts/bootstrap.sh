# Shared venv bootstrap, sourced by run.sh and test.sh (bash; Linux and macOS).
# Usage: bootstrap_venv <stamp-file> <requirements-file> [<file it includes> ...]

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# TQ_VENV and TQ_PYTHON pick another virtualenv and interpreter (test.sh --matrix uses them).
VENV_DIR="${TQ_VENV:-$REPO_ROOT/.venv}"

# Print the path of a working interpreter called $1 (e.g. python3.12): on PATH, or one that
# pyenv installed but whose shim is not active for this directory.
resolve_python() {
  local name="$1" path
  if command -v "$name" >/dev/null 2>&1 && "$name" -c 'import sys' >/dev/null 2>&1; then
    command -v "$name"
    return 0
  fi
  if command -v pyenv >/dev/null 2>&1; then
    for path in "$(pyenv root)"/versions/*/bin/"$name"; do
      if [ -x "$path" ] && "$path" -c 'import sys' >/dev/null 2>&1; then
        echo "$path"
        return 0
      fi
    done
  fi
  return 1
}

# Print the first python >= 3.11 (or TQ_PYTHON, when set).
find_python() {
  local candidate path candidates="python3.13 python3.12 python3.11 python3"
  [ -n "${TQ_PYTHON:-}" ] && candidates="$TQ_PYTHON"
  for candidate in $candidates; do
    if path="$(resolve_python "$candidate")" \
      && "$path" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$path"
      return 0
    fi
  done
  echo "error: Python 3.11 or newer is required (tried: $candidates)" >&2
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
    echo "Installing $(basename "$requirements") into $(basename "$VENV_DIR")" >&2
    "$VENV_DIR/bin/python" -m pip install --quiet -r "$requirements"
    touch "$stamp"
  fi
}
