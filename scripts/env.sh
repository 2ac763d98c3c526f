# Sourced by scripts/setup, scripts/demo and scripts/test: where segstream keeps its caches.
# Everything heavy lives outside the checkout, so a fresh clone on the same machine is quick.
SEGSTREAM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SEGSTREAM_CACHE=${SEGSTREAM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/segstream}
# Python that exports models and computes the tests' independent references.
export SEGSTREAM_PYTHON=${SEGSTREAM_PYTHON:-$SEGSTREAM_CACHE/venv/bin/python}
# The ONNX Runtime shared library copied out of the onnxruntime wheel.
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$SEGSTREAM_CACHE/onnxruntime/libonnxruntime.so}
# One release build shared by the demo, the tests and every clone on this machine.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SEGSTREAM_CACHE/target}
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
export SEGSTREAM_ROOT SEGSTREAM_CACHE
