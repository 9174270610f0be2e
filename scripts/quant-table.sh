#!/usr/bin/env bash
# Test accuracy of a trained run in float, int8 PTQ, 4-bit PTQ, 4-bit QAT and
# 2-bit QAT (weights 2, activations 8), all by the host's integer inference
# (bit-exact with the device). Usage: scripts/quant-table.sh RUN_DIR [STEPS]
# e.g. scripts/quant-table.sh runs/lenet5-mnist 300. Writes RUN_DIR/quant/.
set -euo pipefail
cd "$(dirname "$0")/.."
run="$1"; steps="${2:-300}"
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
cargo build --release -q -p releq-host
releq=target/release/releq
out="$run/quant"; mkdir -p "$out"
acc() { $releq eval "$1" --split test --json | sed -n 's/.*"accuracy": *\([0-9.]*\).*/\1/p'; }
printf '| config | test accuracy | seconds |\n| --- | ---: | ---: |\n'
printf '| float | %s | - |\n' "$(sed -n 's/.*"test_acc": *\([0-9.]*\).*/\1/p' "$run/summary.json")"
for cfg in "int8-ptq 8 8 0" "w4a4-ptq 4 4 0" "w4a4-qat 4 4 $steps" "w2a8-qat 2 8 $steps" "w2a2-qat 2 2 $steps"; do
    set -- $cfg
    t0=$(date +%s)
    if [ "$4" = 0 ]; then
        $releq quantize "$run/last.safetensors" --wbits "$2" --abits "$3" --out "$out/$1.releq" > /dev/null
    else
        $releq finetune "$run/last.safetensors" --wbits "$2" --abits "$3" --steps "$4" --out "$out/$1" > "$out/$1.log" 2>&1
        $releq quantize "$out/$1/qat.safetensors" --out "$out/$1.releq" > /dev/null
    fi
    printf '| %s | %s | %s |\n' "$1" "$(acc "$out/$1.releq")" "$(( $(date +%s) - t0 ))"
done
