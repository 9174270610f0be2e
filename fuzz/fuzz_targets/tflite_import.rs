//! Fuzz the `.tflite` importer (`releq_host::import::import_tflite`): reader,
//! verifier and conversion; what imports is validated and run. See
//! `src/lib.rs` for the checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| releq_fuzz::tflite_import(data));
