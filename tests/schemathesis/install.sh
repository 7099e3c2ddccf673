#!/usr/bin/env bash
# Makes a Python venv at DIR with the schemathesis version the OpenAPI conformance test
# (tests/openapi_conformance.rs) pins, and prints the path of its `st` command. A venv that
# already has it is left as it is.
#
#   tests/schemathesis/install.sh DIR [--apt]
#
# It needs a Python >= 3.12 with the venv module (3.11's hypothesis crashes on this
# document's schemas): LARDER_PYTHON if set, else python3.14/3.13/3.12/python3 on PATH,
# else one installed by pyenv. With --apt (.ci/run), a missing one is installed with
# apt-get. pip is the only step that reaches past loopback.
set -euo pipefail
VERSION=4.32.5
dir="$1"
apt="${2:-}"
marker="$dir/.schemathesis-$VERSION"
if [ -x "$dir/bin/st" ] && [ -f "$marker" ]; then
  echo "$dir/bin/st"
  exit 0
fi

# A pyenv shim on PATH names a version that may not be active: run each candidate to know.
suitable() {
  "$1" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

find_python() {
  local candidate
  for candidate in ${LARDER_PYTHON:-} python3.14 python3.13 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && suitable "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  for candidate in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*/bin/python3 2>/dev/null | sort -rV); do
    if suitable "$candidate"; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

python="$(find_python || true)"
if [ -z "$python" ] && [ "$apt" = "--apt" ]; then
  apt-get update
  for v in 3.13 3.12; do
    if apt-cache show "python$v-venv" >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "python$v" "python$v-venv"
      break
    fi
  done
  python="$(find_python || true)"
fi
if [ -z "$python" ]; then
  cat >&2 <<MSG
schemathesis $VERSION needs a Python >= 3.12 with the venv module, and none was found
(tried LARDER_PYTHON, python3.14/3.13/3.12/python3 on PATH, pyenv's versions).
Install one (Debian 13 / Ubuntu 24.04: apt-get install python3 python3-venv; or pyenv
install 3.13), or set LARDER_PYTHON to one, or point LARDER_SCHEMATHESIS at an st command:
  python3.13 -m venv DIR && DIR/bin/pip install schemathesis==$VERSION
  export LARDER_SCHEMATHESIS=DIR/bin/st
MSG
  exit 1
fi

rm -rf "$dir"
"$python" -m venv "$dir" >&2
"$dir/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
touch "$marker"
echo "$dir/bin/st"
