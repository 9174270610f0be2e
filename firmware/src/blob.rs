//! The model blob: read once at boot from the board's blob address (where
//! QEMU's loader device, or a probe, put it), decoded and validated with
//! common's [`Plan::from_bytes`].
//!
//! The region is `BLOB_MAX` bytes; the 16-byte header's payload length says
//! how much of it is the blob. No `RELQ` magic means no model.

use crate::board;
use releq_common::model::{FormatError, HEADER_LEN, MAGIC};
use releq_common::protocol::ModelStatus;
use releq_common::{Layer, ModelError, Plan};

/// The model as found at boot.
pub struct Blob {
    /// What `Info` reports.
    pub status: ModelStatus,
    /// The validated model, if any.
    pub plan: Option<Plan<'static>>,
    /// Arena bytes the model really needs, computed without 32-bit wrapping
    /// (common's planner uses `usize`, which is 32 bits here).
    pub arena_needed: u64,
}

/// The whole blob region.
fn region() -> &'static [u8] {
    // SAFETY: the board file says this RAM is mapped, `BLOB_MAX` bytes long,
    // and reserved for the blob (nothing in the linker script uses it); the
    // firmware never writes it, so a shared `'static` borrow is sound.
    unsafe { core::slice::from_raw_parts(board::BLOB_ADDR as *const u8, board::BLOB_MAX) }
}

/// Find, decode and validate the blob.
pub fn load() -> Blob {
    let invalid = |e: ModelError| Blob { status: ModelStatus::Invalid(e), plan: None, arena_needed: 0 };
    let region = region();
    if region[..4] != MAGIC {
        return Blob { status: ModelStatus::Absent, plan: None, arena_needed: 0 };
    }
    let declared = u32::from_le_bytes([region[8], region[9], region[10], region[11]]);
    let crc = u32::from_le_bytes([region[12], region[13], region[14], region[15]]);
    let available = board::BLOB_MAX - HEADER_LEN;
    if declared as u64 > available as u64 {
        return invalid(ModelError::Format(FormatError::Truncated { declared, available: available as u32 }));
    }
    let bytes = &region[..HEADER_LEN + declared as usize];
    let plan = match Plan::from_bytes(bytes) {
        Ok(p) => p,
        Err(e) => return invalid(e),
    };
    if let Err(e) = check_weight_lengths(&plan) {
        return invalid(e);
    }
    let arena_needed = true_arena_needed(&plan);
    let status = ModelStatus::Loaded {
        layers: plan.model.layers.len() as u16,
        blob_bytes: bytes.len() as u32,
        crc,
        arena_bytes: arena_needed.min(u32::MAX as u64) as u32,
    };
    Blob { status, plan: Some(plan), arena_needed }
}

/// Elements of a shape, in 64 bits.
fn elems(s: releq_common::Shape) -> u64 {
    s.h as u64 * s.w as u64 * s.c as u64
}

/// The arena the plan needs, or more if some tensor is larger than 32-bit
/// arithmetic could describe (then the model cannot run here anyway).
fn true_arena_needed(plan: &Plan<'_>) -> u64 {
    let largest = plan.tensors.iter().map(|t| elems(t.shape)).max().unwrap_or(0);
    if largest > board::ARENA_BYTES as u64 {
        largest.max(plan.arena_bytes as u64)
    } else {
        plan.arena_bytes as u64
    }
}

/// Re-check the packed weight lengths in 64 bits: on a 32-bit target the
/// validator's `out_c * row_bytes(k)` can wrap, and a crafted blob whose
/// array matches the wrapped length would make a kernel index out of bounds.
fn check_weight_lengths(plan: &Plan<'_>) -> Result<(), ModelError> {
    for (i, layer) in plan.model.layers.iter().enumerate() {
        let input = elems(plan.tensors[layer.input() as usize].shape);
        let in_c = plan.tensors[layer.input() as usize].shape.c as u64;
        let (rows, k, w) = match layer {
            Layer::Conv2d(l) => (l.out_c as u64, l.kh as u64 * l.kw as u64 * in_c, &l.w),
            Layer::DepthwiseConv2d(l) => (l.out_c as u64, l.kh as u64 * l.kw as u64, &l.w),
            Layer::Dense(l) => (l.out_features as u64, input, &l.w),
            _ => continue,
        };
        let expected = rows * (k * w.bits as u64).div_ceil(8);
        if expected != w.packed.len() as u64 {
            return Err(ModelError::Layer {
                layer: i as u16,
                field: releq_common::validate::Field::Weights,
                problem: releq_common::validate::Problem::Length {
                    expected: expected.min(u32::MAX as u64) as u32,
                    actual: w.packed.len() as u32,
                },
            });
        }
    }
    Ok(())
}
