#!/usr/bin/env bash
# Install what releq needs on a fresh Debian machine with rustup:
#   - the thumb rustup targets the firmware builds for (every board in boards/:
#     thumbv7em for the M4/M7 boards, thumbv7m for qemu-m3, thumbv6m for the
#     RP2040),
#   - qemu-system-arm (the default device, an emulated Cortex-M4), a C
#     compiler and clang (the C export and C runtime tests),
#   - TFLite Micro's Python interpreter (PyPI tflite-micro) in ./.venv-tflm,
#     for the test that runs `releq export --format tflite` files in it
#     (python3 and python3-venv from apt when missing),
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

# TFLite Micro's interpreter in a venv under the project (reused when it
# already imports), the oracle of the .tflite export test.
TFLM_VERSION=0.dev20261023182759
if ! .venv-tflm/bin/python -c "from tflite_micro import runtime" >/dev/null 2>&1; then
    apt_py=()
    command -v python3 >/dev/null 2>&1 || apt_py+=(python3)
    if [ ${#apt_py[@]} -eq 0 ] && ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then apt_py+=(python3-venv); fi
    if [ ${#apt_py[@]} -gt 0 ]; then
        say "installing ${apt_py[*]}"
        if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
            say "${apt_py[*]} missing and I cannot install them: run 'apt-get install python3 python3-venv' as root"
            exit 1
        fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-venv >/dev/null
    fi
    say "tflite-micro $TFLM_VERSION into .venv-tflm"
    rm -rf .venv-tflm
    python3 -m venv .venv-tflm
    .venv-tflm/bin/python -m pip install -q --disable-pip-version-check "tflite-micro==$TFLM_VERSION" numpy
fi
say "$(.venv-tflm/bin/python -c 'import tflite_micro; print("tflite-micro", tflite_micro.__version__)')"

if [ "${1:-}" != "--no-data" ]; then
    scripts/setup-data.sh "${RELEQ_DATA:-data}"
fi
say "done"
