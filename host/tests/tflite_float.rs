//! `releq import model.tflite --float`: a quantized `.tflite`'s dequantized
//! weights as a float checkpoint. On the int8 fixtures of
//! tests/fixtures/tflite (made by scripts/make-tflite-fixtures.py, outputs by
//! TFLite Micro), the float checkpoint run on the dequantized inputs agrees
//! with TFLite Micro's int8 outputs up to quantization noise, the weights
//! are exactly `scale * code`, and what it cannot express is an error naming
//! the operator.

use candle_core::{Device, Tensor};
use releq_host::checkpoint;
use releq_host::import::tflite;
use releq_host::import::tflite_float::import_tflite_float;
use releq_host::npy;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tflite").join(name)
}

fn i8s(name: &str) -> (Vec<usize>, Vec<i8>) {
    let a = npy::read(&fixture(name)).unwrap();
    let npy::Data::I8(v) = a.data else { panic!("{name} is not int8") };
    (a.shape, v)
}

#[test]
fn dequantized_checkpoint_agrees_with_tflite_micro() {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("fixtures.json")).unwrap()).unwrap();
    for name in ["lenet", "fc_tensor"] {
        let bytes = std::fs::read(fixture(&format!("{name}.tflite"))).unwrap();
        let g = tflite::read(&bytes).unwrap();
        let imp = import_tflite_float(&bytes, name, "test", None).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let params = imp.params.iter().map(|p| (p.name.as_str(), p.dims.as_slice(), p.data.as_slice()));
        let net = checkpoint::load(&checkpoint::write(tmp.path(), &imp.graph, params).unwrap(), None).unwrap().net;
        let quant = |key: &str| {
            let t = &g.tensors[meta[name][key].as_u64().unwrap() as usize];
            let q = t.quant.as_ref().unwrap();
            (q.scale[0], q.zero_point[0] as f32)
        };
        let (shape, x) = i8s(&format!("{name}.input.npy"));
        let (si, zi) = quant("int8_input_tensor");
        let real: Vec<f32> = x.iter().map(|&q| si * (f32::from(q) - zi)).collect();
        let [n, h, w, c] = shape[..] else { panic!() };
        let xt = Tensor::from_vec(real, (n, h, w, c), &Device::Cpu).unwrap().permute((0, 3, 1, 2)).unwrap();
        let ours = net.forward(&xt, false).unwrap().to_vec2::<f32>().unwrap();
        let (_, y) = i8s(&format!("{name}.output.npy"));
        let (so, zo) = quant("int8_output_tensor");
        let (mut agree, mut worst, mut sum) = (0, 0f32, 0f32);
        for (i, row) in ours.iter().enumerate() {
            let want: Vec<f32> = y[i * 10..(i + 1) * 10].iter().map(|&q| so * (f32::from(q) - zo)).collect();
            agree += usize::from(releq_host::eval::argmax(row) == releq_host::eval::argmax(&want));
            worst = worst.max(row.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / so);
            sum += row.iter().zip(&want).map(|(a, b)| (a - b).abs()).sum::<f32>() / so;
        }
        let mean = sum / (n * 10) as f32;
        eprintln!("{name}: argmax agrees on {agree}/{n}, logits differ by {mean:.2} output steps on average, {worst:.2} at most");
        assert!(agree as f64 >= 0.95 * n as f64, "{name}: argmax agrees on {agree}/{n}");
        assert!(mean <= 2.0, "{name}: float and int8 logits differ by {mean} output steps on average");
    }
}

#[test]
fn what_cannot_be_expressed_names_the_operator() {
    let err = |name: &str| {
        let bytes = std::fs::read(fixture(&format!("{name}.tflite"))).unwrap();
        import_tflite_float(&bytes, name, "test", None).expect_err("refused").to_string()
    };
    let e = err("unsupported_tanh");
    assert!(e.contains("operator 1 (TANH)") && e.contains("supported: CONV_2D"), "{e}");
    // SAME padding at stride 2 on an even input pads one side more.
    let e = err("dwres");
    assert!(e.contains("operator 0 (CONV_2D)") && e.contains("(0, 1)"), "{e}");
    let e = import_tflite_float(b"not a flatbuffer", "x", "test", None).unwrap_err().to_string();
    assert!(e.contains("TFL3") || e.contains("flatbuffer"), "{e}");
}

/// A `.releq` model with a depthwise layer (the ONNX `bn-dw-add` fixture,
/// int8 PTQ), exported to `.tflite` by `tflexport` and imported back with
/// `--float`: the DEPTHWISE_CONV_2D becomes one depthwise op whose weights
/// are the layer's codes times one scale per channel in `(c, ky, kx)` order,
/// and the float checkpoint computes the int8 model's logits up to
/// quantization noise.
#[test]
fn depthwise_comes_back_as_a_depthwise_op() {
    use releq_common::model::Layer;
    use releq_common::pack;
    use releq_host::fastinfer::FastModel;
    use releq_host::nn::calib::{batch_tensor, calibrate};
    use releq_host::nn::qplan::QuantPlan;
    use releq_host::nn::spec::Op;
    let onnx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/onnx");
    let imp =
        releq_host::import::onnx::import_onnx(&std::fs::read(onnx.join("bn-dw-add.onnx")).unwrap(), "bn", "t", None)
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let params = imp.params.iter().map(|p| (p.name.as_str(), p.dims.as_slice(), p.data.as_slice()));
    let c = checkpoint::load(&checkpoint::write(&tmp.path().join("onnx"), &imp.graph, params).unwrap(), None).unwrap();
    let a = npy::read(&onnx.join("inputs.npy")).unwrap();
    let npy::Data::U8(pixels) = a.data else { panic!("inputs.npy is not uint8") };
    let images = releq_host::data::Images { count: 16, rows: 28, cols: 28, pixels, labels: vec![0; 16] };
    let ranges = calibrate(&c.net, &images, 1, 16).unwrap();
    let plan = QuantPlan::new(c.net.spec(), &ranges, &[8], &[8]).unwrap();
    let model =
        releq_host::quantize::export(c.net.spec(), &plan, |op| c.net.folded(op).map_err(|e| e.to_string())).unwrap();
    let iplan = model.plan().unwrap();
    let bytes = releq_host::tflexport::export_tflite(&iplan).unwrap().bytes;

    let back = import_tflite_float(&bytes, "bn", "test", None).unwrap();
    let params = back.params.iter().map(|p| (p.name.as_str(), p.dims.as_slice(), p.data.as_slice()));
    let f =
        checkpoint::load(&checkpoint::write(&tmp.path().join("float"), &back.graph, params).unwrap(), None).unwrap();
    let spec = f.net.spec();
    let dw: Vec<usize> =
        (0..spec.ops.len()).filter(|&i| matches!(spec.ops[i], Op::Conv { depthwise: true, .. })).collect();
    assert_eq!(dw.len(), 1, "{:?}", spec.ops);
    let (w, _) = f.net.folded(dw[0]).unwrap();
    let layer = iplan.model.layers.iter().find_map(|l| if let Layer::DepthwiseConv2d(l) = l { Some(*l) } else { None });
    let l = layer.expect("a dwconv2d layer");
    let k = l.kh as usize * l.kw as usize;
    assert_eq!(w.len(), l.out_c as usize * k);
    let rb = pack::row_bytes(k, l.w.bits);
    for ch in 0..l.out_c as usize {
        let codes: Vec<f32> = (0..k).map(|j| f32::from(pack::get(l.w.row(ch, rb), l.w.bits, j))).collect();
        let row = &w[ch * k..(ch + 1) * k];
        let (j0, c0) = codes.iter().enumerate().find(|(_, c)| **c != 0.0).map(|(j, c)| (j, *c)).unwrap();
        let s = row[j0] / c0;
        for (j, (&v, &q)) in row.iter().zip(&codes).enumerate() {
            assert!((v - s * q).abs() <= 1e-6 * s.abs() * 127.0, "channel {ch} tap {j}: {v} is not {s} * {q}");
        }
    }
    // Float logits of the re-imported checkpoint against the int8 model's.
    let idx: Vec<usize> = (0..images.len()).collect();
    let ours = f.net.forward(&batch_tensor(&images, &idx, &Device::Cpu).unwrap(), false).unwrap();
    let ours = ours.to_vec2::<f32>().unwrap();
    let mut fast = FastModel::new(&iplan);
    let oq = iplan.tensors.last().unwrap().quant;
    let mut sum = 0f32;
    for (i, row) in ours.iter().enumerate() {
        let y = fast.run(&releq_host::eval::quantize_image(images.image(i), &iplan.input().quant)).unwrap();
        let want: Vec<f32> = y.iter().map(|&q| oq.scale * (f32::from(q) - oq.zero_point as f32)).collect();
        sum += row.iter().zip(&want).map(|(a, b)| (a - b).abs()).sum::<f32>() / oq.scale;
    }
    let mean = sum / (16 * 10) as f32;
    eprintln!(
        "bn-dw-add via .tflite --float: logits differ from the int8 model's by {mean:.2} output steps on average"
    );
    assert!(mean <= 2.0, "{mean} output steps");
}
