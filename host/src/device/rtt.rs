//! The host side of SEGGER RTT: the control block and its ring buffers in
//! the target's RAM, read and written through any [`Memory`] (QEMU's gdbstub
//! here, a debug probe later).
//!
//! Layout (rtt-target 0.6, the same as SEGGER's on a 32-bit target): a
//! 24-byte header, `"SEGGER RTT\0..."` (16 bytes), the number of up and of
//! down channels (u32 each), then 24 bytes per channel, up channels first:
//! name pointer, buffer pointer, size, write offset, read offset, flags. The
//! target writes an up ring and moves its write offset; the host reads and
//! moves the read offset. The other way round for a down ring. A ring of
//! `size` bytes holds at most `size - 1`.
//!
//! The firmware's channels (`firmware/src/rtt.rs`): up 0 `defmt` (the log),
//! up 1 `releq` (response frames), down 0 `releq` (request frames).

use super::LinkError;
use std::path::Path;

/// The control block's id, as the target writes it (last, once its channels
/// are set up).
pub const ID: &[u8; 16] = b"SEGGER RTT\0\0\0\0\0\0";
/// The ELF symbol of the control block.
pub const SYMBOL: &str = "_SEGGER_RTT";
/// Bytes of the header.
const HEADER: u32 = 24;
/// Bytes of one channel descriptor.
const CHANNEL: u32 = 24;
/// Up channel of the defmt log.
pub const UP_LOG: usize = 0;
/// Up channel of response frames.
pub const UP_FRAMES: usize = 1;
/// Down channel of request frames.
pub const DOWN_FRAMES: usize = 0;

/// Target memory, as a probe or a gdbstub sees it (the target halted or not,
/// as the implementation needs).
pub trait Memory {
    /// Read `len` bytes at `addr`.
    fn read(&mut self, addr: u32, len: usize) -> Result<Vec<u8>, LinkError>;
    /// Write `data` at `addr`.
    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), LinkError>;
}

/// The address of `_SEGGER_RTT` in an ELF file.
pub fn find_control_block(elf_path: &Path, elf: &[u8]) -> Result<u32, LinkError> {
    use object::{Object, ObjectSymbol};
    let bad = |reason: String| LinkError::Rtt { reason: format!("{}: {reason}", elf_path.display()) };
    let file = object::File::parse(elf).map_err(|e| bad(format!("not an ELF file the host can read: {e}")))?;
    let sym = file.symbols().find(|s| s.name() == Ok(SYMBOL)).ok_or_else(|| {
        bad(format!(
            "no `{SYMBOL}` symbol: this firmware has no RTT control block (was it built for a board whose link is \"rtt\"?)"
        ))
    })?;
    u32::try_from(sym.address()).map_err(|_| bad(format!("`{SYMBOL}` at {:#x} is past 32 bits", sym.address())))
}

/// One channel's descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    /// Where the descriptor is (its write offset is at +12, read at +16).
    pub desc: u32,
    /// The ring's first byte.
    pub buffer: u32,
    /// The ring's size.
    pub size: u32,
    /// Where the writer writes next.
    pub write: u32,
    /// Where the reader reads next.
    pub read: u32,
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A snapshot of the control block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlBlock {
    /// Its address.
    pub address: u32,
    /// Up channels (target to host).
    pub up: Vec<Channel>,
    /// Down channels (host to target).
    pub down: Vec<Channel>,
}

/// Why the bytes at the control block's address are not (yet) a usable
/// control block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockState {
    /// No id yet: the target has not run `rtt_init!`.
    NotInitialised,
    /// An id, but a field is wrong.
    Bad(String),
}

impl ControlBlock {
    /// Bytes to read for a block with `up` and `down` channels.
    pub fn len(up: usize, down: usize) -> usize {
        (HEADER + CHANNEL * (up + down) as u32) as usize
    }

    /// Decode `bytes` read at `address` (at least [`Self::len`] for the
    /// channel counts it declares; `need_up`/`need_down` are the channels the
    /// caller uses, checked to be set up).
    pub fn parse(address: u32, bytes: &[u8], need_up: usize, need_down: usize) -> Result<Self, BlockState> {
        if bytes.len() < HEADER as usize || bytes[..16] != ID[..] {
            return Err(BlockState::NotInitialised);
        }
        let (n_up, n_down) = (word(bytes, 16) as usize, word(bytes, 20) as usize);
        if n_up < need_up || n_down < need_down || n_up > 16 || n_down > 16 {
            return Err(BlockState::Bad(format!(
                "the control block at {address:#010x} declares {n_up} up and {n_down} down channels; the releq firmware has {need_up} and {need_down}"
            )));
        }
        if bytes.len() < Self::len(n_up, n_down) {
            return Err(BlockState::Bad(format!("short read of the control block at {address:#010x}")));
        }
        let chan = |i: usize, dir: &str, n: usize| -> Result<Channel, BlockState> {
            let at = HEADER as usize + CHANNEL as usize * i;
            let c = Channel {
                desc: address + at as u32,
                buffer: word(bytes, at + 4),
                size: word(bytes, at + 8),
                write: word(bytes, at + 12),
                read: word(bytes, at + 16),
            };
            let problem = if c.buffer == 0 {
                Some("its buffer pointer is null (not set up)".to_string())
            } else if c.size < 2 || c.buffer.checked_add(c.size).is_none() {
                Some(format!("its size {} is not a usable ring at {:#010x}", c.size, c.buffer))
            } else if c.write >= c.size || c.read >= c.size {
                Some(format!("its offsets (write {}, read {}) are outside its {} bytes", c.write, c.read, c.size))
            } else {
                None
            };
            match problem {
                Some(p) => Err(BlockState::Bad(format!("RTT {dir} channel {n} (descriptor at {:#010x}): {p}", c.desc))),
                None => Ok(c),
            }
        };
        let up = (0..need_up).map(|i| chan(i, "up", i)).collect::<Result<Vec<_>, _>>()?;
        let down = (0..need_down).map(|i| chan(n_up + i, "down", i)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { address, up, down })
    }

    /// Read and decode the block at `address`.
    pub fn read(mem: &mut dyn Memory, address: u32, need_up: usize, need_down: usize) -> Result<Self, BlockState> {
        match mem.read(address, Self::len(need_up, need_down)) {
            Ok(bytes) => Self::parse(address, &bytes, need_up, need_down),
            Err(e) => Err(BlockState::Bad(e.to_string())),
        }
    }
}

/// Take what the target has written to up channel `c` (its read offset moved
/// past it). Returns the bytes, in order, at most `max`.
pub fn read_up(mem: &mut dyn Memory, c: &Channel, max: usize) -> Result<Vec<u8>, LinkError> {
    let (w, mut r) = (c.write, c.read);
    let mut out = Vec::new();
    while r != w && out.len() < max {
        let end = if w > r { w } else { c.size };
        let n = ((end - r) as usize).min(max - out.len());
        out.extend(mem.read(c.buffer + r, n)?);
        r = (r + n as u32) % c.size;
    }
    if r != c.read {
        mem.write(c.desc + 16, &r.to_le_bytes())?;
    }
    Ok(out)
}

/// Drop everything in up channel `c` (read offset to write offset).
pub fn skip_up(mem: &mut dyn Memory, c: &Channel) -> Result<(), LinkError> {
    if c.read != c.write {
        mem.write(c.desc + 16, &c.write.to_le_bytes())?;
    }
    Ok(())
}

/// Put as much of `data` as fits into down channel `c` (its write offset
/// moved past it); returns how many bytes were taken.
pub fn write_down(mem: &mut dyn Memory, c: &Channel, data: &[u8]) -> Result<usize, LinkError> {
    let (mut w, r) = (c.write, c.read);
    let mut done = 0;
    while done < data.len() {
        // Contiguous free space from w: up to r - 1, or to the end (but not
        // onto r when r is 0).
        let room = if r > w {
            r - w - 1
        } else if r == 0 {
            c.size - w - 1
        } else {
            c.size - w
        } as usize;
        if room == 0 {
            break;
        }
        let n = room.min(data.len() - done);
        mem.write(c.buffer + w, &data[done..done + n])?;
        done += n;
        w = (w + n as u32) % c.size;
    }
    if done > 0 {
        mem.write(c.desc + 12, &w.to_le_bytes())?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 64 KiB of fake RAM at 0x2000_0000.
    struct Ram(Vec<u8>);

    const BASE: u32 = 0x2000_0000;

    impl Memory for Ram {
        fn read(&mut self, addr: u32, len: usize) -> Result<Vec<u8>, LinkError> {
            let at = (addr - BASE) as usize;
            Ok(self.0[at..at + len].to_vec())
        }
        fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), LinkError> {
            let at = (addr - BASE) as usize;
            self.0[at..at + data.len()].copy_from_slice(data);
            Ok(())
        }
    }

    impl Ram {
        fn put(&mut self, addr: u32, v: u32) {
            self.write(addr, &v.to_le_bytes()).unwrap();
        }
        fn get(&mut self, addr: u32) -> u32 {
            word(&Memory::read(self, addr, 4).unwrap(), 0)
        }
    }

    /// A block like the firmware's: up 0 (64 bytes), up 1 (16), down 0 (8).
    fn ram() -> Ram {
        let mut m = Ram(vec![0; 0x1_0000]);
        m.write(BASE, ID).unwrap();
        m.put(BASE + 16, 2);
        m.put(BASE + 20, 1);
        for (i, (buf, size)) in [(0x1000, 64), (0x2000, 16), (0x3000, 8)].into_iter().enumerate() {
            let d = BASE + 24 + 24 * i as u32;
            m.put(d + 4, BASE + buf);
            m.put(d + 8, size);
        }
        m
    }

    fn block(m: &mut Ram) -> ControlBlock {
        ControlBlock::read(m, BASE, 2, 1).unwrap()
    }

    #[test]
    fn reads_an_up_ring_across_its_end() {
        let mut m = ram();
        let c = block(&mut m).up[1];
        assert_eq!((c.buffer, c.size), (BASE + 0x2000, 16));
        // The target wrote 10 bytes from offset 12: 4 at the end, 6 at the start.
        for i in 0..16u8 {
            m.0[0x2000 + i as usize] = i;
        }
        m.put(c.desc + 16, 12);
        m.put(c.desc + 12, 6);
        let c = block(&mut m).up[1];
        assert_eq!(read_up(&mut m, &c, 100).unwrap(), vec![12, 13, 14, 15, 0, 1, 2, 3, 4, 5]);
        assert_eq!(m.get(c.desc + 16), 6, "read offset moved to the write offset");
        // Nothing new: nothing read, nothing written.
        let c = block(&mut m).up[1];
        assert!(read_up(&mut m, &c, 100).unwrap().is_empty());
        // `max` limits a read.
        m.put(c.desc + 12, 10);
        let c = block(&mut m).up[1];
        assert_eq!(read_up(&mut m, &c, 3).unwrap(), vec![6, 7, 8]);
        assert_eq!(m.get(c.desc + 16), 9);
        let c = block(&mut m).up[1];
        skip_up(&mut m, &c).unwrap();
        assert_eq!(m.get(c.desc + 16), 10);
    }

    #[test]
    fn writes_a_down_ring_without_overrunning_the_reader() {
        let mut m = ram();
        let c = block(&mut m).down[0];
        assert_eq!(c.size, 8);
        // Empty ring: 7 bytes fit (size - 1).
        assert_eq!(write_down(&mut m, &c, b"abcdefghij").unwrap(), 7);
        assert_eq!(&m.0[0x3000..0x3007], b"abcdefg");
        assert_eq!(m.get(c.desc + 12), 7);
        // The target reads 5; now 5 more fit, wrapping.
        m.put(c.desc + 16, 5);
        let c = block(&mut m).down[0];
        assert_eq!(write_down(&mut m, &c, b"123456789").unwrap(), 5);
        assert_eq!(&m.0[0x3007..0x3008], b"1");
        assert_eq!(&m.0[0x3000..0x3004], b"2345");
        assert_eq!(m.get(c.desc + 12), 4);
        let c = block(&mut m).down[0];
        assert_eq!(write_down(&mut m, &c, b"x").unwrap(), 0, "full");
    }

    #[test]
    fn bad_or_missing_blocks_are_named() {
        let mut m = Ram(vec![0; 0x1_0000]);
        assert_eq!(ControlBlock::read(&mut m, BASE, 2, 1), Err(BlockState::NotInitialised));
        let mut m = ram();
        m.put(BASE + 16, 1);
        let Err(BlockState::Bad(e)) = ControlBlock::read(&mut m, BASE, 2, 1) else { panic!() };
        assert!(e.contains("1 up"), "{e}");
        let mut m = ram();
        m.put(BASE + 24 + 24 + 12, 99); // up 1's write offset past its size
        let Err(BlockState::Bad(e)) = ControlBlock::read(&mut m, BASE, 2, 1) else { panic!() };
        assert!(e.contains("up channel 1") && e.contains("write 99"), "{e}");
        let mut m = ram();
        m.put(BASE + 24 + 48 + 4, 0); // down 0 not set up
        let Err(BlockState::Bad(e)) = ControlBlock::read(&mut m, BASE, 2, 1) else { panic!() };
        assert!(e.contains("down channel 0") && e.contains("null"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_an_elf_is_named() {
        let e = find_control_block(Path::new("x.elf"), b"not an elf").unwrap_err().to_string();
        assert!(e.contains("x.elf") && e.contains("ELF"), "{e}");
    }
}
