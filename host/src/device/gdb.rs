//! A minimal client of the GDB remote serial protocol, for QEMU's gdbstub
//! (`-gdb unix:PATH,server=on,wait=off`): halt, resume, read and write
//! memory. That is all the RTT transport needs; the `m`/`M` packets are the
//! same memory accesses a debug probe makes.
//!
//! No maintained crate implements the client side (`gdbstub` and
//! `gdb-protocol` are servers; the rest are interactive front ends), and the
//! part needed is small: packets `$data#checksum` acknowledged with `+`
//! (QEMU 7.2 has no `QStartNoAckMode`), `c` to resume, the byte 0x03 to
//! interrupt (answered by a stop reply), `m addr,len` answered in hex,
//! `M addr,len:hex` answered `OK`, errors `Enn`.
//!
//! QEMU's stub is all-stop (it offers no non-stop mode): the guest is halted
//! during every access and resumed after it. With `-icount` the virtual clock
//! stands still while the guest is halted, so the device's counts do not
//! change.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Largest memory access in one packet. QEMU 7.2 says `PacketSize=1000`
/// (hex: 4096 bytes); a 1 KiB read answers 2 KiB of hex.
pub const MAX_ACCESS: usize = 1024;

/// Why a gdbstub exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// The stub closed the connection (QEMU exited).
    #[error("the gdbstub closed the connection")]
    Closed,
    /// No answer in time.
    #[error("the gdbstub did not answer {what} within {} s", after.as_secs_f64())]
    Timeout {
        /// What was asked.
        what: String,
        /// How long the host waited.
        after: Duration,
    },
    /// The stub answered an error or something unexpected.
    #[error("the gdbstub answered {answer:?} to {what}")]
    Refused {
        /// What was asked.
        what: String,
        /// The answer.
        answer: String,
    },
    /// A socket error.
    #[error("gdbstub socket: {0}")]
    Io(#[from] std::io::Error),
}

/// The checksum of a packet's data: the sum of its bytes modulo 256.
pub fn checksum(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

/// `$data#xx`.
pub fn packet(data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(data.len() + 4);
    p.push(b'$');
    p.extend_from_slice(data);
    p.extend_from_slice(format!("#{:02x}", checksum(data)).as_bytes());
    p
}

/// Bytes as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex to bytes; `None` on an odd length or a non-hex digit.
pub fn from_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

/// A connection to a gdbstub.
pub struct GdbClient {
    stream: UnixStream,
    /// Received bytes not yet parsed.
    buf: Vec<u8>,
    /// Is the guest running (after `c`, before a stop reply)?
    running: bool,
    /// Deadline of one exchange.
    timeout: Duration,
}

impl GdbClient {
    /// Connect to the stub at the unix socket `path` (see [`Self::new`]).
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, GdbError> {
        Self::new(UnixStream::connect(path)?, timeout)
    }

    /// Talk to the stub on a connected socket, the guest halted (QEMU started
    /// with `-S`, or halted by the connection itself). `timeout` bounds
    /// every exchange.
    pub fn new(stream: UnixStream, timeout: Duration) -> Result<Self, GdbError> {
        let mut c = Self { stream, buf: Vec::new(), running: false, timeout };
        // `?` asks why the guest stopped: a stop reply proves the stub answers.
        let answer = c.command(b"?", "the status query `?`")?;
        if !matches!(answer.first(), Some(b'T' | b'S')) {
            return Err(GdbError::Refused { what: "`?`".into(), answer: String::from_utf8_lossy(&answer).into() });
        }
        Ok(c)
    }

    /// Is the guest running?
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Send one packet and wait for its `+`.
    fn send_packet(&mut self, data: &[u8], what: &str) -> Result<(), GdbError> {
        let p = packet(data);
        for _ in 0..3 {
            self.stream.write_all(&p).map_err(closed)?;
            match self.read_ack(what)? {
                b'+' => return Ok(()),
                _ => continue, // '-': send again
            }
        }
        Err(GdbError::Refused { what: what.into(), answer: "three NAKs".into() })
    }

    /// Fill `buf` with more bytes from the stub before `deadline`.
    fn fill(&mut self, deadline: Instant, what: &str) -> Result<(), GdbError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(GdbError::Timeout { what: what.into(), after: self.timeout });
        }
        self.stream.set_read_timeout(Some(deadline - now))?;
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(GdbError::Closed),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                Err(GdbError::Timeout { what: what.into(), after: self.timeout })
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(closed(e)),
        }
    }

    /// The next `+` or `-`.
    fn read_ack(&mut self, what: &str) -> Result<u8, GdbError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'+' || b == b'-') {
                let b = self.buf[i];
                self.buf.drain(..=i);
                return Ok(b);
            }
            self.fill(deadline, what)?;
        }
    }

    /// The next packet's data (acknowledged; a bad checksum is NAKed and the
    /// packet awaited again).
    fn recv_packet(&mut self, what: &str) -> Result<Vec<u8>, GdbError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(start) = self.buf.iter().position(|&b| b == b'$') {
                if let Some(hash) = self.buf[start..].iter().position(|&b| b == b'#').map(|h| start + h) {
                    if self.buf.len() >= hash + 3 {
                        let data = self.buf[start + 1..hash].to_vec();
                        let sum = std::str::from_utf8(&self.buf[hash + 1..hash + 3])
                            .ok()
                            .and_then(|s| u8::from_str_radix(s, 16).ok());
                        self.buf.drain(..hash + 3);
                        if sum == Some(checksum(&data)) {
                            self.stream.write_all(b"+").map_err(closed)?;
                            return Ok(data);
                        }
                        self.stream.write_all(b"-").map_err(closed)?;
                        continue;
                    }
                }
            }
            self.fill(deadline, what)?;
        }
    }

    /// Send a packet and return the answer's data.
    fn command(&mut self, data: &[u8], what: &str) -> Result<Vec<u8>, GdbError> {
        self.send_packet(data, what)?;
        self.recv_packet(what)
    }

    /// Halt the guest (0x03) and wait for the stop reply. No-op if halted.
    pub fn halt(&mut self) -> Result<(), GdbError> {
        if !self.running {
            return Ok(());
        }
        self.stream.write_all(&[0x03]).map_err(closed)?;
        let answer = self.recv_packet("the interrupt (0x03)")?;
        match answer.first() {
            Some(b'T' | b'S') => {
                self.running = false;
                Ok(())
            }
            Some(b'W' | b'X') => Err(GdbError::Closed),
            _ => Err(GdbError::Refused { what: "0x03".into(), answer: String::from_utf8_lossy(&answer).into() }),
        }
    }

    /// Resume the guest (`c`; the stub answers only when it stops again).
    pub fn resume(&mut self) -> Result<(), GdbError> {
        if self.running {
            return Ok(());
        }
        self.send_packet(b"c", "`c`")?;
        self.running = true;
        Ok(())
    }

    /// Read `len` bytes at `addr` (the guest must be halted).
    pub fn read_memory(&mut self, addr: u32, len: usize) -> Result<Vec<u8>, GdbError> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let n = (len - out.len()).min(MAX_ACCESS);
            let at = addr.wrapping_add(out.len() as u32);
            let what = format!("`m{at:x},{n:x}`");
            let answer = self.command(format!("m{at:x},{n:x}").as_bytes(), &what)?;
            match from_hex(&answer) {
                Some(bytes) if bytes.len() == n => out.extend_from_slice(&bytes),
                _ => return Err(GdbError::Refused { what, answer: String::from_utf8_lossy(&answer).into() }),
            }
        }
        Ok(out)
    }

    /// Write `data` at `addr` (the guest must be halted).
    pub fn write_memory(&mut self, addr: u32, data: &[u8]) -> Result<(), GdbError> {
        for (i, chunk) in data.chunks(MAX_ACCESS).enumerate() {
            let at = addr.wrapping_add((i * MAX_ACCESS) as u32);
            let what = format!("`M{at:x},{:x}`", chunk.len());
            let mut p = format!("M{at:x},{:x}:", chunk.len()).into_bytes();
            p.extend_from_slice(to_hex(chunk).as_bytes());
            let answer = self.command(&p, &what)?;
            if answer != b"OK" {
                return Err(GdbError::Refused { what, answer: String::from_utf8_lossy(&answer).into() });
            }
        }
        Ok(())
    }
}

fn closed(e: std::io::Error) -> GdbError {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected => GdbError::Closed,
        _ => GdbError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_and_hex() {
        assert_eq!(packet(b"m20000000,4"), b"$m20000000,4#4f".to_vec());
        assert_eq!(checksum(b"OK"), 0x9a);
        assert_eq!(to_hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(from_hex(b"00AB7f"), Some(vec![0x00, 0xab, 0x7f]));
        assert_eq!(from_hex(b"0"), None);
        assert_eq!(from_hex(b"zz"), None);
    }

    /// A scripted stub on the other end of a socket pair: acks, a NAKed
    /// packet resent, memory read and write, halt and resume.
    /// Read exactly `want` from the client, then send `reply`.
    fn expect(s: &mut UnixStream, want: &[u8], reply: &[u8]) {
        let mut got = vec![0u8; want.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&got));
        s.write_all(reply).unwrap();
    }

    #[test]
    fn talks_to_a_scripted_stub() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gdb.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let stub = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            expect(&mut s, &packet(b"?"), b"+");
            // A corrupt answer first: the client must NAK it.
            s.write_all(b"$T05#00").unwrap();
            expect(&mut s, b"-", &packet(b"T05thread:01;"));
            expect(&mut s, b"+", b"");
            expect(&mut s, &packet(b"m20000000,4"), b"+");
            s.write_all(&packet(b"deadbeef")).unwrap();
            expect(&mut s, b"+", b"");
            expect(&mut s, &packet(b"M20000004,2:0102"), b"-"); // NAK: resend
            expect(&mut s, &packet(b"M20000004,2:0102"), b"+");
            s.write_all(&packet(b"OK")).unwrap();
            expect(&mut s, b"+", b"");
            expect(&mut s, &packet(b"c"), b"+");
            expect(&mut s, &[0x03], &packet(b"T02thread:01;"));
            expect(&mut s, b"+", b"");
            expect(&mut s, &packet(b"m0,1"), b"+");
            s.write_all(&packet(b"E14")).unwrap();
            expect(&mut s, b"+", b"");
        });
        let mut c = GdbClient::connect(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(c.read_memory(0x2000_0000, 4).unwrap(), vec![0xde, 0xad, 0xbe, 0xef]);
        c.write_memory(0x2000_0004, &[1, 2]).unwrap();
        c.resume().unwrap();
        assert!(c.is_running());
        c.halt().unwrap();
        assert!(!c.is_running());
        let e = c.read_memory(0, 1).unwrap_err().to_string();
        assert!(e.contains("E14") && e.contains("m0,1"), "{e}");
        stub.join().unwrap();
    }
}
