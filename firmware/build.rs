//! Build script: turns the board file into the firmware's memory layout and
//! constants, so no board fact is written anywhere but `boards/<name>.toml`.
//!
//! - `RELEQ_BOARD` selects the board (default `qemu-m4`); `RELEQ_BOARDS_DIR`
//!   overrides where board files live (default `../boards`, as the host).
//! - Writes `memory.x` (for cortex-m-rt's `link.x`) and `board.rs` (included
//!   by `src/board.rs`) into `OUT_DIR`.
//! - Emits `releq_counter` / `releq_link` cfgs for the board's counter and
//!   link, `releq_emulated` for QEMU boards (semihosting is there), and for
//!   real boards `releq_family` (the clock set-up in `src/clock/`) and
//!   `releq_pin` (a timing pin); `memory.x` gets the RP2040's BOOT2 region.
//! - Refuses to build for a target other than the board's.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

const DEFAULT_BOARD: &str = "qemu-m4";
const COUNTERS: &[&str] = &["icount-timer", "dwt", "systick"];
const LINKS: &[&str] = &["qemu-uart", "rtt"];
/// Chip families with a clock set-up in `src/clock/`.
const FAMILIES: &[&str] = &["stm32f4", "stm32h7", "stm32l4", "nrf52", "rp2040"];
/// Second-stage bootloaders `rp2040-boot2` provides (only W25Q080 is wired).
const BOOT2: &[&str] = &["w25q080"];

fn fail(msg: impl AsRef<str>) -> ! {
    // A panic in a build script prints the message and fails the build.
    panic!("\n\nreleq-firmware build: {}\n\n", msg.as_ref());
}

fn get<'a>(t: &'a toml::Table, key: &str, file: &Path) -> &'a toml::Value {
    t.get(key).unwrap_or_else(|| fail(format!("{}: missing field `{key}`", file.display())))
}

fn int(t: &toml::Table, key: &str, file: &Path) -> u64 {
    match get(t, key, file) {
        toml::Value::Integer(i) if *i >= 0 => *i as u64,
        v => fail(format!("{}: field `{key}` must be a non-negative integer, found {v}", file.display())),
    }
}

fn string<'a>(t: &'a toml::Table, key: &str, file: &Path) -> &'a str {
    match get(t, key, file) {
        toml::Value::String(s) => s,
        v => fail(format!("{}: field `{key}` must be a string, found {v}", file.display())),
    }
}

fn boolean(t: &toml::Table, key: &str, file: &Path) -> bool {
    match get(t, key, file) {
        toml::Value::Boolean(b) => *b,
        v => fail(format!("{}: field `{key}` must be true or false, found {v}", file.display())),
    }
}

fn table<'a>(t: &'a toml::Table, key: &str, file: &Path) -> &'a toml::Table {
    match get(t, key, file) {
        toml::Value::Table(s) => s,
        v => fail(format!("{}: `{key}` must be a table, found {v}", file.display())),
    }
}

/// FNV-1a over every file under `paths` (sorted), for the build id.
fn hash_tree(paths: &[PathBuf]) -> u64 {
    fn walk(p: &Path, files: &mut Vec<PathBuf>) {
        if p.is_dir() {
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    walk(&e.path(), files);
                }
            }
        } else if p.is_file() {
            files.push(p.to_path_buf());
        }
    }
    let mut files = Vec::new();
    for p in paths {
        walk(p, &mut files);
    }
    files.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in files {
        let bytes = fs::read(&f).unwrap_or_default();
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for b in name.bytes().chain(bytes) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-env-changed=RELEQ_BOARD");
    println!("cargo:rerun-if-env-changed=RELEQ_BOARDS_DIR");
    println!("cargo:rerun-if-changed=build.rs");

    let board = env::var("RELEQ_BOARD").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| DEFAULT_BOARD.into());
    let dir = env::var_os("RELEQ_BOARDS_DIR").map(PathBuf::from).unwrap_or_else(|| manifest.join("../boards"));
    let file = dir.join(format!("{board}.toml"));
    println!("cargo:rerun-if-changed={}", file.display());
    let text = fs::read_to_string(&file).unwrap_or_else(|e| {
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten().filter_map(|e| e.file_name().to_str()?.strip_suffix(".toml").map(str::to_owned)).collect()
            })
            .unwrap_or_default();
        names.sort();
        fail(format!(
            "cannot read board file {} for RELEQ_BOARD={board}: {e}; available boards: {}",
            file.display(),
            names.join(", ")
        ))
    });
    let t: toml::Table = text.parse().unwrap_or_else(|e| fail(format!("{}: {e}", file.display())));

    let name = string(&t, "name", &file);
    if name != board {
        fail(format!("{}: `name` is {name:?} but the file is for board {board:?}", file.display()));
    }
    let target = string(&t, "target", &file);
    let building = env::var("TARGET").unwrap_or_default();
    if building != target {
        fail(format!(
            "board {board} is a {target} board but this build is for {building}.\n\
             Build it with: RELEQ_BOARD={board} cargo build --release --target {target} --target-dir target/{board}\n\
             (and `rustup target add {target}` if the target is not installed)"
        ));
    }
    let core = string(&t, "core", &file);
    let clock_hz = int(&t, "clock_hz", &file);
    let arena_bytes = int(&t, "arena_bytes", &file);
    let synth_bytes = int(&t, "synth_bytes", &file);
    let counter = string(&t, "counter", &file);
    let emulated = boolean(&t, "emulated", &file);
    let link = string(&t, "link", &file);
    if !COUNTERS.contains(&counter) {
        fail(format!("{}: unknown counter {counter:?} (known: {COUNTERS:?})", file.display()));
    }
    if !LINKS.contains(&link) {
        fail(format!("{}: unknown link {link:?} (known: {LINKS:?})", file.display()));
    }
    let mem = table(&t, "memory", &file);
    let flash = table(mem, "flash", &file);
    let ram = table(mem, "ram", &file);
    let blob = table(&t, "blob", &file);
    let (blob_addr, blob_max) = (int(blob, "address", &file), int(blob, "max_bytes", &file));
    if blob_max < 16 {
        fail(format!("{}: blob.max_bytes must hold at least the 16-byte header", file.display()));
    }
    let icount_shift = match t.get("qemu") {
        Some(toml::Value::Table(q)) => int(q, "icount_shift", &file),
        _ if counter == "icount-timer" => {
            fail(format!("{}: counter icount-timer needs [qemu] icount_shift", file.display()))
        }
        _ => 0,
    };
    if icount_shift > 10 {
        fail(format!("{}: qemu.icount_shift {icount_shift} is out of range 0..=10", file.display()));
    }

    // Real boards: [hardware] (chip, clock family, flash, caches, pin, boot2).
    let hw = match t.get("hardware") {
        Some(toml::Value::Table(h)) => Some(h),
        Some(v) => fail(format!("{}: `hardware` must be a table, found {v}", file.display())),
        None if !emulated => {
            fail(format!("{}: a real board (emulated = false) needs a [hardware] table", file.display()))
        }
        None => None,
    };
    let family = hw.map(|h| string(h, "family", &file));
    if let Some(f) = family {
        if !FAMILIES.contains(&f) {
            fail(format!("{}: unknown hardware.family {f:?} (known: {FAMILIES:?})", file.display()));
        }
    }
    let wait_states = hw.map_or(0, |h| int(h, "flash_wait_states", &file));
    let (icache, dcache) = hw.map_or((false, false), |h| (boolean(h, "icache", &file), boolean(h, "dcache", &file)));
    let chip = hw.map_or(String::new(), |h| string(h, "chip", &file).to_owned());
    let pin = match hw.and_then(|h| h.get("timing_pin")) {
        Some(toml::Value::Table(p)) => Some((int(p, "port", &file), int(p, "pin", &file))),
        Some(v) => fail(format!("{}: hardware.timing_pin must be {{ port, pin }}, found {v}", file.display())),
        None => None,
    };
    if let Some((port, n)) = pin {
        if port > 10 || n > 31 {
            fail(format!("{}: hardware.timing_pin {{ port = {port}, pin = {n} }} is out of range", file.display()));
        }
    }
    let boot2 = match hw.and_then(|h| h.get("boot2")) {
        Some(toml::Value::String(b)) if BOOT2.contains(&b.as_str()) => Some(b.clone()),
        Some(v) => fail(format!("{}: hardware.boot2 must be one of {BOOT2:?}, found {v}", file.display())),
        None => None,
    };
    if (family == Some("rp2040")) != boot2.is_some() {
        fail(format!("{}: hardware.boot2 is needed by, and only by, family rp2040", file.display()));
    }

    let (flash_origin, flash_length) = (int(flash, "origin", &file), int(flash, "length", &file));
    let mut regions = String::new();
    let mut sections = String::new();
    let (code_origin, code_length) = if boot2.is_some() {
        // The RP2040 boot ROM loads the first 256 bytes of flash (boot2).
        let _ = writeln!(regions, "  BOOT2 : ORIGIN = {flash_origin:#010x}, LENGTH = 0x100");
        sections.push_str(
            "SECTIONS {\n  .boot2 ORIGIN(BOOT2) :\n  {\n    KEEP(*(.boot2));\n  } > BOOT2\n} INSERT BEFORE .text;\n",
        );
        (flash_origin + 0x100, flash_length - 0x100)
    } else {
        (flash_origin, flash_length)
    };
    let memory_x = format!(
        "/* Generated by releq-firmware's build.rs from {file} -- do not edit. */\n\
         MEMORY\n{{\n{regions}  FLASH : ORIGIN = {:#010x}, LENGTH = {:#010x}\n  RAM : ORIGIN = {:#010x}, LENGTH = {:#010x}\n}}\n{sections}",
        code_origin,
        code_length,
        int(ram, "origin", &file),
        int(ram, "length", &file),
        file = file.display(),
    );
    fs::write(out.join("memory.x"), memory_x).unwrap();
    println!("cargo:rustc-link-search={}", out.display());

    // The build id: what sources went into this firmware.
    let common = manifest.join("../common");
    let inputs = [
        manifest.join("src"),
        manifest.join("Cargo.toml"),
        common.join("src"),
        common.join("Cargo.toml"),
        file.clone(),
    ];
    for p in &inputs[..4] {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let build_id = hash_tree(&inputs);

    let mut rs = String::new();
    let _ = writeln!(rs, "// Generated by releq-firmware's build.rs from {} -- do not edit.", file.display());
    let consts: [(&str, &str, String); 17] = [
        ("Board name, as in `boards/`.", "NAME: &str", format!("{name:?}")),
        ("Core, e.g. `cortex-m4`.", "CORE: &str", format!("{core:?}")),
        ("Core clock in Hz.", "CLOCK_HZ: u32", format!("{clock_hz}")),
        ("Address the model blob is placed at.", "BLOB_ADDR: usize", format!("{blob_addr:#010x}")),
        ("Largest blob, bytes.", "BLOB_MAX: usize", format!("{blob_max:#x}")),
        ("Activation arena, bytes.", "ARENA_BYTES: usize", format!("{arena_bytes}")),
        ("Buffer for a synthetic layer's parameters, bytes.", "SYNTH_BYTES: usize", format!("{synth_bytes}")),
        ("The board's counter (`counter` in the board file).", "COUNTER: &str", format!("{counter:?}")),
        ("The board's link (`link` in the board file).", "LINK: &str", format!("{link:?}")),
        ("QEMU `-icount shift=N` (0 on hardware).", "ICOUNT_SHIFT: u32", format!("{icount_shift}")),
        ("probe-rs chip name (empty under QEMU).", "CHIP: &str", format!("{chip:?}")),
        ("Flash wait states the clock set-up programs.", "FLASH_WAIT_STATES: u32", format!("{wait_states}")),
        ("Instruction cache on.", "ICACHE: bool", format!("{icache}")),
        ("Data cache on.", "DCACHE: bool", format!("{dcache}")),
        ("Timing pin's GPIO port (0 = A / P0).", "PIN_PORT: u32", format!("{}", pin.map_or(0, |p| p.0))),
        ("Timing pin's number in its port.", "PIN_NUMBER: u32", format!("{}", pin.map_or(0, |p| p.1))),
        (
            "Firmware version and a hash of its sources (firmware, common, board file).",
            "FIRMWARE: &str",
            format!(
                "\"{} {}+{build_id:016x}\"",
                env::var("CARGO_PKG_NAME").unwrap(),
                env::var("CARGO_PKG_VERSION").unwrap()
            ),
        ),
    ];
    for (doc, decl, value) in consts {
        let _ = writeln!(rs, "/// {doc}\npub const {decl} = {value};");
    }
    fs::write(out.join("board.rs"), rs).unwrap();

    let values = |v: &[&str]| v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    println!("cargo::rustc-check-cfg=cfg(releq_counter, values({}))", values(COUNTERS));
    println!("cargo::rustc-check-cfg=cfg(releq_link, values({}))", values(LINKS));
    println!("cargo:rustc-cfg=releq_counter=\"{counter}\"");
    println!("cargo:rustc-cfg=releq_link=\"{link}\"");
    println!("cargo::rustc-check-cfg=cfg(releq_emulated)");
    println!("cargo::rustc-check-cfg=cfg(releq_family, values({}))", values(FAMILIES));
    println!("cargo::rustc-check-cfg=cfg(releq_pin)");
    println!("cargo::rustc-check-cfg=cfg(releq_hardware)");
    if let Some(f) = family {
        println!("cargo:rustc-cfg=releq_family=\"{f}\"");
        println!("cargo:rustc-cfg=releq_hardware");
    }
    if pin.is_some() {
        println!("cargo:rustc-cfg=releq_pin");
    }
    if emulated {
        println!("cargo:rustc-cfg=releq_emulated");
    }
}
