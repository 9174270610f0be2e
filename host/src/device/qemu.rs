//! The firmware running under QEMU: the default device.
//!
//! [`QemuDevice::start`] builds the firmware for the board if needed
//! ([`build_firmware`]: `cargo build --release` in `firmware/`, cached by
//! cargo), starts
//! ```text
//! qemu-system-arm -machine M -cpu C -icount shift=N,align=off,sleep=off
//!   -display none -monitor none -semihosting-config enable=on,target=native
//!   -chardev socket,id=c0,path=<tmp>/uart.sock,server=on,wait=on -serial chardev:c0
//!   -device loader,file=<blob>,addr=<blob address>,force-raw=on -kernel <elf>
//! ```
//! connects to the UART's unix socket (QEMU waits for it before the CPU
//! starts), and handshakes with `Info`. A board whose link is `rtt`
//! (`qemu-m4-rtt`) gets `-S -serial null -gdb unix:<tmp>/gdb.sock,server=on,wait=off`
//! instead of the UART socket: the host connects to the gdbstub, resumes the
//! guest, waits for the firmware's RTT control block (the ELF's
//! `_SEGGER_RTT`) and carries frames and the defmt log over RTT
//! ([`super::gdb_rtt`]). Every request has a deadline. QEMU is
//! killed on every exit path: when the device is dropped, and when starting
//! fails half way.
//!
//! QEMU's stdout carries the firmware's defmt log (semihosting), decoded with
//! the firmware ELF's defmt table; its stderr carries QEMU's own messages and
//! the firmware's panic message. The last lines of both are kept for errors;
//! with [`QemuOptions::verbose`] they are also printed as they come.

use super::link::{FrameLink, Peer, Transport};
use super::{Device, DeviceInfoOwned, LinkError, Reply};
use crate::boards::{Board, LinkKind};
use releq_common::protocol::Request;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Lines of QEMU output kept for error messages.
const TAIL_LINES: usize = 30;

/// How to start QEMU.
#[derive(Debug, Clone)]
pub struct QemuOptions {
    /// Use this firmware ELF instead of building one.
    pub firmware: Option<PathBuf>,
    /// Deadline of each request (and of starting QEMU).
    pub timeout: Duration,
    /// Print QEMU's output and the decoded firmware log as they come.
    pub verbose: bool,
    /// Cargo features of the firmware (e.g. `hang`).
    pub features: Vec<String>,
}

impl Default for QemuOptions {
    fn default() -> Self {
        Self { firmware: None, timeout: Duration::from_secs(60), verbose: false, features: Vec::new() }
    }
}

/// The firmware's cargo workspace: `$RELEQ_FIRMWARE_DIR`, else the
/// repository's `firmware/`.
pub fn firmware_dir() -> PathBuf {
    match std::env::var_os("RELEQ_FIRMWARE_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => repo_root().join("firmware"),
    }
}

/// The repository (the host crate's parent directory).
fn repo_root() -> &'static Path {
    let host = Path::new(env!("CARGO_MANIFEST_DIR"));
    host.parent().unwrap_or(host)
}

/// Serializes firmware builds within this process (cargo serializes across
/// processes with its own lock).
static BUILD_LOCK: Mutex<()> = Mutex::new(());

fn last_lines(lines: &VecDeque<String>) -> String {
    lines.iter().cloned().collect::<Vec<_>>().join("\n")
}

fn push_line(lines: &mut VecDeque<String>, line: String) {
    if lines.len() == TAIL_LINES {
        lines.pop_front();
    }
    lines.push_back(line);
}

/// Is `target` installed? `None` when rustup cannot tell.
fn target_installed(target: &str) -> Option<bool> {
    let out = Command::new("rustup").args(["target", "list", "--installed"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == target))
}

/// Build the firmware for `board` with `features` (cargo decides whether
/// anything changed) and return the ELF's path. Prints one line on stderr
/// when cargo actually compiles something.
///
/// The build goes to `firmware/target/<board>` (`<board>+<features>` with
/// features), so boards and feature sets never overwrite each other's ELF.
pub fn build_firmware(board: &Board, features: &[String]) -> Result<PathBuf, LinkError> {
    if target_installed(&board.target) == Some(false) {
        return Err(LinkError::TargetMissing { target: board.target.clone() });
    }
    let mut features: Vec<String> = features.to_vec();
    features.sort();
    features.dedup();
    let dir = firmware_dir();
    let target_dir = dir
        .join("target")
        .join(std::iter::once(board.name.clone()).chain(features.clone()).collect::<Vec<_>>().join("+"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&dir)
        .args(["build", "--release", "--target", &board.target, "--target-dir"])
        .arg(&target_dir)
        .env("RELEQ_BOARD", &board.name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Settings of an outer cargo (tests run under one) must not leak into the
    // thumb build.
    for var in
        ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS"]
    {
        cmd.env_remove(var);
    }
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| LinkError::io(format!("cannot run cargo in {}", dir.display()), e))?;
    let mut tail = VecDeque::new();
    let mut announced = false;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !announced && line.trim_start().starts_with("Compiling") {
                announced = true;
                let with = if features.is_empty() { String::new() } else { format!(" with {}", features.join(",")) };
                eprintln!(
                    "releq: building the firmware for board {} ({}){with} in {}",
                    board.name,
                    board.target,
                    target_dir.display()
                );
            }
            push_line(&mut tail, line);
        }
    }
    let status = child.wait().map_err(|e| LinkError::io("waiting for cargo", e))?;
    if !status.success() {
        let stderr_tail = last_lines(&tail);
        if stderr_tail.contains("target may not be installed") {
            return Err(LinkError::TargetMissing { target: board.target.clone() });
        }
        return Err(LinkError::Build { board: board.name.clone(), status: status.to_string(), stderr_tail });
    }
    if announced {
        eprintln!("releq: firmware built in {:.1} s", started.elapsed().as_secs_f64());
    }
    let elf = target_dir.join(&board.target).join("release").join("releq-firmware");
    if !elf.is_file() {
        return Err(LinkError::Build {
            board: board.name.clone(),
            status: "no ELF".into(),
            stderr_tail: format!("cargo succeeded but {} does not exist", elf.display()),
        });
    }
    Ok(elf)
}

/// `qemu-system-arm` (or `$RELEQ_QEMU`) found on PATH.
pub fn find_qemu() -> Result<PathBuf, LinkError> {
    if let Some(q) = std::env::var_os("RELEQ_QEMU").filter(|q| !q.is_empty()) {
        return Ok(PathBuf::from(q));
    }
    let path = std::env::var_os("PATH").ok_or(LinkError::QemuMissing)?;
    std::env::split_paths(&path).map(|d| d.join("qemu-system-arm")).find(|p| p.is_file()).ok_or(LinkError::QemuMissing)
}

/// A running QEMU with its output readers; killed when dropped.
struct Qemu {
    child: Child,
    log: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Qemu {
    fn tail(&self) -> String {
        last_lines(&self.log.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The error for "QEMU is gone", after waiting briefly for its status.
    fn exited(&mut self, when: impl Into<String>) -> LinkError {
        let deadline = Instant::now() + Duration::from_secs(2);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s.to_string(),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => break "still running, but it closed the UART".into(),
                Err(e) => break format!("unknown: {e}"),
            }
        };
        // Let the readers take the last output.
        std::thread::sleep(Duration::from_millis(50));
        LinkError::QemuExited { status, when: when.into(), stderr: self.tail() }
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Peer for Qemu {
    fn is_running(&mut self) -> bool {
        Qemu::is_running(self)
    }
    fn exited(&mut self, when: String) -> LinkError {
        Qemu::exited(self, when)
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// Read QEMU's stderr line by line into the log.
fn read_stderr(stderr: impl Read + Send + 'static, log: Arc<Mutex<VecDeque<String>>>, verbose: bool) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if verbose {
                eprintln!("[qemu] {line}");
            }
            push_line(&mut log.lock().unwrap_or_else(|e| e.into_inner()), line);
        }
    })
}

/// Read QEMU's stdout (the firmware's defmt stream) and decode it with the
/// ELF's defmt table; without a table it is taken as text.
pub(super) fn read_stdout(
    mut stdout: impl Read + Send + 'static,
    elf: Vec<u8>,
    log: Arc<Mutex<VecDeque<String>>>,
    verbose: bool,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let emit = |line: String| {
            if verbose {
                eprintln!("[firmware] {line}");
            }
            push_line(&mut log.lock().unwrap_or_else(|e| e.into_inner()), format!("[firmware] {line}"));
        };
        let table = defmt_decoder::Table::parse(&elf).ok().flatten();
        drop(elf);
        let mut decoder = table.as_ref().map(|t| t.new_stream_decoder());
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            match decoder.as_mut() {
                Some(d) => {
                    d.received(&buf[..n]);
                    loop {
                        match d.decode() {
                            Ok(frame) => emit(frame.display(false).to_string()),
                            Err(defmt_decoder::DecodeError::UnexpectedEof) => break,
                            Err(defmt_decoder::DecodeError::Malformed) => {
                                emit("(malformed defmt frame)".into());
                                break;
                            }
                        }
                    }
                }
                None => {
                    text.extend_from_slice(&buf[..n]);
                    while let Some(i) = text.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = text.drain(..=i).collect();
                        emit(String::from_utf8_lossy(&line[..i]).into_owned());
                    }
                }
            }
        }
    })
}

/// The firmware under QEMU, ready for requests.
pub struct QemuDevice {
    link: FrameLink<Box<dyn Transport>>,
    timeout: Duration,
    info: DeviceInfoOwned,
    elf: PathBuf,
    startup: Duration,
    // Dropped after the link: kills QEMU, then removes the socket's directory.
    qemu: Qemu,
    _dir: tempfile::TempDir,
}

impl QemuDevice {
    /// Build (if needed) and start the firmware for `board` under QEMU, with
    /// the model blob file `blob` (or none), and handshake.
    pub fn start(board: &Board, blob: Option<&Path>, opts: &QemuOptions) -> Result<QemuDevice, LinkError> {
        let qcfg = board.qemu.as_ref().ok_or_else(|| LinkError::Board {
            board: board.name.clone(),
            reason: "its board file has no [qemu] table: it cannot run under QEMU".into(),
        })?;
        let qemu_bin = find_qemu()?;
        if let Some(blob) = blob {
            let len =
                std::fs::metadata(blob).map_err(|e| LinkError::io(format!("cannot read {}", blob.display()), e))?.len();
            if len > board.blob.max_bytes as u64 {
                return Err(LinkError::Board {
                    board: board.name.clone(),
                    reason: format!("the model blob is {len} bytes, the board takes at most {}", board.blob.max_bytes),
                });
            }
        }
        let elf = match &opts.firmware {
            Some(p) => p.clone(),
            None => build_firmware(board, &opts.features)?,
        };
        let elf_bytes = std::fs::read(&elf).map_err(|e| LinkError::io(format!("cannot read {}", elf.display()), e))?;
        let rtt_block = match board.link {
            LinkKind::Rtt => Some(super::rtt::find_control_block(&elf, &elf_bytes)?),
            LinkKind::QemuUart => None,
        };
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("releq-qemu-")
            .tempdir()
            .map_err(|e| LinkError::io("cannot create a temporary directory", e))?;
        let sock = dir.path().join(if rtt_block.is_some() { "gdb.sock" } else { "uart.sock" });
        let mut cmd = Command::new(&qemu_bin);
        cmd.args(["-machine", &qcfg.machine, "-cpu", &qcfg.cpu])
            .args(["-icount", &format!("shift={},align=off,sleep=off", qcfg.icount_shift)])
            .args(["-display", "none", "-monitor", "none"])
            .args(["-semihosting-config", "enable=on,target=native"]);
        if rtt_block.is_some() {
            // Halted until the host has attached; the UART is unused.
            cmd.args(["-S", "-serial", "null", "-gdb"]).arg(format!("unix:{},server=on,wait=off", sock.display()));
        } else {
            cmd.arg("-chardev")
                .arg(format!("socket,id=c0,path={},server=on,wait=on", sock.display()))
                .args(["-serial", "chardev:c0"]);
        }
        if let Some(blob) = blob {
            cmd.arg("-device").arg(format!(
                "loader,file={},addr={:#x},force-raw=on",
                blob.display(),
                board.blob.address
            ));
        }
        cmd.arg("-kernel").arg(&elf).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| LinkError::io(format!("cannot start {}", qemu_bin.display()), e))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let mut readers = Vec::new();
        if let Some(e) = child.stderr.take() {
            readers.push(read_stderr(e, log.clone(), opts.verbose));
        }
        // The defmt stream: QEMU's stdout (semihosting), or RTT up channel 0
        // handed over a socket pair by the RTT transport.
        let rtt_log = match rtt_block {
            Some(_) => {
                let (tx, rx) = UnixStream::pair().map_err(|e| LinkError::io("cannot create a socket pair", e))?;
                readers.push(read_stdout(rx, elf_bytes, log.clone(), opts.verbose));
                Some(tx)
            }
            None => {
                if let Some(o) = child.stdout.take() {
                    readers.push(read_stdout(o, elf_bytes, log.clone(), opts.verbose));
                }
                None
            }
        };
        if let Some(o) = child.stdout.take() {
            readers.push(read_stderr(o, log.clone(), opts.verbose));
        }
        // From here on, dropping `qemu` kills it.
        let mut qemu = Qemu { child, log, readers };
        let deadline = started + opts.timeout;
        let stream = loop {
            if !qemu.is_running() {
                return Err(qemu.exited("while starting"));
            }
            match UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(LinkError::io(format!("QEMU's socket {} did not come up", sock.display()), e)),
            }
        };
        let transport: Box<dyn Transport> = match (rtt_block, rtt_log) {
            (Some(block), Some(log)) => {
                let gdb = super::gdb::GdbClient::new(stream, opts.timeout.min(Duration::from_secs(10))).map_err(
                    |e| match e {
                        super::gdb::GdbError::Closed => qemu.exited("while attaching to its gdbstub"),
                        e => e.into(),
                    },
                )?;
                let left = deadline.saturating_duration_since(Instant::now());
                match super::gdb_rtt::GdbRtt::attach(gdb, block, Box::new(log), left) {
                    Ok(t) => Box::new(t),
                    Err(super::link::TransportError::Closed) => {
                        return Err(qemu.exited("while waiting for the RTT control block"))
                    }
                    Err(super::link::TransportError::Link(e)) => return Err(e),
                }
            }
            _ => Box::new(super::uart::UartSocket::new(stream)),
        };
        let info = DeviceInfoOwned {
            protocol: 0,
            firmware: String::new(),
            board: String::new(),
            core: String::new(),
            clock_hz: 0,
            counter: releq_common::protocol::CounterUnit::Instructions,
            arena_bytes: 0,
            max_frame: 0,
            model: releq_common::protocol::ModelStatus::Absent,
        };
        let mut dev = QemuDevice {
            link: FrameLink::new(transport),
            timeout: opts.timeout,
            info,
            elf,
            startup: Duration::ZERO,
            qemu,
            _dir: dir,
        };
        dev.info = dev.info()?;
        dev.startup = started.elapsed();
        Ok(dev)
    }

    /// The answer to the handshake.
    pub fn handshake(&self) -> &DeviceInfoOwned {
        &self.info
    }

    /// The firmware ELF QEMU runs.
    pub fn elf(&self) -> &Path {
        &self.elf
    }

    /// Wall time from starting QEMU to the end of the handshake.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The last lines of QEMU's stderr and of the decoded firmware log.
    pub fn log_tail(&self) -> String {
        self.qemu.tail()
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.qemu.child.id()
    }

    /// Change the deadline of later requests.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Send raw bytes (for tests: garbage must get an error frame) and wait
    /// for one response.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<Reply, LinkError> {
        self.link.exchange(bytes, "raw bytes", self.timeout, &mut self.qemu)
    }

    /// Send one request and wait for its response.
    pub fn request(&mut self, request: &Request<'_>) -> Result<Reply, LinkError> {
        self.link.request(request, self.timeout, &mut self.qemu)
    }
}

impl super::framed::Requester for QemuDevice {
    fn request(&mut self, request: &Request<'_>) -> Result<Reply, LinkError> {
        QemuDevice::request(self, request)
    }
}
