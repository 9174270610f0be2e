//! Temporary benchmark (to be removed).
use candle_core::{Device, Tensor, Var};
use std::time::Instant;

fn t<F: FnMut()>(name: &str, n: usize, mut f: F) {
    f();
    let s = Instant::now();
    for _ in 0..n {
        f();
    }
    eprintln!("{name}: {:.3} ms", s.elapsed().as_secs_f64() * 1e3 / n as f64);
}

#[test]
#[ignore]
fn bench() {
    let d = Device::Cpu;
    let x = Tensor::randn(0f32, 1., (64, 1, 28, 28), &d).unwrap();
    let w1 = Var::randn(0f32, 1., (6, 1, 5, 5), &d).unwrap();
    let x2 = Tensor::randn(0f32, 1., (64, 6, 12, 12), &d).unwrap();
    let w2 = Var::randn(0f32, 1., (16, 6, 5, 5), &d).unwrap();
    let g1 = Tensor::randn(0f32, 1., (64, 6, 24, 24), &d).unwrap();
    let g2 = Tensor::randn(0f32, 1., (64, 16, 8, 8), &d).unwrap();
    t("conv1 fwd", 20, || {
        x.conv2d(&w1, 0, 1, 1, 1).unwrap();
    });
    t("conv2 fwd", 20, || {
        x2.conv2d(&w2, 0, 1, 1, 1).unwrap();
    });
    t("conv1 wgrad", 20, || {
        x.transpose(0, 1).unwrap().conv2d(&g1.transpose(0, 1).unwrap(), 0, 1, 1, 1).unwrap();
    });
    t("conv2 wgrad", 20, || {
        x2.transpose(0, 1).unwrap().conv2d(&g2.transpose(0, 1).unwrap(), 0, 1, 1, 1).unwrap();
    });
    t("conv1 xgrad", 20, || {
        g1.conv_transpose2d(&w1, 0, 0, 1, 1).unwrap();
    });
    t("conv2 xgrad", 20, || {
        g2.conv_transpose2d(&w2, 0, 0, 1, 1).unwrap();
    });
    t("maxpool", 20, || {
        g1.max_pool2d_with_stride(2, 2).unwrap();
    });
    t("conv1 full", 10, || {
        let y = x.conv2d(w1.as_tensor(), 0, 1, 1, 1).unwrap().relu().unwrap().max_pool2d_with_stride(2, 2).unwrap();
        y.sum_all().unwrap().backward().unwrap();
    });
    let xf = Tensor::randn(0f32, 1., (64, 16, 28, 28), &d).unwrap();
    let wf = Var::randn(0f32, 1., (16, 16, 3, 3), &d).unwrap();
    let gf = Tensor::randn(0f32, 1., (64, 16, 28, 28), &d).unwrap();
    t("fc conv2 fwd", 5, || {
        xf.conv2d(&wf, 1, 1, 1, 1).unwrap();
    });
    t("fc conv2 wgrad", 5, || {
        xf.transpose(0, 1).unwrap().conv2d(&gf.transpose(0, 1).unwrap(), 1, 1, 1, 1).unwrap();
    });
    t("fc conv2 xgrad", 5, || {
        gf.conv_transpose2d(&wf, 1, 0, 1, 1).unwrap();
    });
}

#[test]
#[ignore]
fn bench_ours() {
    use releq_host::nn::net::conv2d;
    let d = Device::Cpu;
    let x = Var::randn(0f32, 1., (64, 1, 28, 28), &d).unwrap();
    let w1 = Var::randn(0f32, 1., (6, 1, 5, 5), &d).unwrap();
    let x2 = Var::randn(0f32, 1., (64, 6, 12, 12), &d).unwrap();
    let w2 = Var::randn(0f32, 1., (16, 6, 5, 5), &d).unwrap();
    t("ours conv1 fwd", 20, || {
        conv2d(&x, &w1, 0, 1).unwrap();
    });
    t("ours conv2 fwd", 20, || {
        conv2d(&x2, &w2, 0, 1).unwrap();
    });
    t("ours conv1 fwd+bwd", 20, || {
        conv2d(&x, &w1, 0, 1).unwrap().sum_all().unwrap().backward().unwrap();
    });
    t("ours conv2 fwd+bwd", 20, || {
        conv2d(&x2, &w2, 0, 1).unwrap().sum_all().unwrap().backward().unwrap();
    });
    let xf = Var::randn(0f32, 1., (64, 16, 28, 28), &d).unwrap();
    let wf = Var::randn(0f32, 1., (16, 16, 3, 3), &d).unwrap();
    t("ours fc conv2 fwd", 5, || {
        conv2d(&xf, &wf, 1, 1).unwrap();
    });
    t("ours fc conv2 fwd+bwd", 5, || {
        conv2d(&xf, &wf, 1, 1).unwrap().sum_all().unwrap().backward().unwrap();
    });
}

#[test]
#[ignore]
fn bench_parts() {
    let d = Device::Cpu;
    let a = Tensor::randn(0f32, 1., (64, 25, 576), &d).unwrap();
    let w = Tensor::randn(0f32, 1., (6, 25), &d).unwrap();
    let wb = w.reshape((1, 6, 25)).unwrap().broadcast_as((64, 6, 25)).unwrap();
    let wc = wb.contiguous().unwrap();
    t("bmm bcast", 20, || {
        wb.matmul(&a).unwrap();
    });
    t("bmm contig", 20, || {
        wc.matmul(&a).unwrap();
    });
    let at = a.transpose(1, 2).unwrap().contiguous().unwrap().reshape((64 * 576, 25)).unwrap();
    t("one mm", 20, || {
        at.matmul(&w.t().unwrap()).unwrap();
    });
    let x = Tensor::randn(0f32, 1., (64, 16, 28, 28), &d).unwrap();
    t("copy 800k", 20, || {
        x.transpose(1, 2).unwrap().contiguous().unwrap();
    });
    t("relu 800k", 20, || {
        x.relu().unwrap();
    });
    t("add 800k", 20, || {
        (&x + &x).unwrap();
    });
}

#[test]
#[ignore]
fn bench_bwd() {
    let d = Device::Cpu;
    let cols = Tensor::randn(0f32, 1., (64, 144, 784), &d).unwrap();
    let g = Tensor::randn(0f32, 1., (64, 16, 784), &d).unwrap();
    let w = Tensor::randn(0f32, 1., (64, 16, 144), &d).unwrap();
    t("fwd bmm", 5, || {
        w.matmul(&cols).unwrap();
    });
    t("grad w: g x cols^T", 5, || {
        g.matmul(&cols.t().unwrap()).unwrap();
    });
    t("grad cols: w^T x g", 5, || {
        w.t().unwrap().matmul(&g).unwrap();
    });
    let ct = cols.t().unwrap().contiguous().unwrap();
    t("grad w contiguous", 5, || {
        g.matmul(&ct.t().unwrap().contiguous().unwrap().t().unwrap()).unwrap();
    });
    t("transpose copy", 5, || {
        cols.t().unwrap().contiguous().unwrap();
    });
    t("sum over batch", 5, || {
        w.sum(0).unwrap();
    });
}
