//! releq host library: everything the `releq` CLI does, usable from tests.
//!
//! - [`data`]: MNIST / Fashion-MNIST IDX loading.
//! - [`inspect`]: human and JSON summaries of `.releq` model files.

pub mod data;
pub mod inspect;
