//! The `rtt` link under QEMU: RTT's rings read and written through QEMU's
//! gdbstub ([`GdbClient`]), the way a probe would on a board.
//!
//! Every access halts the guest (the stub is all-stop), does its `m`/`M`
//! packets and resumes it. The polling, the rings and the defmt log are
//! [`RttLink`]'s, shared with the probe backend; this module only says how
//! to halt, resume and reach memory through the stub.

use super::gdb::{GdbClient, GdbError};
use super::link::TransportError;
use super::rtt::Memory;
use super::rtt_link::{RttLink, RttTarget};
use super::LinkError;

/// RTT over a gdbstub.
pub type GdbRtt = RttLink<GdbClient>;

impl From<GdbError> for TransportError {
    fn from(e: GdbError) -> Self {
        match e {
            GdbError::Closed => TransportError::Closed,
            e => TransportError::Link(e.into()),
        }
    }
}

impl From<GdbError> for LinkError {
    fn from(e: GdbError) -> Self {
        match e {
            GdbError::Timeout { what, after } => {
                LinkError::NotAnswering { what: format!("QEMU's gdbstub ({what})"), after }
            }
            e => LinkError::Rtt { reason: e.to_string() },
        }
    }
}

impl Memory for GdbClient {
    fn read(&mut self, addr: u32, len: usize) -> Result<Vec<u8>, LinkError> {
        Ok(self.read_memory(addr, len)?)
    }
    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), LinkError> {
        Ok(self.write_memory(addr, data)?)
    }
}

impl RttTarget for GdbClient {
    fn halt(&mut self) -> Result<(), TransportError> {
        Ok(GdbClient::halt(self)?)
    }
    fn resume(&mut self) -> Result<(), TransportError> {
        Ok(GdbClient::resume(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::gdb::{from_hex, packet, to_hex};
    use crate::device::link::Transport;
    use crate::device::rtt;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// A fake gdbstub over 64 KiB of RAM at 0x2000_0000: acks, `?`, `m`,
    /// `M`, `c` and 0x03 (ignored when `deaf`).
    fn fake_stub(ram: Arc<Mutex<Vec<u8>>>, deaf: bool) -> UnixStream {
        let (client, mut s) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match buf.first() {
                        Some(b'+') => {
                            buf.remove(0);
                        }
                        Some(0x03) => {
                            buf.remove(0);
                            if !deaf {
                                let _ = s.write_all(&packet(b"T02thread:01;"));
                            }
                        }
                        Some(b'$') => {
                            let Some(h) = buf.iter().position(|&b| b == b'#') else { break };
                            if buf.len() < h + 3 {
                                break;
                            }
                            let data: Vec<u8> = buf[1..h].to_vec();
                            buf.drain(..h + 3);
                            let _ = s.write_all(b"+");
                            let text = String::from_utf8_lossy(&data).into_owned();
                            let at = |a: &str| u32::from_str_radix(a, 16).unwrap() as usize - 0x2000_0000;
                            let reply = if text == "?" {
                                Some(b"T05thread:01;".to_vec())
                            } else if text == "c" {
                                None
                            } else if let Some(rest) = text.strip_prefix('m') {
                                let (a, l) = rest.split_once(',').unwrap();
                                let (a, l) = (at(a), usize::from_str_radix(l, 16).unwrap());
                                Some(to_hex(&ram.lock().unwrap()[a..a + l]).into_bytes())
                            } else if let Some(rest) = text.strip_prefix('M') {
                                let (head, hex) = rest.split_once(':').unwrap();
                                let a = at(head.split_once(',').unwrap().0);
                                let bytes = from_hex(hex.as_bytes()).unwrap();
                                ram.lock().unwrap()[a..a + bytes.len()].copy_from_slice(&bytes);
                                Some(b"OK".to_vec())
                            } else {
                                Some(Vec::new())
                            };
                            if let Some(r) = reply {
                                let _ = s.write_all(&packet(&r));
                            }
                        }
                        Some(_) => {
                            buf.remove(0);
                        }
                        None => break,
                    }
                }
            }
        });
        client
    }

    fn attach(ram: Vec<u8>, deaf: bool, timeout: Duration) -> Result<GdbRtt, TransportError> {
        let stream = fake_stub(Arc::new(Mutex::new(ram)), deaf);
        let gdb = GdbClient::new(stream, Duration::from_millis(300)).unwrap();
        GdbRtt::attach(gdb, 0x2000_0000, Box::new(std::io::sink()), timeout)
    }

    fn message(r: Result<GdbRtt, TransportError>) -> String {
        match r {
            Err(TransportError::Link(e)) => e.to_string(),
            Err(TransportError::Closed) => "closed".into(),
            Ok(_) => "attached".into(),
        }
    }

    /// A control block like the firmware's, at 0x2000_0000.
    fn good_ram() -> Vec<u8> {
        let mut ram = vec![0u8; 0x1_0000];
        ram[..16].copy_from_slice(rtt::ID);
        ram[16..20].copy_from_slice(&2u32.to_le_bytes());
        ram[20..24].copy_from_slice(&1u32.to_le_bytes());
        for (i, buf) in [0x1000u32, 0x2000, 0x3000].into_iter().enumerate() {
            let d = 24 + 24 * i;
            ram[d + 4..d + 8].copy_from_slice(&(0x2000_0000 + buf).to_le_bytes());
            ram[d + 8..d + 12].copy_from_slice(&256u32.to_le_bytes());
        }
        ram
    }

    #[test]
    fn a_block_never_set_up_times_out_naming_its_address() {
        let e = message(attach(vec![0; 0x1_0000], false, Duration::from_millis(100)));
        assert!(e.contains("did not set up its RTT control block at 0x20000000") && e.contains("_SEGGER_RTT"), "{e}");
    }

    #[test]
    fn a_bad_block_names_the_channel() {
        let mut ram = good_ram();
        ram[24 + 48 + 4..24 + 48 + 8].copy_from_slice(&0u32.to_le_bytes()); // down 0 buffer null
        let e = message(attach(ram, false, Duration::from_secs(5)));
        assert!(e.contains("down channel 0") && e.contains("null"), "{e}");
    }

    #[test]
    fn a_stub_that_stops_answering_is_reported() {
        let stream = fake_stub(Arc::new(Mutex::new(good_ram())), true);
        let gdb = GdbClient::new(stream, Duration::from_millis(200)).unwrap();
        let mut t = GdbRtt::attach(gdb, 0x2000_0000, Box::new(std::io::sink()), Duration::from_secs(5)).ok().unwrap();
        // Running now; the deaf stub never answers the interrupt.
        let e = match t.recv(&mut [0u8; 16], Instant::now() + Duration::from_secs(5)) {
            Err(TransportError::Link(e)) => e,
            other => panic!("{:?}", other.map(|_| ()).err()),
        };
        assert!(matches!(e, LinkError::NotAnswering { .. }), "{e}");
        assert!(e.to_string().contains("gdbstub") && e.to_string().contains("0x03"), "{e}");
    }

    #[test]
    fn frames_go_down_and_come_up_through_the_rings() {
        let ram = Arc::new(Mutex::new(good_ram()));
        let stream = fake_stub(ram.clone(), false);
        let gdb = GdbClient::new(stream, Duration::from_secs(5)).unwrap();
        let mut t = GdbRtt::attach(gdb, 0x2000_0000, Box::new(std::io::sink()), Duration::from_secs(5)).ok().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        t.send(b"hello", deadline).ok().unwrap();
        {
            let r = ram.lock().unwrap();
            assert_eq!(&r[0x3000..0x3005], b"hello");
            assert_eq!(u32::from_le_bytes(r[24 + 48 + 12..24 + 48 + 16].try_into().unwrap()), 5);
        }
        // The "target" answers on up 1.
        {
            let mut r = ram.lock().unwrap();
            r[0x2000..0x2003].copy_from_slice(b"abc");
            r[24 + 24 + 12..24 + 24 + 16].copy_from_slice(&3u32.to_le_bytes());
        }
        let mut buf = [0u8; 16];
        let n = t.recv(&mut buf, deadline).ok().unwrap();
        assert_eq!(&buf[..n], b"abc");
        let r = ram.lock().unwrap();
        assert_eq!(u32::from_le_bytes(r[24 + 24 + 16..24 + 24 + 20].try_into().unwrap()), 3, "read offset moved");
    }
}
