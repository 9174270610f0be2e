//! [`AnyDevice`]: the device a board is reached by, QEMU or a probe, as one
//! type (what the commands that take `--board` start).

use super::framed::Requester;
use super::probe::ProbeDevice;
use super::{LinkError, QemuDevice, Reply};
use releq_common::protocol::Request;

/// An emulated board under QEMU, or a real one through a probe.
pub enum AnyDevice {
    /// Under QEMU (boxed, as the probe: both are a few hundred bytes).
    Qemu(Box<QemuDevice>),
    /// Through a debug probe.
    Probe(Box<ProbeDevice>),
}

impl Requester for AnyDevice {
    fn request(&mut self, request: &Request<'_>) -> Result<Reply, LinkError> {
        match self {
            AnyDevice::Qemu(d) => d.request(request),
            AnyDevice::Probe(d) => d.request(request),
        }
    }
}
