#!/usr/bin/env bash
# Install what releq needs on a fresh Debian machine with rustup:
#   - the thumb rustup targets the firmware builds for (every board in boards/:
#     thumbv7em for the M4/M7 boards, thumbv7m for qemu-m3, thumbv6m for the
#     RP2040),
#   - qemu-system-arm (the default device, an emulated Cortex-M4), a C
#     compiler and clang (the C export and C runtime tests),
#   - MNIST and Fashion-MNIST in ./data (or $RELEQ_DATA); see scripts/setup-data.sh.
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

say "rustup targets"
rustup target add thumbv7em-none-eabihf thumbv7m-none-eabi thumbv6m-none-eabi >/dev/null

# Debian packages: qemu-system-arm; a C compiler (cc) for the tests that
# compile C against the exported header and the runtime staticlib on the
# host; clang for the C firmware test (examples/c-firmware, thumbv7em).
missing=()
command -v qemu-system-arm >/dev/null 2>&1 || missing+=(qemu-system-arm)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v clang >/dev/null 2>&1 || command -v clang-14 >/dev/null 2>&1 || missing+=(clang)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
        say "${missing[*]} missing and I cannot install them: run 'apt-get install ${missing[*]}' as root"
        exit 1
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
say "$(qemu-system-arm --version | head -1)"

if [ "${1:-}" != "--no-data" ]; then
    scripts/setup-data.sh "${RELEQ_DATA:-data}"
fi
say "done"
