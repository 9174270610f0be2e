//! releq host library: everything the `releq` CLI does, usable from tests.
//!
//! - [`checkpoint`]: checkpoints with their graphs (`graph.json`), data splits.
//! - [`cexport`]: a `.releq` model as a C header (blob, sizes, exact arena).
//! - [`data`]: MNIST / Fashion-MNIST IDX loading.
//! - [`eval`]: host integer inference over a data set.
//! - [`fastinfer`]: the host-optimised, bit-exact inference path.
//! - [`import`]: int8 `.tflite` models converted bit-exact with TFLite Micro.
//! - [`npy`]: `.npy` arrays (users' inputs, outputs, labels).
//! - [`inspect`]: human and JSON summaries of `.releq` model files.
//! - [`profile`]: per-layer latency measured on a device.
//! - [`tflexport`]: a `.releq` model as a `.tflite` file TFLite Micro runs bit-exact (int4 weights where it can).
//! - [`quantize`]: export of a float network to a `.releq` integer model.
//! - [`nn`], [`zoo`]: networks as op lists, their quantization plans, the model zoo.

pub mod boards;
pub mod cexport;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod eval;
pub mod fastinfer;
pub mod import;
pub mod inspect;
pub mod nn;
pub mod npy;
pub mod profile;
pub mod quantize;
pub mod search;
pub mod tflexport;
pub mod train;
pub mod zoo;
