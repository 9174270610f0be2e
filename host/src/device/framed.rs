//! The [`Device`] requests in terms of one request/response exchange, shared
//! by every backend (QEMU, a probe): a backend says how to send a request and
//! get its [`Reply`] ([`Requester`]) and gets [`Device`] for free.

use super::{Device, DeviceInfoOwned, DeviceStats, LayerTime, LinkError, Reply, RunOutput};
use releq_common::protocol::{LayerSpec, Request, PROTOCOL_VERSION};

/// Sends one request and waits for its reply.
pub trait Requester {
    /// Send `request` and wait for the reply.
    fn request(&mut self, request: &Request<'_>) -> Result<Reply, LinkError>;
}

/// The error for an answer that is not the one asked for.
pub fn unexpected(reply: Reply, request: &'static str) -> LinkError {
    match reply {
        Reply::Error(e) => LinkError::Device(e),
        other => LinkError::Unexpected { request, got: other.kind() },
    }
}

impl<R: Requester> Device for R {
    fn info(&mut self) -> Result<DeviceInfoOwned, LinkError> {
        match self.request(&Request::Info { protocol: PROTOCOL_VERSION })? {
            Reply::Info(i) => Ok(i),
            other => Err(unexpected(other, "Info")),
        }
    }

    fn run(&mut self, input: &[i8]) -> Result<RunOutput, LinkError> {
        let bytes: Vec<u8> = input.iter().map(|&v| v as u8).collect();
        match self.request(&Request::Run { input: &bytes })? {
            Reply::Run(o) => Ok(o),
            other => Err(unexpected(other, "Run")),
        }
    }

    fn time_layer(&mut self, spec: &LayerSpec, repeat: u16) -> Result<LayerTime, LinkError> {
        match self.request(&Request::TimeLayer { spec: *spec, repeat })? {
            Reply::LayerTime(t) => Ok(t),
            other => Err(unexpected(other, "TimeLayer")),
        }
    }

    fn stats(&mut self) -> Result<DeviceStats, LinkError> {
        match self.request(&Request::Stats)? {
            Reply::Stats(s) => Ok(s),
            other => Err(unexpected(other, "Stats")),
        }
    }
}
