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
