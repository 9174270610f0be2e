//! The im2col gather without a bounds check per element.
//!
//! A convolution's patch is read through a table of offsets (relative to the
//! patch's first input byte) built once per layer call. [`Gather::new`]
//! records the largest offset; [`Gather::words`] checks once per patch that
//! the patch slice is longer than that, then reads every entry without
//! further checks. That check is what makes the unchecked reads sound:
//!
//! # Safety argument
//! `words` reads `patch[offs[i]]` for `i < offs.len()` (iterating
//! `offs.chunks_exact(4)`, so `i` is in bounds), and every `offs[i] <= max`
//! (`max` is computed from `offs` in `new`, and `offs` is borrowed immutably
//! for the `Gather`'s lifetime, so it cannot change). `words` returns early
//! unless `max < patch.len()`. Hence every read is in bounds.
#![allow(unsafe_code)]

/// A gather table and its largest offset.
pub struct Gather<'t> {
    offs: &'t [u32],
    max: u32,
}

impl<'t> Gather<'t> {
    /// Wrap a table of offsets.
    pub fn new(offs: &'t [u32]) -> Self {
        Self { offs, max: offs.iter().copied().max().unwrap_or(0) }
    }

    /// Call `f(t, [x0, x1, x2, x3])` for every whole group of four entries
    /// `t` (entries `4t..4t + 4`); returns false, calling nothing, when the
    /// patch is too short for the table.
    #[inline(always)]
    pub fn words(&self, patch: &[i8], mut f: impl FnMut(usize, [i8; 4])) -> bool {
        if self.max as usize >= patch.len() {
            return false;
        }
        for (t, o) in self.offs.chunks_exact(4).enumerate() {
            // SAFETY: every entry is <= self.max < patch.len() (module doc).
            let x = unsafe {
                [
                    *patch.get_unchecked(o[0] as usize),
                    *patch.get_unchecked(o[1] as usize),
                    *patch.get_unchecked(o[2] as usize),
                    *patch.get_unchecked(o[3] as usize),
                ]
            };
            f(t, x);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_and_refuses_short_patches() {
        let offs = [3, 0, 1, 2, 5, 5, 4, 0, 9];
        let g = Gather::new(&offs);
        let patch: Vec<i8> = (0..10).map(|v| v * 10).collect();
        let mut got = Vec::new();
        assert!(g.words(&patch, |t, x| got.push((t, x))));
        assert_eq!(got, vec![(0, [30, 0, 10, 20]), (1, [50, 50, 40, 0])]);
        assert!(!g.words(&patch[..9], |_, _| panic!("must not be called")));
    }
}
