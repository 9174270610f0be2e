//! Shared helpers of the end-to-end tests in `tests/`.

use std::path::PathBuf;

/// The data directory holding `mnist/`: `$RELEQ_DATA`, else the shared copy
/// next to the repository; None (the test skips with a note) if absent.
pub fn data_dir() -> Option<PathBuf> {
    let d = std::env::var_os("RELEQ_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    d.join("mnist").is_dir().then_some(d)
}
