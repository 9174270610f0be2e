//! Importing models made by other tools.
//!
//! - [`onnx`]: a float ONNX graph as a checkpoint (graph and float
//!   parameters) that every command taking a checkpoint accepts;
//! - [`tflite`]: reads a `.tflite` flatbuffer (verified first) into a small
//!   owned graph;
//! - [`tflite_float`]: that graph's dequantized weights as a float
//!   checkpoint (`releq import --float`);
//! - [`convert`]: turns that graph into a `.releq` model whose integer
//!   outputs equal TFLite Micro's bit for bit (the arithmetic each op needs
//!   is described there).
//!
//! `schema` is the Rust that `flatc` 25.12.19 generated from TFLite's
//! `schema.fbs` (committed beside it as `tflite_schema.fbs`; regenerate with
//! `scripts/gen-tflite-schema.sh`; [`crate::tflexport`] writes files with its
//! builder API). It is exempt from rustfmt and clippy and
//! may use `unsafe`: SAFETY: its unchecked accessors are only reached through
//! [`tflite::read`], which first runs the flatbuffers verifier over the whole
//! buffer (`root_as_model_with_opts`), so every offset they follow is in
//! bounds and every table has the type the schema says.

pub mod convert;
pub mod onnx;
pub mod onnx_proto;
pub mod tflite;
pub mod tflite_float;

#[allow(
    unsafe_code,
    missing_docs,
    dead_code,
    unused_imports,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    deprecated,
    clippy::all,
    clippy::pedantic
)]
#[rustfmt::skip]
#[path = "tflite_schema_generated.rs"]
pub(crate) mod schema;

pub use convert::{import_tflite, Imported, Summary};

/// Why a `.tflite` file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not a (valid) `.tflite` flatbuffer.
    #[error("{0}")]
    Format(String),
    /// A tensor is malformed or cannot be converted.
    #[error("tensor {index} ({name:?}) {reason}")]
    Tensor {
        /// Tensor index in subgraph 0.
        index: usize,
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An operator is malformed or cannot be converted.
    #[error("operator {index} ({op}) {reason}")]
    Op {
        /// Operator index in subgraph 0.
        index: usize,
        /// Operator name.
        op: String,
        /// What is wrong.
        reason: String,
    },
    /// An operator the importer does not convert.
    #[error("operator {index} ({op}) is not supported; supported: {}", convert::SUPPORTED.join(", "))]
    Unsupported {
        /// Operator index in subgraph 0.
        index: usize,
        /// Operator name.
        op: String,
    },
    /// The graph as a whole cannot be expressed.
    #[error("{0}")]
    Graph(String),
    /// The converted model does not validate.
    #[error("the converted model does not validate: {0}")]
    Build(#[from] releq_common::builder::BuildError),
}
