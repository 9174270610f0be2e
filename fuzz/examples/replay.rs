//! Replays files through a fuzz target's body without libFuzzer (stable
//! toolchain, no sanitizer): for checking seeds and saved regressions.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example replay -- <target> <file-or-dir>...`
//! with `<target>` one of `model_decode`, `model_payload`, `frame_decode`, `tflite_import`.
//! Each file runs in turn; a panic aborts with the file name printed first.

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("usage: replay <target> <file-or-dir>...");
    let body: fn(&[u8]) = match target.as_str() {
        "model_decode" => releq_fuzz::model_blob,
        "model_payload" => releq_fuzz::model_payload,
        "frame_decode" => releq_fuzz::frames,
        "tflite_import" => releq_fuzz::tflite_import,
        other => panic!("unknown target {other}"),
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for a in args {
        let p = PathBuf::from(a);
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&p).expect("read dir").map(|e| e.unwrap().path()).collect();
            v.sort();
            files.extend(v.into_iter().filter(|p| p.is_file()));
        } else {
            files.push(p);
        }
    }
    for f in &files {
        let data = std::fs::read(f).expect("read file");
        eprintln!("{target}: {} ({} bytes)", f.display(), data.len());
        body(&data);
    }
    println!("{target}: {} inputs, no panic", files.len());
}
