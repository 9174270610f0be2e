#!/usr/bin/env bash
# The main job: a ReLeQ bitwidth search for LeNet-5 on MNIST against latency
# measured on the default device (QEMU-emulated Cortex-M4).
#   1. train LeNet-5 in float if there is no checkpoint yet (resumable),
#   2. `releq search`: measure the latency table on the device (cached),
#      let the PPO agent choose every layer's weight AND activation bits
#      (2..8 each; low-bit activations are what the packed kernels need)
#      under ReLeQ's reward, fine-tune cheaper candidates (refinement),
#      fine-tune the chosen configuration, verify it on the device bit for
#      bit and write runs/search/ (report.md, report.json, pareto.svg, ...).
# Extra arguments go to `releq search` (e.g. --budget 100, --strategy random).
set -euo pipefail
cd "$(dirname "$0")/.."
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
run="${RELEQ_RUN:-runs/lenet5-mnist}"

cargo build --release -q -p releq-host
releq=target/release/releq

if [ ! -f "$run/summary.json" ]; then
    resume=(); [ -f "$run/train.json" ] && resume=(--resume)
    $releq train --model lenet5 --dataset mnist --out "$run" "${resume[@]}"
fi

out="runs/search"
resume=(); [ -f "$out/episodes.jsonl" ] && resume=(--resume)
$releq search "$run/last.safetensors" --board qemu-m4 --budget 1000 --search-activations --refine-slack 3 \
    --out "$out" "${resume[@]}" "$@"
