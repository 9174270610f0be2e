//! `.tflite` import against TFLite Micro: every fixture in
//! `tests/fixtures/tflite/` (made by `scripts/make-tflite-fixtures.sh` with
//! TensorFlow's converter and TFLite Micro's own interpreter) is imported and
//! run on its stored int8 inputs by the reference kernels, the build's native
//! kernels (the runtime's path) and the host fast path; all must equal TFLite
//! Micro's stored outputs bit for bit. Damaged files must give errors, not
//! panics.

use releq_common::kernels::Reference;
use releq_common::model::Layer;
use releq_host::fastinfer::FastModel;
use releq_host::import::{import_tflite, ImportError};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tflite")
}

/// An int8 `.npy` fixture (the library's reader): (shape, values).
fn read_npy_i8(path: &std::path::Path) -> (Vec<usize>, Vec<i8>) {
    let a = releq_host::npy::read(path).unwrap_or_else(|e| panic!("{e}"));
    let releq_host::npy::Data::I8(v) = a.data else { panic!("{}: not int8", path.display()) };
    (a.shape, v)
}

fn check_fixture(name: &str) -> releq_host::import::Summary {
    let dir = fixtures();
    let bytes = std::fs::read(dir.join(format!("{name}.tflite"))).unwrap();
    let imported = import_tflite(&bytes, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (ishape, inputs) = read_npy_i8(&dir.join(format!("{name}.input.npy")));
    let (oshape, outputs) = read_npy_i8(&dir.join(format!("{name}.output.npy")));
    let n = ishape[0];
    assert!(n >= 100, "{name}: only {n} inputs");
    let plan = imported.model.plan().unwrap();
    let (ilen, olen) = (plan.input().shape.len(), plan.output().shape.len());
    assert_eq!(ilen * n, inputs.len(), "{name}: input size");
    assert_eq!(olen, oshape[1], "{name}: output size");
    let mut arena = vec![0i8; plan.arena_bytes];
    let mut fast = FastModel::new(&plan);
    let mut distinct = std::collections::HashSet::new();
    for k in 0..n {
        let x = &inputs[k * ilen..(k + 1) * ilen];
        let want = &outputs[k * olen..(k + 1) * olen];
        let got = plan.run_with::<Reference>(&mut arena, x).unwrap().to_vec();
        assert_eq!(got, want, "{name}: input {k}, reference kernels vs TFLite Micro");
        let got = plan.run(&mut arena, x).unwrap().to_vec();
        assert_eq!(got, want, "{name}: input {k}, native kernels vs TFLite Micro");
        let got = fast.run(x).unwrap();
        assert_eq!(got, want, "{name}: input {k}, fast path vs TFLite Micro");
        distinct.insert(want.to_vec());
    }
    // The outputs must depend on the input (a degenerate fixture proves little).
    assert!(distinct.len() > n / 2, "{name}: only {} distinct outputs in {n}", distinct.len());
    imported.summary
}

fn fates(s: &releq_host::import::Summary) -> Vec<(String, &'static str)> {
    s.ops.iter().map(|o| (o.op.clone(), o.fate)).collect()
}

#[test]
fn lenet_float_io_softmax_bit_exact() {
    let s = check_fixture("lenet");
    let f = fates(&s);
    assert_eq!(f.first().unwrap(), &("QUANTIZE".to_string(), "boundary"));
    assert!(f.contains(&("SOFTMAX".to_string(), "boundary")));
    assert!(f.contains(&("DEQUANTIZE".to_string(), "boundary")));
    assert_eq!(s.input.file_dtype, "FLOAT32");
    assert_eq!(s.input.shape, [14, 14, 1]);
    assert_eq!(s.input.layout, "NHWC");
    assert_eq!(s.output.shape, [1, 1, 10]);
}

#[test]
fn dwres_same_stride2_relu6_add_pad_mean_bit_exact() {
    let s = check_fixture("dwres");
    let f = fates(&s);
    assert!(f.contains(&("PAD".to_string(), "folded")), "{f:?}");
    assert!(f.contains(&("MEAN".to_string(), "converted")), "{f:?}");
    assert!(f.contains(&("ADD".to_string(), "converted")), "{f:?}");
    assert_eq!(s.input.file_dtype, "INT8");
}

#[test]
fn dwres_has_asymmetric_padding() {
    let bytes = std::fs::read(fixtures().join("dwres.tflite")).unwrap();
    let m = import_tflite(&bytes, "dwres").unwrap().model;
    let Layer::Conv2d(c) = m.view().unwrap().layers[0] else { panic!("first layer is not a conv") };
    // 14 -> 7 with k 3, stride 2: total padding 1, all of it bottom / right.
    assert_eq!((c.pad.top, c.pad.left, c.pad.bottom, c.pad.right), (0, 0, 1, 1));
}

#[test]
fn fc_per_tensor_bit_exact() {
    check_fixture("fc_tensor");
}

#[test]
fn dynamic_batch_shape_ops_folded_bit_exact() {
    let s = check_fixture("dynbatch");
    let f = fates(&s);
    for op in ["SHAPE", "STRIDED_SLICE", "PACK"] {
        assert!(f.contains(&(op.to_string(), "folded")), "{op}: {f:?}");
    }
}

#[test]
fn damaged_files_are_errors_not_panics() {
    for name in ["lenet", "dwres", "fc_tensor", "dynbatch"] {
        let bytes = std::fs::read(fixtures().join(format!("{name}.tflite"))).unwrap();
        // Every truncation point in the header region, then a stride through
        // the file; and single-byte flips at a stride.
        for cut in (0..64).chain((64..bytes.len()).step_by(97)) {
            assert!(import_tflite(&bytes[..cut], name).is_err(), "{name}: cut at {cut} imported");
        }
        let mut m = bytes.clone();
        for i in (0..bytes.len()).step_by(13) {
            for v in [0x00, 0xff, 0x80, 0x7f] {
                let old = m[i];
                m[i] = v;
                let _ = import_tflite(&m, name); // must not panic
                m[i] = old;
            }
        }
    }
}

#[test]
fn errors_name_what_is_wrong() {
    let e = import_tflite(b"not a flatbuffer at all", "x").unwrap_err();
    assert!(e.to_string().contains("TFL3"), "{e}");
    let e = import_tflite(&[], "x").unwrap_err();
    assert!(e.to_string().contains("too short"), "{e}");
    let bytes = std::fs::read(fixtures().join("unsupported_tanh.tflite")).unwrap();
    let e = import_tflite(&bytes, "x").unwrap_err();
    assert!(matches!(&e, ImportError::Unsupported { index: 1, op } if op == "TANH"), "{e}");
    let mut bytes = std::fs::read(fixtures().join("dynbatch.tflite")).unwrap();
    bytes.truncate(bytes.len() / 2);
    let e = import_tflite(&bytes, "x").unwrap_err();
    assert!(matches!(e, ImportError::Format(_)), "{e}");
}

/// The parsed graph of a fixture, for edits that a converter would never
/// write but a hand-edited file could hold.
fn graph(name: &str) -> releq_host::import::tflite::Graph {
    releq_host::import::tflite::read(&std::fs::read(fixtures().join(format!("{name}.tflite"))).unwrap()).unwrap()
}

fn convert_err(g: &releq_host::import::tflite::Graph) -> String {
    releq_host::import::convert::convert(g, "x").map(|_| ()).unwrap_err().to_string()
}

#[test]
fn unsupported_variants_are_named() {
    use releq_host::import::tflite::{Act, Options};
    // Dilation 2 on the first convolution.
    let mut g = graph("dwres");
    if let Options::Conv { dilation, .. } = &mut g.ops[0].options {
        *dilation = (2, 2);
    }
    let e = convert_err(&g);
    assert!(e.contains("operator 0 (CONV_2D) has dilation (2, 2)"), "{e}");
    // A fused TANH.
    let mut g = graph("dwres");
    if let Options::Conv { act, .. } = &mut g.ops[1].options {
        *act = Act::Other("TANH");
    }
    let e = convert_err(&g);
    assert!(e.contains("operator 1 (DEPTHWISE_CONV_2D) has fused activation TANH"), "{e}");
    // A PAD read by something other than a convolution: make the conv after
    // it a MAX_POOL_2D by name.
    let mut g = graph("dwres");
    let pad = g.ops.iter().position(|o| o.name == "PAD").unwrap();
    g.ops[pad + 1].name = "MAX_POOL_2D".into();
    let e = convert_err(&g);
    assert!(e.contains(&format!("operator {pad} (PAD) is read by an op other than CONV_2D")), "{e}");
    // ADD of two different shapes: point its second input at the model input.
    let mut g = graph("dwres");
    let add = g.ops.iter().position(|o| o.name == "ADD").unwrap();
    g.ops[add].inputs[1] = g.inputs[0];
    let e = convert_err(&g);
    assert!(e.contains("broadcasting is not supported"), "{e}");
    // A weight zero point.
    let mut g = graph("fc_tensor");
    let fc = g.ops.iter().find(|o| o.name == "FULLY_CONNECTED").unwrap().clone();
    let w = fc.inputs[1] as usize;
    g.tensors[w].quant.as_mut().unwrap().zero_point[0] = 3;
    let e = convert_err(&g);
    assert!(e.contains(&format!("tensor {w}")) && e.contains("non-zero zero point"), "{e}");
    // A QUANTIZE in the middle of the graph.
    let mut g = graph("fc_tensor");
    g.ops[1].name = "QUANTIZE".into();
    let e = convert_err(&g);
    assert!(e.contains("operator 1 (QUANTIZE) is only supported at the model boundary"), "{e}");
    // Truncated weight data.
    let mut g = graph("fc_tensor");
    g.tensors[w].data.as_mut().unwrap().pop();
    let e = convert_err(&g);
    assert!(e.contains(&format!("tensor {w}")) && e.contains("bytes of data"), "{e}");
}
