#!/usr/bin/env bash
# Build a free-threaded CPython (3.13t, --disable-gil) from Debian's source package, install
# flowpace with what its thread tests need, and run on it: the thread tests, the interleaving
# and linearizability checks, the fork tests, the extended law's thread tests, and the ratios
# benchmark (tests/benchmarks/ratios.py).
#
# Usage (from anywhere): bash tests/freethreaded/build.sh [build|tests|bench|all]   (default all)
#
# No prebuilt free-threaded interpreter can be downloaded on these machines, and Debian ships
# none; its source package of CPython 3.13 comes from the machine's own apt mirror. The
# version and the orig tarball's sha256 are pinned below; the system's apt configuration is
# left untouched (a private list and cache under the work directory). The build is CPU heavy
# (about 15 minutes on 2 idle cores): it runs under `nice -n $FLOWPACE_FT_NICE` (default 19).
#
# Everything goes into FLOWPACE_FT_DIR (default ~/.cache/flowpace-free-threaded), outside the
# repository; the interpreter is built once and reused by later runs.
set -euo pipefail

DEBIAN_VERSION="3.13.5-2+deb13u5"        # Debian trixie's python3.13 source package
ORIG_TARBALL="python3.13_3.13.5.orig.tar.xz"
ORIG_SHA256="93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640"
SOURCE_DIR="Python-3.13.5"
# Hypothesis 6.170 ships no cp313t wheel and its sdist needs Rust crates that cannot be
# fetched here; 6.155.7 is the newest release that installs (pure Python).
HYPOTHESIS_PIN="hypothesis==6.155.7"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
W="${FLOWPACE_FT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flowpace-free-threaded}"
NICE="${FLOWPACE_FT_NICE:-19}"
PREFIX="$W/py313t"
PY="$PREFIX/bin/python3.13t"
VENV="$W/venv"
STEP="${1:-all}"

build() {
    if [[ -x "$PY" ]] && "$PY" -c 'import sys; sys.exit(sys._is_gil_enabled())'; then
        echo "== free-threaded interpreter already built: $PY"
        return
    fi
    mkdir -p "$W/apt/lists/partial" "$W/apt/cache/archives/partial" "$W/src"
    local uri
    uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" \
        >"$W/apt/sources.list"
    local apto=(-o "Dir::Etc::SourceList=$W/apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$W/apt/lists" -o "Dir::Cache=$W/apt/cache")
    cd "$W/src"
    if [[ ! -f "$ORIG_TARBALL" ]]; then
        apt-get "${apto[@]}" update
        # A later security update may replace the Debian revision: the orig tarball (and so
        # its hash) stays the same; then set DEBIAN_VERSION to the revision apt offers.
        apt-get "${apto[@]}" source --download-only "python3.13=$DEBIAN_VERSION"
    fi
    echo "$ORIG_SHA256  $ORIG_TARBALL" | sha256sum -c
    rm -rf "$SOURCE_DIR"
    tar xJf "$ORIG_TARBALL"
    cd "$SOURCE_DIR"
    # Configured as pyenv builds the GIL interpreters it is compared with (shared libpython,
    # no PGO), so that instruction counts compare like with like.
    nice -n "$NICE" ./configure --disable-gil --prefix="$PREFIX" --enable-shared \
        --without-ensurepip LDFLAGS="-Wl,-rpath,$PREFIX/lib" >"$W/configure.log"
    nice -n "$NICE" make -j2 >"$W/make.log" 2>&1
    nice -n "$NICE" make install >"$W/install.log" 2>&1
    "$PY" -c 'import sys; assert not sys._is_gil_enabled(), "the GIL is on"; print(sys.version)'
}

venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        uv venv --python "$PY" "$VENV"
    fi
    # The project (editable: the tests import the working tree) and the test runner.
    # hypothesis-crosshair only registers the backend that tests/conftest.py's "crosshair"
    # profile names (Hypothesis validates the name at registration); it imports crosshair
    # only when that backend runs, which it never does here (crosshair re-enables the GIL).
    uv pip install --python "$VENV/bin/python" -e "$REPO" "$HYPOTHESIS_PIN" pytest \
        hypothesis-crosshair --only-binary hypothesis
}

tests() {
    venv
    cd "$REPO"
    echo "== thread tests, interleavings, linearizability, fork, the extended law's threads on $("$VENV/bin/python" -VV)"
    # In one process with the check that the GIL stayed off throughout: a module that needed
    # it would have turned it on (with a RuntimeWarning, an error under filterwarnings).
    nice -n 10 "$VENV/bin/python" - <<'PY'
import sys

import pytest

files = [
    "tests/test_controller_threads.py",
    "tests/test_interleavings.py",
    "tests/test_linearizability.py",
    "tests/test_fork.py",
    "tests/test_extended_threads.py",
    "tests/test_extended_linearizability.py",
    "tests/test_extended_real_clock.py",
]
code = pytest.main(["-q", "-p", "no:cacheprovider", *files])
gil = sys._is_gil_enabled()
print(f"GIL enabled at the end of the run: {gil}")
sys.exit(int(code) or int(gil))
PY
}

bench() {
    venv
    cd "$REPO"
    "$VENV/bin/python" tests/benchmarks/ratios.py
}

case "$STEP" in
build) build ;;
tests) tests ;;
bench) bench ;;
all) build && tests && bench ;;
*) echo "usage: $0 [build|tests|bench|all]" >&2 && exit 2 ;;
esac
