//! Embedding a model in your own firmware: no HAL, no allocator.
//!
//! A user's firmware links `releq-common` (with `default-features = false`)
//! and runs a `.releq` file compiled into its flash:
//!
//! ```ignore
//! // build.rs: validate the model on the host and generate its constants
//! // (ARENA_BYTES, INPUT_LEN, ...) with the same code the device runs.
//! fn main() {
//!     if let Err(e) = releq_common::embed::build::emit("model/lenet5.releq") {
//!         panic!("{e}");
//!     }
//! }
//!
//! // src/main.rs
//! include!(concat!(env!("OUT_DIR"), "/releq_model.rs")); // pub const ARENA_BYTES, ...
//! static MODEL: &[u8] = releq_common::include_model!("../model/lenet5.releq");
//!
//! let plan = releq_common::Plan::from_bytes(MODEL)?;         // validated once
//! let mut arena = releq_common::embed::Arena::<ARENA_BYTES>::new();
//! let output = plan.run(arena.as_mut_slice(), &input)?;      // every inference
//! ```
//!
//! - [`include_model!`] places the blob in flash inside [`Aligned`]
//!   (`#[repr(C, align(4))]`). The kernels do not need it: every
//!   multi-byte value of the format is read byte-wise or with loads that
//!   take any address (Cortex-M4/M7 `LDR`; the portable kernels assemble
//!   bytes), and the postcard payload places arrays at arbitrary offsets
//!   anyway. It is there so the blob starts on a word as the firmware's blob
//!   region does, and a header word can be read with one load.
//! - [`Arena`] is the caller-provided activation buffer, word aligned: the
//!   plan places every tensor at a multiple of
//!   [`ARENA_ALIGN`](crate::validate::ARENA_ALIGN) from the arena's start,
//!   and the word-wise kernels (pooling, depthwise, the im2col scratch) read
//!   whole words there. Put it on the stack, in a `static`, or in any
//!   section; nothing else is allocated.
//! - `ARENA_BYTES` is [`Plan::arena_bytes`](crate::Plan): tensors as the
//!   greedy planner places them plus the fast kernels' scratch, computed on
//!   the host by [`build::emit`] with this crate's own validation, so it is
//!   the figure the device computes (no trial and error).
//! - [`codes`] views embedded bytes (inputs) as the `i8` codes the runtime
//!   takes, without `unsafe`.

use crate::model::{parse_header, FormatError};

/// Alignment of [`Aligned`] and [`Arena`], bytes.
pub const ALIGN: usize = 4;

/// A value (a byte array, possibly unsized) aligned to [`ALIGN`] bytes.
///
/// `&Aligned([u8; N])` coerces to `&Aligned<[u8]>`, which is how
/// [`include_model!`] stores a blob of any length.
#[repr(C, align(4))]
#[derive(Debug)]
pub struct Aligned<T: ?Sized>(pub T);

/// Embed a `.releq` file in flash, word aligned; evaluates to `&'static [u8]`.
///
/// The path is relative to the file that invokes it, as for
/// [`include_bytes!`].
#[macro_export]
macro_rules! include_model {
    ($path:expr) => {{
        static BLOB: &$crate::embed::Aligned<[u8]> = &$crate::embed::Aligned(*include_bytes!($path));
        &BLOB.0
    }};
}

/// An activation arena of `N` bytes, aligned to [`ALIGN`].
///
/// Size it with the generated `ARENA_BYTES`. It is `[i8; N]` inside, so a
/// `static` of it goes to `.bss` (zeroed at boot) and costs no flash.
#[repr(C, align(4))]
#[derive(Debug, Clone)]
pub struct Arena<const N: usize>(pub [i8; N]);

impl<const N: usize> Arena<N> {
    /// A zeroed arena.
    pub const fn new() -> Self {
        Self([0; N])
    }

    /// The arena as the slice [`Plan::run`](crate::Plan::run) takes.
    pub fn as_mut_slice(&mut self) -> &mut [i8] {
        &mut self.0
    }
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// View bytes (inputs embedded with `include_bytes!`) as `i8` codes.
pub fn codes(bytes: &[u8]) -> &[i8] {
    bytemuck::cast_slice(bytes)
}

/// The payload CRC-32 of a blob, after checking its header and CRC: what the
/// generated `MODEL_CRC` holds, so a firmware can check at boot that the
/// constants it was built with belong to the blob it embeds.
pub fn blob_crc(blob: &[u8]) -> Result<u32, FormatError> {
    parse_header(blob).map(|(h, _)| h.crc)
}

/// Build-script side: the model's constants, computed on the host.
#[cfg(feature = "std")]
pub mod build {
    use crate::model::TensorQuant;
    use crate::validate::{ModelError, Plan};
    use std::fmt::Write as _;
    use std::path::{Path, PathBuf};
    use std::string::{String, ToString};

    /// Name of the file [`emit`] writes into `OUT_DIR`.
    pub const FILE_NAME: &str = "releq_model.rs";

    /// Why the constants could not be generated.
    #[derive(Debug, thiserror::Error)]
    pub enum BuildError {
        /// The model file cannot be read or the output written.
        #[error("{}: {source}", path.display())]
        Io {
            /// The file.
            path: PathBuf,
            /// The I/O error.
            #[source]
            source: std::io::Error,
        },
        /// The model file is not a valid `.releq` model.
        #[error("{}: invalid model: {source}", path.display())]
        Model {
            /// The model file.
            path: PathBuf,
            /// What is wrong with it.
            #[source]
            source: ModelError,
        },
        /// `OUT_DIR` is not set: [`emit`] runs only inside a build script.
        #[error("OUT_DIR is not set: releq_common::embed::build::emit runs in a build script (use write for another directory)")]
        NoOutDir,
    }

    /// What a firmware needs to know about a model at compile time.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Constants {
        /// The model's name.
        pub name: String,
        /// Bytes of the blob (header and payload).
        pub blob_bytes: usize,
        /// Bytes of arena [`Plan::run`] needs: tensors plus kernel scratch.
        pub arena_bytes: usize,
        /// Input values (one `i8` code each).
        pub input_len: usize,
        /// Output values (one `i8` code each).
        pub output_len: usize,
        /// Input quantization (real = scale * (code - zero point)).
        pub input: TensorQuant,
        /// Output quantization.
        pub output: TensorQuant,
        /// Layers.
        pub layers: usize,
        /// Payload CRC-32, from the header.
        pub crc: u32,
    }

    impl Constants {
        /// Decode and validate a blob (the device's own code) and read its
        /// figures.
        pub fn of(blob: &[u8]) -> Result<Self, ModelError> {
            let plan = Plan::from_bytes(blob)?;
            let crc = super::blob_crc(blob)?;
            Ok(Constants {
                name: plan.model.name.to_string(),
                blob_bytes: blob.len(),
                arena_bytes: plan.arena_bytes,
                input_len: plan.input().shape.len(),
                output_len: plan.output().shape.len(),
                input: plan.input().quant,
                output: plan.output().quant,
                layers: plan.model.layers.len(),
                crc,
            })
        }

        /// Rust source declaring the constants (`pub const ARENA_BYTES:
        /// usize`, ...); `source` names the model file in the comment.
        pub fn rust(&self, source: &str) -> String {
            let mut s = String::new();
            let _ = writeln!(s, "// Generated by releq_common::embed::build from {source} -- do not edit.");
            let mut c = |doc: &str, decl: &str, value: String| {
                let _ = writeln!(s, "/// {doc}\npub const {decl} = {value};");
            };
            c("The model's name.", "MODEL_NAME: &str", format!("{:?}", self.name));
            c("Bytes of the .releq blob (header and payload).", "BLOB_BYTES: usize", self.blob_bytes.to_string());
            c(
                "Exact activation arena the model needs, bytes (tensors, then the kernels' scratch).",
                "ARENA_BYTES: usize",
                self.arena_bytes.to_string(),
            );
            c("Input values, one i8 code each.", "INPUT_LEN: usize", self.input_len.to_string());
            c("Output values, one i8 code each.", "OUTPUT_LEN: usize", self.output_len.to_string());
            c(
                "Input scale: real = INPUT_SCALE * (code - INPUT_ZERO_POINT).",
                "INPUT_SCALE: f32",
                f32_lit(self.input.scale),
            );
            c("Input zero point.", "INPUT_ZERO_POINT: i32", self.input.zero_point.to_string());
            c(
                "Input bits (codes lie in the signed range of this width).",
                "INPUT_BITS: u8",
                self.input.bits.to_string(),
            );
            c("Output scale.", "OUTPUT_SCALE: f32", f32_lit(self.output.scale));
            c("Output zero point.", "OUTPUT_ZERO_POINT: i32", self.output.zero_point.to_string());
            c("Layers.", "LAYERS: usize", self.layers.to_string());
            c(
                "Payload CRC-32 from the header (releq_common::embed::blob_crc).",
                "MODEL_CRC: u32",
                format!("{:#010x}", self.crc),
            );
            s
        }
    }

    /// A float literal that reads back as exactly `v` (Rust's `Debug` of
    /// `f32` is the shortest round-trip form), typed `f32`.
    fn f32_lit(v: f32) -> String {
        format!("{v:?}_f32")
    }

    /// Read and validate `model`, write its constants to `out`.
    pub fn write(model: &Path, out: &Path) -> Result<Constants, BuildError> {
        let blob = std::fs::read(model).map_err(|source| BuildError::Io { path: model.to_path_buf(), source })?;
        let c = Constants::of(&blob).map_err(|source| BuildError::Model { path: model.to_path_buf(), source })?;
        std::fs::write(out, c.rust(&model.display().to_string()))
            .map_err(|source| BuildError::Io { path: out.to_path_buf(), source })?;
        Ok(c)
    }

    /// For a build script: validate `model` (relative to the package root),
    /// write `$OUT_DIR/releq_model.rs` and ask cargo to rerun when the model
    /// changes. Include the result with
    /// `include!(concat!(env!("OUT_DIR"), "/releq_model.rs"))`.
    pub fn emit(model: impl AsRef<Path>) -> Result<Constants, BuildError> {
        let model = model.as_ref();
        let out = std::env::var_os("OUT_DIR").ok_or(BuildError::NoOutDir)?;
        std::println!("cargo:rerun-if-changed={}", model.display());
        write(model, &Path::new(&out).join(FILE_NAME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::random_model;
    use crate::Plan;

    #[test]
    fn include_model_is_aligned_and_exact() {
        let blob: &'static [u8] = crate::include_model!("../Cargo.toml");
        assert_eq!(blob, include_bytes!("../Cargo.toml"));
        assert_eq!(blob.as_ptr() as usize % ALIGN, 0);
        assert_eq!(core::mem::align_of::<Aligned<[u8; 3]>>(), ALIGN);
    }

    #[test]
    fn arena_is_aligned_and_sized() {
        let mut a = Arena::<37>::new();
        assert_eq!(a.as_mut_slice().len(), 37);
        assert_eq!(a.as_mut_slice().as_ptr() as usize % ALIGN, 0);
        assert_eq!(core::mem::align_of::<Arena<1>>(), ALIGN);
    }

    #[test]
    fn constants_match_the_plan_and_an_exact_arena_runs() {
        let blob = random_model(3, true).encode().unwrap();
        let c = build::Constants::of(&blob).unwrap();
        let plan = Plan::from_bytes(&blob).unwrap();
        assert_eq!(c.arena_bytes, plan.arena_bytes);
        assert_eq!(c.blob_bytes, blob.len());
        assert_eq!(c.crc, u32::from_le_bytes(blob[12..16].try_into().unwrap()));
        assert_eq!(c.input_len, plan.input().shape.len());
        assert_eq!(c.output_len, plan.output().shape.len());
        // ARENA_BYTES is enough, one byte less is refused.
        let input = vec![plan.input().quant.zero_point as i8; c.input_len];
        let mut arena = vec![0i8; c.arena_bytes];
        assert_eq!(plan.run(&mut arena, &input).unwrap().len(), c.output_len);
        let mut short = vec![0i8; c.arena_bytes - 1];
        assert!(plan.run(&mut short, &input).is_err());
    }

    #[test]
    fn generated_source_declares_every_constant() {
        let blob = random_model(4, false).encode().unwrap();
        let c = build::Constants::of(&blob).unwrap();
        let src = c.rust("m.releq");
        for name in ["BLOB_BYTES", "ARENA_BYTES", "INPUT_LEN", "OUTPUT_LEN", "INPUT_SCALE", "MODEL_CRC", "MODEL_NAME"] {
            assert!(src.contains(&format!("pub const {name}")), "{name} missing from\n{src}");
        }
        assert!(src.contains(&format!("pub const ARENA_BYTES: usize = {};", c.arena_bytes)));
        // The scale literal reads back exactly.
        let lit = src.lines().find_map(|l| l.strip_prefix("pub const INPUT_SCALE: f32 = ")).unwrap();
        let v: f32 = lit.trim_end_matches(';').trim_end_matches("_f32").parse().unwrap();
        assert_eq!(v.to_bits(), c.input.scale.to_bits());
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("releq-embed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.releq");
        std::fs::write(&bad, b"not a model").unwrap();
        let e = build::write(&bad, &dir.join("out.rs")).unwrap_err();
        assert!(matches!(e, build::BuildError::Model { .. }));
        assert!(e.to_string().contains("bad.releq"), "{e}");
        let e = build::write(&dir.join("missing.releq"), &dir.join("out.rs")).unwrap_err();
        assert!(matches!(e, build::BuildError::Io { .. }) && e.to_string().contains("missing.releq"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn codes_and_crc() {
        assert_eq!(codes(&[0x80, 0x7f, 0xff]), &[-128i8, 127, -1]);
        let blob = random_model(5, false).encode().unwrap();
        assert_eq!(blob_crc(&blob).unwrap(), u32::from_le_bytes(blob[12..16].try_into().unwrap()));
        assert!(blob_crc(&blob[..10]).is_err());
    }
}
