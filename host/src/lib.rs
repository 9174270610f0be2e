//! releq host library: everything the `releq` CLI does, usable from tests.
//!
//! - [`data`]: MNIST / Fashion-MNIST IDX loading.
//! - [`eval`]: host integer inference over a data set.
//! - [`inspect`]: human and JSON summaries of `.releq` model files.
//! - [`profile`]: per-layer latency measured on a device.

pub mod boards;
pub mod data;
pub mod device;
pub mod eval;
pub mod inspect;
pub mod profile;
