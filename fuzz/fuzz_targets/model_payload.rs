//! Fuzz the postcard payload past the CRC: a correct 16-byte header is
//! prepended to the input before `Plan::from_bytes`, then what validates runs.
//! Bytes left after the model in the payload become the model input.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| releq_fuzz::model_payload(data));
