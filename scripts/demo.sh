#!/usr/bin/env bash
# The main job, end to end, as far as releq goes today (the bitwidth search
# replaces the hand-picked bitwidths here when it lands):
#   1. train LeNet-5 on MNIST in float (resumes; skipped when already trained),
#   2. quantize it: int8 PTQ, 4-bit PTQ, and 4-bit after a short QAT fine-tune,
#   3. evaluate each with the host's integer inference (the device's arithmetic),
#   4. profile each layer on the default device (QEMU Cortex-M4),
#   5. run 100 test images on the device and compare bit for bit with the host.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
run="${RELEQ_RUN:-runs/lenet5-mnist}"
out="${1:-runs/demo}"
mkdir -p "$out"

cargo build --release -q -p releq-host
releq=target/release/releq

resume=(); [ -f "$run/train.json" ] && resume=(--resume)
$releq train --model lenet5 --dataset mnist --out "$run" "${resume[@]}"

$releq quantize "$run/last.safetensors" --wbits 8 --abits 8 --out "$out/lenet5-int8.releq"
$releq quantize "$run/last.safetensors" --wbits 4 --abits 4 --out "$out/lenet5-w4a4-ptq.releq"
$releq finetune "$run/last.safetensors" --wbits 4 --abits 4 --steps 300 --out "$out/qat-w4a4"
$releq quantize "$out/qat-w4a4/qat.safetensors" --out "$out/lenet5-w4a4-qat.releq"

for m in int8 w4a4-ptq w4a4-qat; do
    $releq eval "$out/lenet5-$m.releq" --dataset mnist
done
$releq inspect "$out/lenet5-w4a4-qat.releq"
$releq profile "$out/lenet5-int8.releq" --board qemu-m4
$releq run "$out/lenet5-w4a4-qat.releq" --board qemu-m4 --dataset mnist --count 100
echo "demo: models and reports in $out/"
