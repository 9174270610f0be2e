//! The `qemu-uart` transport: QEMU's emulated CMSDK UART0, a unix socket on
//! the host (`-chardev socket,...,server=on,wait=on -serial chardev:c0`).

use super::link::{Transport, TransportError};
use super::LinkError;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// The UART's socket.
pub struct UartSocket {
    stream: UnixStream,
}

/// An I/O error that means the other end (QEMU) went away.
fn gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected)
}

fn io(context: &str, e: std::io::Error) -> TransportError {
    if gone(&e) {
        TransportError::Closed
    } else {
        TransportError::Link(LinkError::io(context, e))
    }
}

impl UartSocket {
    /// Wrap a connected socket.
    pub fn new(stream: UnixStream) -> Self {
        Self { stream }
    }
}

impl Transport for UartSocket {
    fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), TransportError> {
        let left = deadline.saturating_duration_since(Instant::now()).max(std::time::Duration::from_millis(1));
        self.stream.set_write_timeout(Some(left)).map_err(|e| io("socket", e))?;
        self.stream.write_all(bytes).map_err(|e| io("sending a request", e))
    }

    fn recv(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, TransportError> {
        let now = Instant::now();
        if now >= deadline {
            return Ok(0);
        }
        self.stream.set_read_timeout(Some(deadline - now)).map_err(|e| io("socket", e))?;
        match self.stream.read(buf) {
            Ok(0) => Err(TransportError::Closed),
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(io("reading an answer", e)),
        }
    }

    fn discard(&mut self) -> Result<(), TransportError> {
        self.stream.set_nonblocking(true).map_err(|e| io("socket", e))?;
        let mut buf = [0u8; 1024];
        while let Ok(n) = self.stream.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        self.stream.set_nonblocking(false).map_err(|e| io("socket", e))
    }
}
