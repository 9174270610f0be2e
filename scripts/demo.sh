#!/usr/bin/env bash
# The main job, end to end, as far as releq goes today: build the CLI, write
# a LeNet-5-shaped model (random weights) at mixed bitwidths, and inspect it.
# Later stages (profile on the QEMU board, search) are added here as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
out="${1:-runs/demo}"
mkdir -p "$out"

cargo build --release -q -p releq-host
releq=target/release/releq

$releq synth --arch lenet5 --wbits 8 --abits 8 --out "$out/lenet5-int8.releq"
$releq synth --arch lenet5 --wbits 2,3,4,4,8 --abits 8 --out "$out/lenet5-mixed.releq"
$releq inspect "$out/lenet5-int8.releq"
$releq inspect "$out/lenet5-mixed.releq"
$releq inspect --json "$out/lenet5-mixed.releq" > "$out/lenet5-mixed.json"
echo "demo: wrote $out/ (models and their JSON summary)"
