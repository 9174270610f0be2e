//! [`AnyDevice`]: the device a board is reached by, QEMU or a probe, as one
//! type (what the commands that take `--board` start).

use super::framed::Requester;
use super::probe::{ProbeDevice, ProbeOptions, UsbProbes};
use super::{LinkError, QemuDevice, QemuOptions, Reply};
use crate::boards::Board;
use releq_common::protocol::Request;

/// An emulated board under QEMU, or a real one through a probe.
pub enum AnyDevice {
    /// Under QEMU (boxed, as the probe: both are a few hundred bytes).
    Qemu(Box<QemuDevice>),
    /// Through a debug probe.
    Probe(Box<ProbeDevice>),
}

impl AnyDevice {
    /// Start `board` with the model blob file `blob`: under QEMU when it is
    /// emulated, else flashed through the probe `probe` (`VID:PID[:SERIAL]`,
    /// or the only one attached) with `opts`' firmware, timeout and verbosity.
    pub fn start(
        board: &Board,
        blob: Option<&std::path::Path>,
        opts: &QemuOptions,
        probe: Option<&str>,
    ) -> Result<AnyDevice, LinkError> {
        if board.emulated {
            if probe.is_some() {
                return Err(LinkError::Board {
                    board: board.name.clone(),
                    reason: "it runs under QEMU: --probe is for real boards".into(),
                });
            }
            return Ok(AnyDevice::Qemu(Box::new(QemuDevice::start(board, blob, opts)?)));
        }
        let popts = ProbeOptions {
            probe: probe.map(Into::into),
            firmware: opts.firmware.clone(),
            timeout: opts.timeout,
            verbose: opts.verbose,
        };
        Ok(AnyDevice::Probe(Box::new(ProbeDevice::start(&UsbProbes::new(), board, blob, &popts)?)))
    }
}

impl Requester for AnyDevice {
    fn request(&mut self, request: &Request<'_>) -> Result<Reply, LinkError> {
        match self {
            AnyDevice::Qemu(d) => d.request(request),
            AnyDevice::Probe(d) => d.request(request),
        }
    }
}
