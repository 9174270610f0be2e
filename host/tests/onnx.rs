//! ONNX import against onnxruntime: the fixtures in tests/fixtures/onnx were
//! exported by torch.onnx.export and run by onnxruntime 1.32
//! (`scripts/make-onnx-fixtures.py`). An imported model's float logits
//! agree with onnxruntime's within 1e-4 of the largest logit; the trained
//! MNIST CNN keeps its float accuracy under int8 PTQ (within 0.5 pp);
//! malformed or unsupported graphs get errors naming the node or tensor.
//! The accuracy test is skipped (with a note) without the MNIST files
//! (`$RELEQ_DATA` or `../shared/data` next to the repository).

use candle_core::Device;
use prost::Message as _;
use releq_host::checkpoint::{self, Checkpoint};
use releq_host::data::{self, Dataset, Images, Split};
use releq_host::import::onnx::{import_onnx, OnnxError};
use releq_host::import::onnx_proto::{AttributeProto, ModelProto};
use releq_host::nn::calib::{batch_tensor, calibrate};
use releq_host::nn::qplan::QuantPlan;
use releq_host::npy;
use releq_host::quantize::export;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/onnx").join(name)
}

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("RELEQ_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    if dir.join("mnist").is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: no MNIST in {} (set RELEQ_DATA)", dir.display());
        None
    }
}

fn import(bytes: &[u8], name: &str) -> Result<releq_host::import::onnx::OnnxImport, OnnxError> {
    import_onnx(bytes, name, &format!("onnx:{name}.onnx"), Some(Dataset::Mnist))
}

/// Import a fixture into a checkpoint directory and load it back.
fn load(name: &str, dir: &std::path::Path) -> Checkpoint {
    let bytes = std::fs::read(fixture(&format!("{name}.onnx"))).unwrap();
    let imp = import(&bytes, name).unwrap();
    let params = imp.params.iter().map(|p| (p.name.as_str(), p.dims.as_slice(), p.data.as_slice()));
    let path = checkpoint::write(dir, &imp.graph, params).unwrap();
    checkpoint::load(&path, None).unwrap()
}

fn inputs() -> Images {
    let a = npy::read(&fixture("inputs.npy")).unwrap();
    let npy::Data::U8(pixels) = a.data else { panic!("inputs.npy is not uint8") };
    assert_eq!(a.shape, [16, 28, 28]);
    Images { count: 16, rows: 28, cols: 28, pixels, labels: vec![0; 16] }
}

#[test]
fn float_logits_match_onnxruntime() {
    let images = inputs();
    let idx: Vec<usize> = (0..images.len()).collect();
    let x = batch_tensor(&images, &idx, &Device::Cpu).unwrap();
    for name in ["mnist-cnn", "bn-dw-add", "clip-avg-matmul"] {
        let tmp = tempfile::tempdir().unwrap();
        let c = load(name, tmp.path());
        let ours = c.net.forward(&x, false).unwrap().to_vec2::<f32>().unwrap();
        let ort = npy::read(&fixture(&format!("{name}.outputs.npy"))).unwrap();
        let npy::Data::F32(ort) = ort.data else { panic!("outputs are not float32") };
        let mut worst = 0f32;
        for (i, row) in ours.iter().enumerate() {
            let want = &ort[i * 10..(i + 1) * 10];
            let top = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = row.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                diff <= 1e-4 * top,
                "{name} image {i}: logits differ by {diff} (largest logit {top})\n{row:?}\n{want:?}"
            );
            worst = worst.max(diff / top);
        }
        eprintln!("{name}: largest difference {worst:.2e} of the largest logit");
    }
}

#[test]
fn depthwise_becomes_a_native_depthwise_layer() {
    use releq_common::model::Layer;
    use releq_host::nn::spec::Op;
    let tmp = tempfile::tempdir().unwrap();
    let c = load("bn-dw-add", tmp.path());
    let spec = c.net.spec();
    let dw: Vec<usize> =
        (0..spec.ops.len()).filter(|&i| matches!(spec.ops[i], Op::Conv { depthwise: true, .. })).collect();
    assert_eq!(dw.len(), 1, "{:?}", spec.ops);
    let Op::Conv { out_c, k, .. } = spec.ops[dw[0]] else { unreachable!() };
    assert_eq!(c.net.folded(dw[0]).unwrap().0.len(), out_c * k * k, "one filter per channel");
    let images = inputs();
    let ranges = calibrate(&c.net, &images, 1, 16).unwrap();
    let plan = QuantPlan::new(spec, &ranges, &[8], &[8]).unwrap();
    let model = export(spec, &plan, |op| c.net.folded(op).map_err(|e| e.to_string())).unwrap();
    let iplan = model.plan().unwrap();
    let kinds: Vec<&str> = iplan.model.layers.iter().map(Layer::kind).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "dwconv2d").count(), 1, "{kinds:?}");
    let layer = iplan.model.layers.iter().position(|l| matches!(l, Layer::DepthwiseConv2d(_))).unwrap();
    let shape = iplan.tensors[layer + 1].shape;
    assert_eq!(iplan.layer_stats(layer).macs, shape.h as u64 * shape.w as u64 * shape.c as u64 * (k * k) as u64);
}

#[test]
fn int8_ptq_keeps_the_float_accuracy() {
    let Some(dir) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let c = load("mnist-cnn", tmp.path());
    let test = data::load(&dir, Dataset::Mnist, Split::Test).unwrap();
    let all: Vec<usize> = (0..test.len()).collect();
    let float = releq_host::train::accuracy(&c.net, &test, &all, 256, None).unwrap();
    // torch measured 97.69 % on the same images (tests/fixtures/onnx/mnist-cnn.json).
    let torch: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("mnist-cnn.json")).unwrap()).unwrap();
    let torch = torch["torch_float_test_accuracy"].as_f64().unwrap();
    assert!((float - torch).abs() <= 2e-4, "float {float} vs torch {torch}");
    let split = checkpoint::load_split(&dir, Dataset::Mnist, 1, None).unwrap();
    let calib = checkpoint::subset(&split.images, &split.train[..20 * 64]);
    let ranges = calibrate(&c.net, &calib, 20, 64).unwrap();
    let plan = QuantPlan::new(c.net.spec(), &ranges, &[8], &[8]).unwrap();
    let model = export(c.net.spec(), &plan, |op| c.net.folded(op).map_err(|e| e.to_string())).unwrap();
    let int8 = releq_host::search::oracle::accuracy_of(&model, &test).unwrap();
    eprintln!("mnist-cnn: float {:.2} %, int8 PTQ {:.2} %", 100.0 * float, 100.0 * int8);
    assert!((int8 - float).abs() <= 0.005, "int8 {int8} vs float {float}");
}

#[test]
fn input_normalization_folds_into_the_first_layer() {
    let images = inputs();
    let idx: Vec<usize> = (0..images.len()).collect();
    let x = batch_tensor(&images, &idx, &Device::Cpu).unwrap();
    let (mean, std) = (0.1307f32, 0.3081f32);
    let normalized = ((&x - f64::from(mean)).unwrap() / f64::from(std)).unwrap();
    for name in ["mnist-cnn", "clip-avg-matmul"] {
        let tmp = tempfile::tempdir().unwrap();
        let plain = load(name, &tmp.path().join("plain")).net;
        let want = plain.forward(&normalized, false).unwrap().to_vec2::<f32>().unwrap();
        let bytes = std::fs::read(fixture(&format!("{name}.onnx"))).unwrap();
        let mut imp = import(&bytes, name).unwrap();
        imp.fold_input_normalization(mean, std).unwrap();
        let params = imp.params.iter().map(|p| (p.name.as_str(), p.dims.as_slice(), p.data.as_slice()));
        let dir = tmp.path().join("folded");
        let folded = checkpoint::load(&checkpoint::write(&dir, &imp.graph, params).unwrap(), None).unwrap().net;
        let got = folded.forward(&x, false).unwrap().to_vec2::<f32>().unwrap();
        for (g, w) in got.iter().zip(&want) {
            let top = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = g.iter().zip(w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(diff <= 1e-4 * top, "{name}: {diff} (largest logit {top})");
        }
    }
    // A padded first convolution cannot take it.
    let mut imp = import(&model("bn-dw-add").encode_to_vec(), "bn").unwrap();
    let e = imp.fold_input_normalization(mean, std).unwrap_err().to_string();
    assert!(e.contains("without padding"), "{e}");
}

fn model(name: &str) -> ModelProto {
    ModelProto::decode(&std::fs::read(fixture(&format!("{name}.onnx"))).unwrap()[..]).unwrap()
}

fn err_of(m: &ModelProto) -> String {
    import(&m.encode_to_vec(), "edited").expect_err("the edited model is refused").to_string()
}

#[test]
fn errors_name_the_node_or_tensor() {
    // Unchanged, it imports.
    assert!(import(&model("bn-dw-add").encode_to_vec(), "ok").is_ok());
    // An unsupported op names the node and lists the supported ones.
    let mut m = model("mnist-cnn");
    m.graph.as_mut().unwrap().node[1].op_type = "Sigmoid".into();
    let e = err_of(&m);
    assert!(e.contains("node 1") && e.contains("Sigmoid") && e.contains("supported: Conv"), "{e}");
    // A grouped convolution that is not depthwise.
    let mut m = model("bn-dw-add");
    let g = m.graph.as_mut().unwrap();
    let dw = g.node.iter_mut().find(|n| n.name == "/dw/Conv").unwrap();
    dw.attribute.iter_mut().find(|a| a.name == "group").unwrap().i = 2;
    let e = err_of(&m);
    assert!(e.contains("/dw/Conv") && e.contains("group 2"), "{e}");
    // Padding that differs between sides.
    let mut m = model("bn-dw-add");
    let c1 = &mut m.graph.as_mut().unwrap().node[0];
    c1.attribute.iter_mut().find(|a| a.name == "pads").unwrap().ints = vec![1, 1, 0, 0];
    let e = err_of(&m);
    assert!(e.contains("node 0") && e.contains("pads [1, 1, 0, 0]"), "{e}");
    // Clip to other bounds than (0, 6).
    let mut m = model("clip-avg-matmul");
    let g = m.graph.as_mut().unwrap();
    let clip = g.node.iter().position(|n| n.op_type == "Clip").unwrap();
    let hi = g.node[clip].input[2].clone();
    let konst = g.node.iter_mut().find(|n| n.output[0] == hi).unwrap();
    konst.attribute[0].t.as_mut().unwrap().raw_data = 4f32.to_le_bytes().to_vec();
    let e = err_of(&m);
    assert!(e.contains("Clip") && e.contains("[0, 4]"), "{e}");
    // BatchNormalization in training mode.
    let mut m = model("bn-dw-add");
    let bn = &mut m.graph.as_mut().unwrap().node[1];
    bn.attribute.push(AttributeProto { name: "training_mode".into(), i: 1, r#type: 2, ..Default::default() });
    let e = err_of(&m);
    assert!(e.contains("BatchNormalization") && e.contains("training_mode"), "{e}");
    // Weights stored outside the file name the tensor.
    let mut m = model("mnist-cnn");
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    w.data_location = 1;
    let name = w.name.clone();
    let e = err_of(&m);
    assert!(e.contains(&name) && e.contains("external"), "{e}");
    // Not a model at all.
    let e = import(b"\x08\x07\x12", "junk").err().unwrap().to_string();
    assert!(e.contains("not an ONNX model"), "{e}");
    // The input must be one NCHW image.
    let mut m = model("mnist-cnn");
    let input = m.graph.as_mut().unwrap().input[0].r#type.as_mut().unwrap().tensor_type.as_mut().unwrap();
    input.shape.as_mut().unwrap().dim.pop();
    let e = err_of(&m);
    assert!(e.contains("\"input\"") && e.contains("[N, C, H, W]"), "{e}");
}
