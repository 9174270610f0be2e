//! releq host library: everything the `releq` CLI does, usable from tests.
//!
//! - [`data`]: MNIST / Fashion-MNIST IDX loading.
//! - [`eval`]: host integer inference over a data set.
//! - [`inspect`]: human and JSON summaries of `.releq` model files.

pub mod data;
pub mod eval;
pub mod inspect;
