//! Fuzz the protocol framing: bytes go one by one into a
//! `FrameReader::<MAX_FRAME>`, every frame decodes as `Request` and `Response`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| releq_fuzz::frames(data));
