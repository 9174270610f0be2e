#!/usr/bin/env python3
"""Make the ONNX test fixtures in tests/fixtures/onnx (not run in CI).

Three float models exported with torch.onnx.export (TorchScript exporter,
eval mode) and their onnxruntime outputs on the first 16 MNIST test images:

- mnist-cnn.onnx: Conv 8@3x3, ReLU, MaxPool 2, Conv 16@3x3, ReLU, MaxPool 2,
  Flatten, Gemm 32, ReLU, Gemm 10; trained 2 epochs on MNIST (so that PTQ
  accuracy means something); the exporter folds nothing we rely on;
- bn-dw-add.onnx: Conv + BatchNormalization + ReLU, a depthwise Conv + BN +
  ReLU, a 1x1 Conv, a residual Add + ReLU, GlobalAveragePool, Flatten, Gemm;
  exported with TrainingMode.PRESERVE so BatchNormalization stays a node;
  random weights and batch-norm statistics;
- clip-avg-matmul.onnx: Conv stride 2, Clip(0, 6), AveragePool 2, Flatten,
  MatMul + Add (bias), ReLU, Gemm; random weights.

For each: NAME.onnx, NAME.outputs.npy (float32 [16, 10], onnxruntime);
inputs.npy holds the images (uint8 [16, 28, 28]; the models take pixel / 255
as NCHW [N, 1, 28, 28]); mnist-cnn.json records the torch float test accuracy.

    python3 -m venv /tmp/onnxvenv
    /tmp/onnxvenv/bin/pip install torch onnx onnxruntime numpy
    /tmp/onnxvenv/bin/python scripts/make-onnx-fixtures.py [DATA_DIR]

DATA_DIR holds mnist/ as scripts/setup-data.sh lays it out (default ./data).
"""

import gzip
import json
import os
import sys

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "onnx")
N = 16


def idx(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            with open(p, "rb") as f:
                raw = f.read()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            ndim = raw[3]
            dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
            return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)
    raise FileNotFoundError(path)


class MnistCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3)
        self.c2 = nn.Conv2d(8, 16, 3)
        self.f1 = nn.Linear(16 * 5 * 5, 32)
        self.f2 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.c1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.c2(x)), 2)
        x = torch.flatten(x, 1)
        return self.f2(torch.relu(self.f1(x)))


class BnDwAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.b2 = nn.BatchNorm2d(8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        y = self.pw(torch.relu(self.b2(self.dw(x))))
        x = torch.relu(x + y)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class ClipAvgMatMul(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 3, stride=2)
        self.w = nn.Parameter(torch.randn(6 * 6 * 6, 24) * 0.2)
        self.b = nn.Parameter(torch.randn(24) * 0.1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = nn.functional.avg_pool2d(torch.clamp(self.c1(x), 0.0, 6.0), 2)
        x = torch.flatten(x, 1)
        x = torch.relu(torch.matmul(x, self.w) + self.b)
        return self.fc(x)


def export(model, name, x, training=torch.onnx.TrainingMode.EVAL):
    model.eval()
    path = os.path.join(OUT, name + ".onnx")
    torch.onnx.export(
        model,
        (x,),
        path,
        dynamo=False,
        opset_version=13,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        training=training,
        do_constant_folding=True,
    )
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x.numpy()})[0].astype(np.float32)
    np.save(os.path.join(OUT, name + ".outputs.npy"), out)
    ops = [n.op_type for n in __import__("onnx").load(path).graph.node]
    print(f"{name}: {os.path.getsize(path)} bytes, ops {ops}")
    return path


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else "data"
    torch.manual_seed(1)
    os.makedirs(OUT, exist_ok=True)
    tr_x = idx(os.path.join(data, "mnist", "train-images-idx3-ubyte"))
    tr_y = idx(os.path.join(data, "mnist", "train-labels-idx1-ubyte"))
    te_x = idx(os.path.join(data, "mnist", "t10k-images-idx3-ubyte"))
    te_y = idx(os.path.join(data, "mnist", "t10k-labels-idx1-ubyte"))
    f = lambda a: torch.tensor(a, dtype=torch.float32).unsqueeze(1) / 255.0
    np.save(os.path.join(OUT, "inputs.npy"), te_x[:N].copy())
    x = f(te_x[:N])

    m = MnistCnn()
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    X, Y = f(tr_x), torch.tensor(tr_y, dtype=torch.long)
    for epoch in range(2):
        perm = torch.randperm(len(X))
        m.train()
        for i in range(0, len(X), 64):
            b = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(m(X[b]), Y[b]).backward()
            opt.step()
    m.eval()
    with torch.no_grad():
        acc = (m(f(te_x)).argmax(1).numpy() == te_y).mean()
    print(f"mnist-cnn: torch float test accuracy {100 * acc:.2f}%")
    with open(os.path.join(OUT, "mnist-cnn.json"), "w") as fh:
        json.dump({"torch_float_test_accuracy": float(acc), "epochs": 2, "seed": 1}, fh, indent=1)
        fh.write("\n")
    export(m, "mnist-cnn", x)

    m = BnDwAdd()
    with torch.no_grad():
        for bn in (m.b1, m.b2):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    export(m, "bn-dw-add", x, training=torch.onnx.TrainingMode.PRESERVE)

    export(ClipAvgMatMul(), "clip-avg-matmul", x)


if __name__ == "__main__":
    main()
