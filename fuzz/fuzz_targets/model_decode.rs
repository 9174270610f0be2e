//! Fuzz `Plan::from_bytes` on whole `.releq` files (header + CRC + payload),
//! then run what validates. Bytes after the declared payload become the
//! model input. See `src/lib.rs` for the checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| releq_fuzz::model_blob(data));
