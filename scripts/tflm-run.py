#!/usr/bin/env python3
"""Run .tflite models in TFLite Micro's own interpreter (PyPI `tflite-micro`).

    tflm-run.py MODEL.tflite INPUTS.npy OUTPUTS.npy [MODEL INPUTS OUTPUTS ...] [--arena BYTES]

INPUTS.npy holds int8 input codes, one input per row ([N, ...], any shape with
N rows whose other dimensions multiply to the model input's size; what
`releq eval --inputs` reads). Each row is reshaped to the model's input tensor,
run with `invoke()`, and the int8 output codes are saved as OUTPUTS.npy,
shape [N, output size]. Several (model, inputs, outputs) triples run in one
process, so the interpreter is imported once. Exit status 1 with a message on
any error (missing file, wrong dtype or size, TFLite Micro refusing the model).
"""
import sys

import numpy as np
from tflite_micro import runtime as tflm


def run(model, inputs, outputs, arena):
    x = np.load(inputs)
    if x.dtype != np.int8:
        raise SystemExit(f"{inputs}: dtype {x.dtype}, expected int8 input codes")
    try:
        it = tflm.Interpreter.from_file(model, arena_size=arena)
    except Exception as e:  # TFLite Micro reports what it refuses on stderr
        raise SystemExit(f"{model}: TFLite Micro cannot load it: {e}")
    det = it.get_input_details(0)
    shape = tuple(int(d) for d in det["shape"])
    size = int(np.prod(shape))
    if det["dtype"] != np.int8:
        raise SystemExit(f"{model}: input type {det['dtype']}, expected int8")
    rows = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)
    if rows.shape[1] != size:
        raise SystemExit(f"{inputs}: {rows.shape[1]} values per input, the model's input {list(shape)} has {size}")
    outs = []
    for r in rows:
        it.set_input(r.reshape(shape), 0)
        it.invoke()
        outs.append(it.get_output(0).reshape(-1).copy())
    np.save(outputs, np.stack(outs).astype(np.int8))


def main(argv):
    arena = 1 << 20
    if "--arena" in argv:
        i = argv.index("--arena")
        arena = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    if not argv or len(argv) % 3:
        raise SystemExit(__doc__)
    for i in range(0, len(argv), 3):
        run(*argv[i:i + 3], arena)


if __name__ == "__main__":
    main(sys.argv[1:])
