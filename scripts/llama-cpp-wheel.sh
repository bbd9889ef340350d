#!/usr/bin/env bash
# Install llama-cpp-python (with its OpenAI-compatible server) into a venv from a cached wheel, and unpack
# llama.cpp's HF -> GGUF converter; tests/test_writer_openai.py uses both to serve a tiny model made in the test.
#
#   scripts/llama-cpp-wheel.sh [VENV]          VENV defaults to .venv; LLAMA_CPP_VERSION overrides the pin
#
# llama-cpp-python publishes only a source distribution, and compiling it takes 4-6 min on 2 cores, so the
# wheel is built once into $CAPTIONKIT_BUILD_CACHE/wheels/ (with every dependency wheel, so a reinstall is offline) and
# reused while a wheel for the pinned version is there. Also left under $CAPTIONKIT_BUILD_CACHE (default ~/.cache/captionkit-build):
#   sdist/llama_cpp_python-<version>.tar.gz       the source distribution
#   llama-cpp-convert/<version>/convert_hf_to_gguf.py, conversion/ and gguf-py/   (the converter
#                                                        imports both from next to itself; nothing is installed)
# Needs a C/C++ compiler and cmake for the one-time build; CMAKE_ARGS passes llama.cpp build options (the
# default build targets this machine's CPU, so do not share the wheels with other hardware).
# Safe to re-run: each step is skipped when done (a no-op run takes ~2 s).
set -euo pipefail

VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
VENV="${1:-.venv}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# The build cache lives outside the checkout so that a fresh clone on the same machine (CI) reuses it.
CACHE="${CAPTIONKIT_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/captionkit-build}"
WHEELS="$CACHE/wheels"
SDIST_DIR="$CACHE/sdist"
SDIST="$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz"
CONVERT="$CACHE/llama-cpp-convert/$VERSION"
SERVER_EXTRAS=(fastapi uvicorn sse-starlette starlette-context pydantic-settings)

[ -x "$VENV/bin/python" ] || { echo "error: no virtual environment at $VENV (run make setup first)" >&2; exit 1; }
mkdir -p "$WHEELS" "$SDIST_DIR"

# 1. The source distribution: the build input, and where the converter comes from.
if [ ! -f "$SDIST" ]; then
  echo "==> downloading the llama-cpp-python $VERSION source distribution into $SDIST_DIR/ (~75 MB)"
  "${PIP[@]}" download --quiet --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d "$SDIST_DIR"
fi

# 2. The wheel, built once.
if compgen -G "$WHEELS/llama_cpp_python-$VERSION-*.whl" >/dev/null; then
  echo "==> llama-cpp-python $VERSION wheel is cached: $(ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl)"
else
  echo "==> building the llama-cpp-python $VERSION wheel into $WHEELS/ (compiles llama.cpp: 4-6 min on 2 cores, once)"
  start=$SECONDS
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}" \
    "${PIP[@]}" wheel --quiet --find-links "$SDIST_DIR" --find-links "$WHEELS" -w "$WHEELS" \
    "llama-cpp-python[server]==$VERSION"
  echo "==> built in $((SECONDS - start)) s: $(ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl)"
fi

# 3. Install it (and the server's extras) into the venv, unless that version is already there.
installed="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))' 2>/dev/null || true)"
if [ "$installed" = "$VERSION" ] && "$VENV/bin/python" -c 'import llama_cpp.server.app' 2>/dev/null; then
  echo "==> llama-cpp-python $VERSION (with server) is installed in $VENV"
else
  echo "==> installing llama-cpp-python[server]==$VERSION into $VENV from $WHEELS/"
  # Offline from the cached wheels when they cover everything, else with the package index as well.
  "${PIP[@]}" install --quiet --no-index --find-links "$WHEELS" "llama-cpp-python[server]==$VERSION" \
      "${SERVER_EXTRAS[@]}" 2>/dev/null \
    || "${PIP[@]}" install --quiet --find-links "$WHEELS" "llama-cpp-python[server]==$VERSION" "${SERVER_EXTRAS[@]}"
fi

# 4. The converter with its conversion/ and gguf-py/ packages, unpacked from the sdist.
if [ -f "$CONVERT/convert_hf_to_gguf.py" ] && [ -d "$CONVERT/conversion" ] && [ -d "$CONVERT/gguf-py/gguf" ]; then
  echo "==> the HF -> GGUF converter is at $CONVERT/convert_hf_to_gguf.py"
else
  echo "==> unpacking convert_hf_to_gguf.py, conversion/ and gguf-py/ into $CONVERT/"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  top="llama_cpp_python-$VERSION/vendor/llama.cpp"
  tar -xzf "$SDIST" -C "$tmp" "$top/convert_hf_to_gguf.py" "$top/conversion" "$top/gguf-py"
  rm -rf "$CONVERT"
  mkdir -p "$(dirname "$CONVERT")"
  mv "$tmp/$top" "$CONVERT"
fi
