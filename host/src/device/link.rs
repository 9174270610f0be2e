//! Frames over a byte transport: the request/response exchange every link
//! shares (the QEMU UART socket, RTT through QEMU's gdbstub, later a probe).
//!
//! A [`Transport`] moves raw bytes and nothing else; [`FrameLink`] encodes a
//! request into one COBS/postcard frame, sends it, feeds the answer's bytes
//! to a [`FrameReader`] until a whole frame has arrived, and enforces the
//! deadline. After a timeout the link is desynced (a late answer could be
//! taken for the next one's) and refuses further requests. What "the other
//! end went away" means is the [`Peer`]'s business (QEMU exited, with its
//! last output).

use super::{LinkError, Reply};
use releq_common::protocol::{encode_frame, FrameError, FrameReader, Push, Request, Response, MAX_FRAME};
use std::time::{Duration, Instant};

/// Why a transport operation failed.
#[derive(Debug)]
pub enum TransportError {
    /// The other end closed the connection (the emulator or probe is gone).
    Closed,
    /// Any other failure, already a [`LinkError`] that says what to do.
    Link(LinkError),
}

impl From<LinkError> for TransportError {
    fn from(e: LinkError) -> Self {
        TransportError::Link(e)
    }
}

/// Moves bytes to and from the device.
pub trait Transport: Send {
    /// Send all of `bytes`, failing after `deadline`.
    fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), TransportError>;
    /// Wait until some bytes arrive or `deadline` passes; returns how many
    /// were put in `buf` (0: the deadline passed with nothing).
    fn recv(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, TransportError>;
    /// Throw away whatever has arrived and not been read (a late answer).
    fn discard(&mut self) -> Result<(), TransportError>;
}

/// What is at the other end of the transport, for error messages.
pub trait Peer {
    /// Is it still running?
    fn is_running(&mut self) -> bool;
    /// The error for "it is gone", `when` saying what the host was doing.
    fn exited(&mut self, when: String) -> LinkError;
}

/// The name of a request, for messages.
pub fn request_name(request: &Request<'_>) -> &'static str {
    match request {
        Request::Info { .. } => "Info",
        Request::Run { .. } => "Run",
        Request::TimeLayer { .. } => "TimeLayer",
        Request::Stats => "Stats",
    }
}

/// Encode a request into one frame, or say how large it would be.
pub fn encode_request(request: &Request<'_>) -> Result<Vec<u8>, LinkError> {
    let mut buf = vec![0u8; MAX_FRAME];
    match encode_frame(request, &mut buf) {
        Ok(frame) => {
            let len = frame.len();
            buf.truncate(len);
            Ok(buf)
        }
        Err(_) => {
            // How large it is, for the message.
            let mut size = MAX_FRAME * 2;
            let bytes = loop {
                if let Ok(frame) = encode_frame(request, &mut vec![0u8; size]) {
                    break frame.len();
                }
                size *= 2;
            };
            Err(LinkError::RequestTooLarge { request: request_name(request), bytes, max: MAX_FRAME })
        }
    }
}

/// Request/response frames over a [`Transport`].
pub struct FrameLink<T> {
    transport: T,
    reader: Box<FrameReader<MAX_FRAME>>,
    /// The request that timed out, if one did.
    timed_out: Option<&'static str>,
}

impl<T: Transport> FrameLink<T> {
    /// A link over `transport`.
    pub fn new(transport: T) -> Self {
        Self { transport, reader: Box::new(FrameReader::new()), timed_out: None }
    }

    /// The transport underneath.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Send one request and wait up to `timeout` for its response.
    pub fn request(
        &mut self,
        request: &Request<'_>,
        timeout: Duration,
        peer: &mut dyn Peer,
    ) -> Result<Reply, LinkError> {
        let bytes = encode_request(request)?;
        self.exchange(&bytes, request_name(request), timeout, peer)
    }

    /// Send raw bytes (already framed, or garbage) and wait for one response.
    pub fn exchange(
        &mut self,
        bytes: &[u8],
        name: &'static str,
        timeout: Duration,
        peer: &mut dyn Peer,
    ) -> Result<Reply, LinkError> {
        if let Some(request) = self.timed_out {
            return Err(LinkError::Desynced { request });
        }
        let gone = |e: TransportError, peer: &mut dyn Peer, when: String| match e {
            TransportError::Closed => peer.exited(when),
            TransportError::Link(e) if peer.is_running() => e,
            TransportError::Link(_) => peer.exited(when),
        };
        if let Err(e) = self.transport.discard() {
            return Err(gone(e, peer, format!("before sending {name}")));
        }
        *self.reader = FrameReader::new();
        let deadline = Instant::now() + timeout;
        if let Err(e) = self.transport.send(bytes, deadline) {
            return Err(gone(e, peer, format!("while sending {name}")));
        }
        let mut buf = [0u8; 4096];
        loop {
            if Instant::now() >= deadline {
                if !peer.is_running() {
                    return Err(peer.exited(format!("while waiting for the answer to {name}")));
                }
                self.timed_out = Some(name);
                return Err(LinkError::Timeout { request: name, after: timeout });
            }
            let n = match self.transport.recv(&mut buf, deadline) {
                Ok(n) => n,
                Err(e) => return Err(gone(e, peer, format!("while waiting for the answer to {name}"))),
            };
            for &b in &buf[..n] {
                match self.reader.push(b) {
                    Push::Pending => {}
                    Push::Overflow => return Err(LinkError::Frame(FrameError::Overflow)),
                    Push::Frame(len) => {
                        let response: Response<'_> = self.reader.take(len)?;
                        return Ok(Reply::from(&response));
                    }
                }
            }
        }
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), TransportError> {
        (**self).send(bytes, deadline)
    }
    fn recv(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, TransportError> {
        (**self).recv(buf, deadline)
    }
    fn discard(&mut self) -> Result<(), TransportError> {
        (**self).discard()
    }
}
