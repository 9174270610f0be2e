//! Shared bodies of the releq-common fuzz targets.
//!
//! The targets in `fuzz_targets/` are thin wrappers around [`model_blob`],
//! [`model_payload`], [`frames`] and [`tflite_import`], so the same checks can be replayed on a
//! file without libFuzzer (see `examples/replay.rs`).
//!
//! What is checked (besides "never panics"):
//! - a blob that validates re-encodes to a blob that validates to the same
//!   model and the same arena size;
//! - the arena plan keeps every tensor inside `arena_bytes`, 4-byte aligned;
//! - running a validated model (within the work caps) never panics, returns
//!   `plan.output().shape.len()` codes, every code within the output tensor's
//!   bit range, and the same codes as a run on a plan where every tensor has
//!   its own buffer (a differential check of the arena planner);
//! - the runtime's own error paths (short arena, wrong input length,
//!   out-of-range code) return errors instead of panicking;
//! - a `.tflite` file either fails to import with an error or imports to a
//!   model that encodes, validates again from its bytes, and then passes all
//!   the checks above (the importer's reader is bounded by the flatbuffers
//!   verifier and by the file's size);
//! - every protocol frame that decodes as a `Request` or `Response`
//!   re-encodes and decodes to the same value.

use releq_common::model::{FormatError, Layer, CRC32, FORMAT_VERSION, HEADER_LEN, MAGIC};
use releq_common::protocol::{decode_frame, encode_frame, FrameReader, Push, Request, Response, MAX_FRAME};
use releq_common::quant::{act_max, act_min};
use releq_common::runtime::RunError;
use releq_common::validate::{ModelError, Plan, ARENA_ALIGN};

/// Skip running models whose arena exceeds this (bytes).
pub const MAX_ARENA: usize = 4 << 20;
/// Skip running models whose work exceeds this: the sum of `layer_stats(i).macs`,
/// plus, for pooling layers (which report 0 MACs), output values times window
/// size, and for adds their output size.
pub const MAX_WORK: u64 = 5_000_000;

/// Build a `.releq` blob: the 16-byte header (magic, version, reserved,
/// length, CRC) followed by `payload`.
pub fn blob_from_payload(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&CRC32.checksum(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Target `model_decode`: `data` is a whole `.releq` file, optionally
/// followed by input codes. A file with trailing bytes is first checked to be
/// rejected as a whole, then its declared blob is validated and the trailing
/// bytes become the model input (zeros when absent).
pub fn model_blob(data: &[u8]) {
    match Plan::from_bytes(data) {
        Ok(plan) => exercise(&plan, data, &[]),
        Err(e) => {
            let _ = format!("{e} {e:?}");
            if let ModelError::Format(FormatError::TrailingBytes { declared, .. }) = e {
                let end = HEADER_LEN + declared as usize;
                let (blob, input) = data.split_at(end);
                if let Ok(plan) = Plan::from_bytes(blob) {
                    exercise(&plan, blob, input);
                }
            }
        }
    }
}

/// Target `model_payload`: `data` is a postcard payload, optionally followed
/// by input codes; a correct header is prepended so the CRC never rejects it.
pub fn model_payload(data: &[u8]) {
    let blob = blob_from_payload(data);
    let result = Plan::from_bytes(&blob);
    match result {
        Ok(plan) => exercise(&plan, &blob, &[]),
        Err(e) => {
            let _ = format!("{e} {e:?}");
            if let ModelError::Format(FormatError::PayloadTrailing { extra }) = e {
                let (payload, input) = data.split_at(data.len() - extra as usize);
                let blob = blob_from_payload(payload);
                match Plan::from_bytes(&blob) {
                    Ok(plan) => exercise(&plan, &blob, input),
                    // The prefix decoded once already; only validation may fail now.
                    Err(ModelError::Format(e)) => {
                        panic!("payload prefix that decoded with {extra} trailing bytes fails to decode alone: {e:?}")
                    }
                    Err(_) => {}
                };
            }
        }
    }
}

/// Work of one inference, as bounded by [`MAX_WORK`].
pub fn work(plan: &Plan<'_>) -> u64 {
    let mut total = 0u64;
    for (i, layer) in plan.model.layers.iter().enumerate() {
        let out = plan.tensors[i + 1].shape.len() as u64;
        total = total.saturating_add(match layer {
            Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => out.saturating_mul(p.kh as u64 * p.kw as u64),
            Layer::Add(_) => out,
            _ => plan.layer_stats(i).macs,
        });
    }
    total
}

/// True when running `plan` would hit one of the kernel panics already found
/// (see docs/fuzzing.md): a clamp disjoint from the output's bit range, or a
/// requantized accumulator plus the output zero point overflowing `i32`.
/// With the `skip-known-panics` feature such plans are not run, so a campaign
/// can look past those bugs until they are fixed.
pub fn known_panic(plan: &Plan<'_>) -> bool {
    use releq_common::model::{Clamp, TensorQuant, Weights};
    fn disjoint(c: &Clamp, q: &TensorQuant) -> bool {
        (c.min as i32).max(act_min(q.bits)) > (c.max as i32).min(act_max(q.bits))
    }
    fn overflows(w: &Weights<'_>, k: usize, zp: i32) -> bool {
        let channels = w.shift.len();
        let max_bias = (0..channels).map(|c| (w.bias(c) as i64).abs()).max().unwrap_or(0);
        let acc = k as i64 * 255 * (1i64 << (w.bits - 1)) + max_bias;
        (0..channels).any(|c| {
            let rq = w.requant(c);
            let shifted = (acc as i128) << (rq.shift.max(0) as u32);
            let shifted = shifted.min(1i128 << 31);
            let y = ((shifted * rq.multiplier as i128) >> 31 >> ((-(rq.shift as i32)).max(0) as u32)) + 1;
            y + zp.unsigned_abs() as i128 > i32::MAX as i128
        })
    }
    plan.model.layers.iter().any(|layer| {
        let input = plan.tensors[layer.input() as usize].shape;
        match layer {
            Layer::Conv2d(l) => {
                disjoint(&l.clamp, &l.out)
                    || overflows(&l.w, l.kh as usize * l.kw as usize * input.c as usize, l.out.zero_point)
            }
            Layer::DepthwiseConv2d(l) => {
                disjoint(&l.clamp, &l.out) || overflows(&l.w, l.kh as usize * l.kw as usize, l.out.zero_point)
            }
            Layer::Dense(l) => disjoint(&l.clamp, &l.out) || overflows(&l.w, input.len(), l.out.zero_point),
            Layer::Add(a) => disjoint(&a.clamp, &a.out),
            _ => false,
        }
    })
}

/// Checks on a validated plan; runs it when within the caps.
fn exercise(plan: &Plan<'_>, blob: &[u8], input_bytes: &[u8]) {
    let n = plan.model.layers.len();
    assert_eq!(plan.tensors.len(), n + 1, "one tensor per layer plus the input");

    // Re-encoding is stable.
    let again = plan.model.encode();
    let replan = Plan::from_bytes(&again).unwrap_or_else(|e| panic!("re-encoded model fails validation: {e:?}"));
    assert_eq!(replan.model, plan.model, "re-encoded model decodes differently");
    assert_eq!(replan.arena_bytes, plan.arena_bytes);
    if again.len() != blob.len() {
        // Non-canonical varints in the input are fine, but the re-encoding
        // itself must be a fixed point.
        assert_eq!(replan.model.encode(), again, "encoding is not a fixed point");
    }

    // Arena plan: aligned and in bounds.
    assert_eq!(plan.arena_bytes % ARENA_ALIGN, 0);
    for (t, info) in plan.tensors.iter().enumerate() {
        assert_eq!(info.offset as usize % ARENA_ALIGN, 0, "tensor {t} misaligned");
        assert!(
            info.range().end <= plan.arena_bytes,
            "tensor {t} {:?} outside arena {}",
            info.range(),
            plan.arena_bytes
        );
    }

    if plan.arena_bytes > MAX_ARENA || work(plan) > MAX_WORK {
        return;
    }
    #[cfg(feature = "skip-known-panics")]
    if known_panic(plan) {
        return;
    }

    let t_in = plan.input();
    let bits = t_in.quant.bits;
    let (lo, hi) = (act_min(bits), act_max(bits));
    let len = t_in.shape.len();
    let input: Vec<i8> =
        (0..len).map(|i| input_bytes.get(i).map_or(0, |&b| (b as i8 as i32).clamp(lo, hi) as i8)).collect();

    // Error paths first (they must not panic either).
    if plan.arena_bytes > 0 {
        let mut small = vec![0i8; plan.arena_bytes - 1];
        assert!(matches!(plan.run(&mut small, &input), Err(RunError::ArenaTooSmall { .. })));
    }
    let mut arena = vec![0x55i8; plan.arena_bytes];
    let mut long = input.clone();
    long.push(0);
    assert!(matches!(plan.run(&mut arena, &long), Err(RunError::InputLength { .. })));
    if hi < i8::MAX as i32 {
        let mut bad = input.clone();
        bad[len - 1] = (hi + 1) as i8;
        assert!(matches!(plan.run(&mut arena, &bad), Err(RunError::InputRange { .. })));
    }

    // The real run, on an arena full of garbage.
    let out = plan.run(&mut arena, &input).expect("a validated model runs on an in-range input").to_vec();
    let t_out = plan.output();
    assert_eq!(out.len(), t_out.shape.len());
    let (olo, ohi) = (act_min(t_out.quant.bits), act_max(t_out.quant.bits));
    for (i, &v) in out.iter().enumerate() {
        assert!((olo..=ohi).contains(&(v as i32)), "output {i} = {v} outside the {}-bit range", t_out.quant.bits);
    }

    // Differential: the same model with one private buffer per tensor.
    let mut flat = plan.clone();
    let mut cursor = 0usize;
    for t in 0..=n {
        let offset = match t.checked_sub(1).map(|i| &plan.model.layers[i]) {
            Some(Layer::Reshape(r)) => flat.tensors[r.input as usize].offset as usize,
            _ => {
                let o = cursor;
                cursor = (cursor + plan.tensors[t].shape.len()).next_multiple_of(ARENA_ALIGN);
                o
            }
        };
        flat.tensors[t].offset = offset as u32;
    }
    if cursor <= MAX_ARENA {
        // The kernels' scratch region follows the tensors, as in the real plan.
        flat.scratch_offset = cursor;
        flat.arena_bytes = cursor + (plan.arena_bytes - plan.scratch_offset);
        let mut arena2 = vec![-0x33i8; flat.arena_bytes];
        let out2 = flat.run(&mut arena2, &input).expect("flat plan runs");
        assert_eq!(out, out2, "arena plan changes the result (overlapping live tensors?)");
    }
}

/// Decode one frame both ways and check that what decodes round-trips.
fn check_frame(frame: &[u8]) -> Result<(), releq_common::protocol::FrameError> {
    let mut a = frame.to_vec();
    let req = decode_frame::<Request<'_>>(&mut a);
    if let Ok(req) = &req {
        let mut buf = vec![0u8; 4 * MAX_FRAME];
        let enc = encode_frame(req, &mut buf).expect("re-encoding a decoded request fits").to_vec();
        let mut body = enc[..enc.len() - 1].to_vec();
        let back: Request<'_> = decode_frame(&mut body).expect("re-encoded request decodes");
        assert_eq!(&back, req);
    }
    let mut b = frame.to_vec();
    match decode_frame::<Response<'_>>(&mut b) {
        Ok(resp) => {
            let mut buf = vec![0u8; 4 * MAX_FRAME];
            let enc = encode_frame(&resp, &mut buf).expect("re-encoding a decoded response fits").to_vec();
            let mut body = enc[..enc.len() - 1].to_vec();
            let back: Response<'_> = decode_frame(&mut body).expect("re-encoded response decodes");
            assert_eq!(back, resp);
            let _ = format!("{resp:?}");
            if let Response::Error(e) = resp {
                let _ = format!("{e}");
            }
        }
        Err(e) => {
            let _ = format!("{e}");
        }
    }
    req.map(|_| ())
}

/// Target `frame_decode`: feed `data` byte by byte into a
/// `FrameReader::<MAX_FRAME>`; for every `Push::Frame(n)` decode the frame
/// as a `Request` (in the reader, with `take`) and, separately, from a copy
/// of the raw bytes, as a `Request` and as a `Response`.
pub fn frames(data: &[u8]) {
    let mut reader = FrameReader::<MAX_FRAME>::new();
    let mut raw: Vec<u8> = Vec::new(); // the frame being received, as sent
    let mut pending = 0usize; // non-zero bytes since the last terminator
    for &byte in data {
        match reader.push(byte) {
            Push::Frame(n) => {
                assert!(n > 0 && n <= MAX_FRAME && n == pending, "frame of {n} bytes after {pending} bytes");
                assert_eq!(raw.len(), n);
                let from_copy = check_frame(&raw);
                let in_place = reader.take::<Request<'_>>(n).map(|_| ());
                assert_eq!(in_place, from_copy, "FrameReader::take disagrees with decode_frame");
                raw.clear();
                pending = 0;
            }
            Push::Overflow => {
                assert!(pending > MAX_FRAME, "overflow after only {pending} bytes");
                raw.clear();
                pending = 0;
            }
            Push::Pending => {
                if byte == 0 {
                    assert_eq!(pending, 0, "terminator after {pending} bytes reported as pending");
                } else {
                    pending += 1;
                    if raw.len() < MAX_FRAME {
                        raw.push(byte);
                    }
                }
            }
        }
    }
}

/// Target `tflite_import`: `data` is a `.tflite` file for
/// `releq_host::import::import_tflite`.
pub fn tflite_import(data: &[u8]) {
    match releq_host::import::import_tflite(data, "fuzz") {
        Ok(imported) => {
            let blob = imported.model.encode().unwrap_or_else(|e| panic!("imported model does not encode: {e}"));
            let plan = Plan::from_bytes(&blob).unwrap_or_else(|e| panic!("imported model fails validation: {e:?}"));
            assert_eq!(imported.summary.layers, plan.model.layers.len());
            let _ = format!("{:?}", imported.summary);
            exercise(&plan, &blob, &[]);
        }
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
}
