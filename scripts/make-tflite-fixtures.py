"""Make the int8 .tflite fixtures and TFLite Micro's outputs on them.

Run by scripts/make-tflite-fixtures.sh (which installs the tools). For each
model below: train it briefly on MNIST downsampled to 14x14 (small fixtures),
convert it to a full-int8 .tflite calibrated on MNIST, then run TFLite Micro's
interpreter on N_INPUTS test images and store (extra arguments after the two
directories remake only the named models)

  <name>.tflite          the model
  <name>.input.npy       int8 [N, 14, 14, 1]: the codes the int8 graph reads
                         (the QUANTIZE op's output when the file takes float)
  <name>.output.npy      int8 [N, K]: TFLite Micro's codes at the last int8
                         tensor (before a final DEQUANTIZE / SOFTMAX)
  <name>.softmax.npy     (models ending with SOFTMAX) int8 softmax codes

and check every output against LiteRT's BUILTIN_REF kernels within +-1.
"""

import gzip
import json
import os
import sys

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter as LiteRT
from ai_edge_litert.interpreter import OpResolverType
from tflite_micro.python.tflite_micro import runtime as tflm

N_INPUTS = 200
SIDE = 14
keras = tf.keras
L = keras.layers


def load_mnist(d, split):
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(os.path.join(d, f"{prefix}-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    x = np.frombuffer(raw, np.uint8, offset=16).reshape(n, 28, 28).astype(np.float32) / 255.0
    with gzip.open(os.path.join(d, f"{prefix}-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    # 2x2 mean: 14x14 images keep the fixtures small.
    x = x.reshape(n, 14, 2, 14, 2).mean(axis=(2, 4))[..., None]
    return x, y


def inp(batch):
    return keras.Input(shape=(SIDE, SIDE, 1), batch_size=batch)


def lenet():
    """CONV_2D + fused ReLU, MAX_POOL_2D, AVERAGE_POOL_2D, RESHAPE,
    per-channel FULLY_CONNECTED; float I/O (QUANTIZE, DEQUANTIZE) and SOFTMAX."""
    x = i = inp(1)
    x = L.Conv2D(6, 3, activation="relu")(x)  # 12
    x = L.MaxPooling2D(2)(x)  # 6
    x = L.Conv2D(12, 3, activation="relu")(x)  # 4
    x = L.AveragePooling2D(2)(x)  # 2
    x = L.Flatten()(x)
    x = L.Dense(24, activation="relu")(x)
    x = L.Dense(10, activation="softmax")(x)
    return keras.Model(i, x), dict(float_io=True)


def dwres():
    """SAME stride 2 (asymmetric padding), DEPTHWISE_CONV_2D, ReLU6, ADD,
    PAD folded into a convolution, MEAN (global average pooling)."""
    x = i = inp(1)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(x)  # 7, pad 0/1
    y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    y = L.Conv2D(8, 1)(y)
    x = L.Add()([x, y])
    x = L.ReLU()(x)
    x = L.ZeroPadding2D(((1, 0), (0, 1)))(x)  # 8: PAD
    x = L.Conv2D(12, 3)(x)  # 6
    x = L.DepthwiseConv2D(2, strides=2, padding="same")(x)  # 3
    x = L.ReLU(6.0)(x)
    x = L.GlobalAveragePooling2D()(x)  # MEAN
    x = L.Dense(10)(x)
    return keras.Model(i, x), dict(float_io=False)


def fc_tensor():
    """Per-tensor FULLY_CONNECTED (f32 scale product) after a RESHAPE."""
    x = i = inp(1)
    x = L.Flatten()(x)
    x = L.Dense(32, activation="relu")(x)
    x = L.Dense(10)(x)
    return keras.Model(i, x), dict(float_io=False, per_tensor_dense=True)


def dynbatch():
    """A dynamic batch dimension: Flatten becomes SHAPE / STRIDED_SLICE /
    PACK / RESHAPE; SAME padding with stride 2 on an even input."""
    x = i = inp(None)
    x = L.Conv2D(4, 4, strides=2, padding="same", activation="relu")(x)  # 7
    x = L.Flatten()(x)
    x = L.Dense(10)(x)
    return keras.Model(i, x), dict(float_io=False)


def unsupported_tanh():
    """A TANH (not supported by the importer): only the .tflite is kept, for
    the error-message test."""
    x = i = inp(1)
    x = L.Conv2D(2, 3)(x)
    x = L.Activation("tanh")(x)
    x = L.Flatten()(x)
    x = L.Dense(10)(x)
    return keras.Model(i, x), dict(float_io=False, no_oracle=True)


MODELS = {"lenet": lenet, "dwres": dwres, "fc_tensor": fc_tensor, "dynbatch": dynbatch, "unsupported_tanh": unsupported_tanh}


def convert(model, opts, calib):
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def rep():
        for k in range(200):
            yield [calib[k : k + 1]]

    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not opts["float_io"]:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    if opts.get("per_tensor_dense"):
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    return conv.convert()


def boundary_tensors(path):
    """(int8 input tensor, int8 output tensor, softmax output or None) of the
    int8 graph, stepping over boundary QUANTIZE / DEQUANTIZE / SOFTMAX."""
    it = LiteRT(model_path=path)
    ops = it._get_ops_details()
    producer = {o: op for op in ops for o in op["outputs"]}
    consumers = {}
    for op in ops:
        for t in op["inputs"]:
            consumers.setdefault(t, []).append(op)
    tin = it.get_input_details()[0]["index"]
    tout = it.get_output_details()[0]["index"]
    if it.get_input_details()[0]["dtype"] == np.float32:
        (q,) = consumers[tin]
        assert q["op_name"] == "QUANTIZE"
        tin = q["outputs"][0]
    softmax = None
    while producer[tout]["op_name"] in ("DEQUANTIZE", "SOFTMAX"):
        if producer[tout]["op_name"] == "SOFTMAX":
            softmax = producer[tout]["outputs"][0]
        tout = producer[tout]["inputs"][0]
    return tin, tout, softmax, [op["op_name"] for op in ops]


def main():
    mnist, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    xtr, ytr = load_mnist(mnist, "train")
    xte, _ = load_mnist(mnist, "test")
    only = sys.argv[3:]  # optional: remake only these models
    summary_path = os.path.join(out_dir, "fixtures.json")
    summary = json.load(open(summary_path)) if only and os.path.exists(summary_path) else {}
    for seed, (name, make) in enumerate(MODELS.items()):
        if only and name not in only:
            continue
        keras.utils.set_random_seed(seed)
        model, opts = make()
        loss = "sparse_categorical_crossentropy" if opts["float_io"] else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
        hist = model.fit(xtr[:12000], ytr[:12000], epochs=3, batch_size=64, verbose=0)
        flat = convert(model, opts, xtr[12000:12200])
        path = os.path.join(out_dir, f"{name}.tflite")
        with open(path, "wb") as f:
            f.write(flat)
        if opts.get("no_oracle"):
            summary[name] = dict(ops=[op["op_name"] for op in LiteRT(model_path=path)._get_ops_details()], bytes=len(flat))
            print(name, json.dumps(summary[name]), flush=True)
            continue
        tin, tout, tsoft, op_names = boundary_tensors(path)

        micro = tflm.Interpreter.from_file(
            path, arena_size=256 * 1024, intrepreter_config=tflm.InterpreterConfig.kPreserveAllTensors
        )
        ref = LiteRT(
            model_path=path,
            experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
            experimental_preserve_all_tensors=True,
        )
        ref.allocate_tensors()
        det = ref.get_input_details()[0]
        xs = xte[:N_INPUTS]
        ins, outs, softs = [], [], []
        worst = 0
        for x in xs:
            x = x[None]
            if det["dtype"] == np.int8:
                s, z = det["quantization"]
                x = np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)
            micro.set_input(x, 0)
            micro.invoke()
            got_in = micro.GetTensor(tin, 0)["tensor_data"].copy()
            got = micro.GetTensor(tout, 0)["tensor_data"].copy()
            ref.set_tensor(det["index"], x)
            ref.invoke()
            want = ref.get_tensor(tout)
            worst = max(worst, int(np.abs(got.astype(np.int32) - want.astype(np.int32)).max()))
            ins.append(got_in.reshape(SIDE, SIDE, 1))
            outs.append(got.reshape(-1))
            if tsoft is not None:
                softs.append(micro.GetTensor(tsoft, 0)["tensor_data"].copy().reshape(-1))
        assert worst <= 1, f"{name}: TFLite Micro and LiteRT BUILTIN_REF differ by {worst}"
        np.save(os.path.join(out_dir, f"{name}.input.npy"), np.stack(ins).astype(np.int8))
        np.save(os.path.join(out_dir, f"{name}.output.npy"), np.stack(outs).astype(np.int8))
        if tsoft is not None:
            np.save(os.path.join(out_dir, f"{name}.softmax.npy"), np.stack(softs).astype(np.int8))
        summary[name] = dict(
            ops=op_names,
            bytes=len(flat),
            train_accuracy=round(float(hist.history["accuracy"][-1]), 4),
            max_diff_tflm_vs_litert_builtin_ref=worst,
            int8_input_tensor=int(tin),
            int8_output_tensor=int(tout),
        )
        print(name, json.dumps(summary[name]), flush=True)
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
