#!/usr/bin/env bash
# Make the int8 .tflite fixtures under tests/fixtures/tflite/ with the real
# tools: TensorFlow's converter, TFLite Micro's own interpreter (PyPI
# `tflite-micro`) for the reference outputs, and LiteRT's BUILTIN_REF kernels
# as a +-1 sanity check. Not run in CI: the fixtures are committed.
#
#   scripts/make-tflite-fixtures.sh [MNIST_DIR [MODEL...]]   (default: /work/shared/data/mnist
#                                                   or $RELEQ_DATA_SRC/mnist, ./data/mnist)
#
# The tools are installed from PyPI into a venv ($VENV, default
# target/tflite-venv) the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'make-tflite-fixtures: %s\n' "$*" >&2; }

MNIST="${1:-}"
shift || true
if [ -z "$MNIST" ]; then
    for d in "${RELEQ_DATA_SRC:-/nonexistent}/mnist" /work/shared/data/mnist data/mnist; do
        if [ -f "$d/train-images-idx3-ubyte.gz" ]; then MNIST="$d"; break; fi
    done
fi
[ -n "$MNIST" ] || { say "no MNIST directory found; pass one"; exit 1; }

VENV="${VENV:-target/tflite-venv}"
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
fi
# Versions these fixtures were made with.
"$VENV/bin/pip" install -q tensorflow-cpu==2.21.0 tflite-micro==0.dev20261023182759 ai-edge-litert==2.3.0 numpy
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0 CUDA_VISIBLE_DEVICES=""
"$VENV/bin/python" scripts/make-tflite-fixtures.py "$MNIST" tests/fixtures/tflite "$@"
say "done"
