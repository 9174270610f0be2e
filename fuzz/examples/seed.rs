//! Writes the seed corpora under `fuzz/seeds/`:
//! - `model/`: whole `.releq` files of a few small valid models (some with
//!   input codes appended, which the `model_decode` target uses as input);
//! - `payload/`: the same models' payloads (the bytes after the header);
//! - `frame/`: encoded protocol frames, one per file, and a mixed stream.
//!
//! Run from anywhere (stable toolchain): `cargo run --manifest-path fuzz/Cargo.toml --example seed`
//! An optional argument overrides the output directory.

use releq_common::builder::{activation_clamp, OwnedModel, OwnedWeights, NO_WEIGHTS};
use releq_common::model::{
    Activation, Add, Conv2d, Dense, Layer, Padding, Pool, Reshape, Shape, TensorQuant, HEADER_LEN,
};
use releq_common::protocol::{
    encode_frame, CounterUnit, DeviceError, DeviceInfo, FrameError, LayerSpec, LayerTime, ModelStatus, Request,
    Response, RunResult, SpecKind, MAX_FRAME, PROTOCOL_VERSION,
};
use releq_common::quant::{add_params, quantize_multiplier, weight_max};
use releq_common::runtime::RunError;
use releq_common::validate::{Field, ModelError, Problem};
use std::path::{Path, PathBuf};

const W_SCALE: f32 = 0.02;

fn q(scale: f32, zero_point: i32, bits: u8) -> TensorQuant {
    TensorQuant { scale, zero_point, bits }
}

/// Deterministic weights for `rows` rows of `k` at `bits`, with bias and
/// requantization for `in_q -> out`.
fn weights(seed: u32, rows: usize, k: usize, bits: u8, in_q: TensorQuant, out: TensorQuant) -> OwnedWeights {
    let wm = weight_max(bits);
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    let values: Vec<i8> = (0..rows * k)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ((x >> 16) as i32 % (2 * wm + 1) - wm) as i8
        })
        .collect();
    let bias: Vec<i32> = (0..rows).map(|r| (r as i32 * 37 - 50) * (seed as i32 % 5 + 1)).collect();
    let rq = quantize_multiplier(in_q.scale as f64 * W_SCALE as f64 / out.scale as f64);
    let requant = vec![rq; rows];
    OwnedWeights::new(bits, &values, k, &bias, &requant).expect("weights in range")
}

struct Builder {
    m: OwnedModel,
    shapes: Vec<Shape>,
    quants: Vec<TensorQuant>,
}

impl Builder {
    fn new(name: &str, shape: Shape, quant: TensorQuant) -> Self {
        Self { m: OwnedModel::new(name, shape, quant), shapes: vec![shape], quants: vec![quant] }
    }

    fn done(&mut self, layer: Layer<'static>, w: Option<OwnedWeights>, shape: Shape, quant: TensorQuant) -> u16 {
        self.shapes.push(shape);
        self.quants.push(quant);
        self.m.push(layer, w)
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        input: u16,
        depthwise: bool,
        out_c: u16,
        k: u8,
        stride: u8,
        pad: Padding,
        wbits: u8,
        out: TensorQuant,
        act: Activation,
    ) -> u16 {
        let ins = self.shapes[input as usize];
        let in_q = self.quants[input as usize];
        let out_c = if depthwise { ins.c } else { out_c };
        let kk = k as usize * k as usize * if depthwise { 1 } else { ins.c as usize };
        let w = weights(self.shapes.len() as u32, out_c as usize, kk, wbits, in_q, out);
        let mut t = NO_WEIGHTS;
        t.bits = wbits;
        let c = Conv2d {
            input,
            out_c,
            kh: k,
            kw: k,
            stride_h: stride,
            stride_w: stride,
            pad,
            act,
            clamp: activation_clamp(act, &out),
            out,
            w: t,
        };
        let oh = (ins.h + pad.top as u16 + pad.bottom as u16 - k as u16) / stride as u16 + 1;
        let ow = (ins.w + pad.left as u16 + pad.right as u16 - k as u16) / stride as u16 + 1;
        let layer = if depthwise { Layer::DepthwiseConv2d(c) } else { Layer::Conv2d(c) };
        self.done(layer, Some(w), Shape::new(oh, ow, out_c), out)
    }

    fn dense(&mut self, input: u16, out_features: u16, wbits: u8, out: TensorQuant, act: Activation) -> u16 {
        let k = self.shapes[input as usize].len();
        let w = weights(self.shapes.len() as u32, out_features as usize, k, wbits, self.quants[input as usize], out);
        let mut t = NO_WEIGHTS;
        t.bits = wbits;
        let d = Dense { input, out_features, act, clamp: activation_clamp(act, &out), out, w: t };
        self.done(Layer::Dense(d), Some(w), Shape::new(1, 1, out_features), out)
    }

    fn pool(&mut self, input: u16, max: bool, k: u8, stride: u8, pad: Padding) -> u16 {
        let ins = self.shapes[input as usize];
        let p = Pool { input, kh: k, kw: k, stride_h: stride, stride_w: stride, pad };
        let oh = (ins.h + pad.top as u16 + pad.bottom as u16 - k as u16) / stride as u16 + 1;
        let ow = (ins.w + pad.left as u16 + pad.right as u16 - k as u16) / stride as u16 + 1;
        let layer = if max { Layer::MaxPool2d(p) } else { Layer::AvgPool2d(p) };
        self.done(layer, None, Shape::new(oh, ow, ins.c), self.quants[input as usize])
    }

    fn add(&mut self, a: u16, b: u16, out: TensorQuant, act: Activation) -> u16 {
        let (qa, qb) = (self.quants[a as usize], self.quants[b as usize]);
        let l = Add {
            input: a,
            other: b,
            act,
            clamp: activation_clamp(act, &out),
            out,
            params: add_params(qa.scale, qb.scale, out.scale),
        };
        self.done(Layer::Add(l), None, self.shapes[a as usize], out)
    }

    fn flatten(&mut self, input: u16) -> u16 {
        let shape = Shape::new(1, 1, self.shapes[input as usize].len() as u16);
        self.done(Layer::Reshape(Reshape { input, shape }), None, shape, self.quants[input as usize])
    }

    fn encode(&self) -> Vec<u8> {
        let plan = self.m.plan().unwrap_or_else(|e| panic!("{}: {e}", self.m.name));
        let mut arena = vec![0i8; plan.arena_bytes];
        let input = vec![0i8; plan.input().shape.len()];
        plan.run(&mut arena, &input).expect("seed model runs");
        self.m.encode().expect("valid")
    }
}

fn models() -> Vec<(&'static str, Vec<u8>, usize)> {
    let mut out = Vec::new();

    // Two dense layers.
    let mut b = Builder::new("mlp", Shape::new(1, 1, 16), q(0.05, 0, 8));
    let h = b.dense(0, 12, 4, q(0.1, -128, 8), Activation::Relu);
    b.dense(h, 4, 8, q(0.2, 3, 8), Activation::None);
    out.push(("mlp", b.encode(), 16));

    // A small LeNet-like CNN with every pooling kind and a flatten.
    let mut b = Builder::new("cnn", Shape::new(8, 8, 1), q(1.0 / 255.0, -128, 8));
    let c1 = b.conv(0, false, 4, 3, 1, Padding::same(1), 4, q(0.05, -128, 8), Activation::Relu);
    let p1 = b.pool(c1, true, 2, 2, Padding::default());
    let d1 = b.conv(p1, true, 0, 3, 1, Padding::same(1), 3, q(0.06, -8, 5), Activation::Relu6);
    let p2 = b.pool(d1, false, 2, 2, Padding::default());
    let f = b.flatten(p2);
    b.dense(f, 10, 2, q(0.3, 0, 4), Activation::None);
    out.push(("cnn", b.encode(), 64));

    // A residual block: the add reads the block input (a skip connection).
    let mut b = Builder::new("residual", Shape::new(6, 6, 4), q(0.04, 0, 6));
    let c1 = b.conv(0, false, 4, 1, 1, Padding::default(), 8, q(0.05, -32, 6), Activation::Relu);
    let c2 = b.conv(c1, false, 4, 3, 1, Padding::same(1), 5, q(0.05, 0, 6), Activation::None);
    let a = b.add(c2, 0, q(0.07, -2, 6), Activation::Relu);
    let g = b.pool(a, false, 6, 6, Padding::default());
    let f = b.flatten(g);
    b.dense(f, 3, 6, q(0.1, 0, 8), Activation::None);
    out.push(("residual", b.encode(), 144));

    // Low bitwidths, stride 2, asymmetric padding, and a shortcut conv.
    let mut b = Builder::new("lowbit", Shape::new(7, 5, 2), q(0.5, 0, 2));
    let pad = Padding { top: 1, left: 0, bottom: 0, right: 2 };
    let c1 = b.conv(0, false, 3, 3, 2, pad, 2, q(0.5, -1, 2), Activation::None);
    let s = b.conv(0, false, 3, 3, 2, pad, 3, q(0.4, 0, 3), Activation::Relu);
    let a = b.add(c1, s, q(0.6, 0, 3), Activation::None);
    let m = b.pool(a, true, 2, 1, Padding { top: 1, left: 1, bottom: 0, right: 0 });
    b.dense(m, 2, 7, q(1.0, 1, 7), Activation::Relu6);
    out.push(("lowbit", b.encode(), 70));

    out
}

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let mut counts = heapless::Vec::new();
    counts.extend_from_slice(&[120, 3400, 99, 0]).unwrap();
    let mut out = Vec::new();
    let mut put = |name: &'static str, bytes: Vec<u8>| out.push((name, bytes));
    let mut buf = vec![0u8; MAX_FRAME];
    macro_rules! frame {
        ($name:expr, $msg:expr) => {
            put($name, encode_frame(&$msg, &mut buf).expect("fits").to_vec())
        };
    }
    frame!("req_info", Request::Info { protocol: PROTOCOL_VERSION });
    frame!("req_run", Request::Run { input: &[0, 1, 2, 0, 0xff, 0x80, 0, 0x7f] });
    frame!(
        "req_time_layer",
        Request::TimeLayer {
            spec: LayerSpec {
                kind: SpecKind::DepthwiseConv2d,
                input: Shape::new(28, 28, 8),
                out_c: 8,
                kh: 3,
                kw: 3,
                stride_h: 2,
                stride_w: 2,
                pad: Padding::same(1),
                wbits: 4,
                in_bits: 8,
                out_bits: 6,
            },
            repeat: 5,
        }
    );
    frame!(
        "resp_info",
        Response::Info(DeviceInfo {
            protocol: PROTOCOL_VERSION,
            firmware: "0.1.0",
            board: "lm3s6965evb",
            core: "cortex-m3",
            clock_hz: 12_000_000,
            counter: CounterUnit::Instructions,
            arena_bytes: 32768,
            max_frame: MAX_FRAME as u32,
            model: ModelStatus::Loaded { layers: 6, blob_bytes: 4321, crc: 0xdead_beef, arena_bytes: 1024 },
        })
    );
    frame!(
        "resp_info_invalid_model",
        Response::Info(DeviceInfo {
            protocol: PROTOCOL_VERSION,
            firmware: "0.1.0",
            board: "nucleo-f446re",
            core: "cortex-m4",
            clock_hz: 180_000_000,
            counter: CounterUnit::Cycles,
            arena_bytes: 65536,
            max_frame: MAX_FRAME as u32,
            model: ModelStatus::Invalid(ModelError::Layer {
                layer: 2,
                field: Field::Shift,
                problem: Problem::OutOfRange { value: 40, min: -31, max: 30 },
            }),
        })
    );
    frame!("resp_run", Response::Run(RunResult { output: &[1, 2, 0xfe, 0x80], counts, overhead: 7 }));
    frame!("resp_layer_time", Response::LayerTime(LayerTime { min: 1000, max: 1100, repeat: 5, overhead: 12 }));
    frame!("resp_err_run", Response::Error(DeviceError::Run(RunError::InputLength { expected: 784, actual: 3 })));
    frame!("resp_err_frame", Response::Error(DeviceError::Frame(FrameError::Overflow)));
    frame!("resp_err_oom", Response::Error(DeviceError::OutOfMemory { needed: 100_000, available: 65_536 }));
    frame!(
        "resp_err_model",
        Response::Error(DeviceError::Model(ModelError::Format(releq_common::model::FormatError::Crc {
            expected: 1,
            actual: 2
        })))
    );
    // A stream: garbage, an empty frame, two frames back to back.
    let mut stream = vec![0x05, 0x01, 0x00, 0x00];
    stream.extend_from_slice(&out[0].1);
    stream.extend_from_slice(&out[5].1);
    out.push(("stream_mixed", stream));
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create seed dir");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write seed");
    println!("{:6} bytes  {}", bytes.len(), p.display());
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"));
    for (name, blob, input_len) in models() {
        write(&root.join("model"), &format!("{name}.releq"), &blob);
        // The same file followed by input codes (model_decode's input).
        let mut with_input = blob.clone();
        with_input.extend((0..input_len).map(|i| (i * 37 % 256) as u8));
        write(&root.join("model"), &format!("{name}_with_input.bin"), &with_input);
        write(&root.join("payload"), &format!("{name}.bin"), &blob[HEADER_LEN..]);
    }
    for (name, bytes) in frames() {
        write(&root.join("frame"), &format!("{name}.bin"), &bytes);
    }
}
