//! Serving the host: read request frames from the link, answer each with
//! exactly one response frame, forever.
//!
//! Bad input never stops the loop: an oversized frame, bad COBS or bad
//! postcard gets [`DeviceError::Frame`], a request the model or the device
//! cannot satisfy its own [`DeviceError`]. With the `hang` feature the device
//! answers the first `Info` (the handshake) and then nothing more, so the
//! host's timeouts can be tested.

use crate::blob::Blob;
use crate::clock::{OutputPin, TimingPin};
use crate::counter::{self, Counter};
use crate::link::Link;
use crate::{board, stack, synth};
use releq_common::protocol::{
    encode_frame, DeviceError, DeviceInfo, FrameError, FrameReader, LayerSpec, LayerTime, ModelStatus, Push, Request,
    Response, RunResult, MAX_FRAME, PROTOCOL_VERSION,
};
use releq_common::runtime::RunError;

/// Everything a request may use.
pub struct State {
    /// The layer counter.
    pub counter: Counter,
    /// The activation arena (`ARENA_BYTES`).
    pub arena: &'static mut [i8],
    /// Parameters of synthetic layers (`SYNTH_BYTES`).
    pub params: &'static mut [u8],
    /// The model found at boot.
    pub blob: Blob,
    /// High for the length of each inference (`Run`), for a logic analyser.
    pub pin: TimingPin,
}

/// Serve requests forever.
pub fn serve(mut link: impl Link, mut state: State) -> ! {
    let mut reader = FrameReader::<MAX_FRAME>::new();
    let mut tx = [0u8; MAX_FRAME];
    let mut rx = [0u8; 64];
    let (mut pos, mut len) = (0, 0);
    loop {
        if pos == len {
            len = link.read(&mut rx);
            pos = 0;
            continue;
        }
        let byte = rx[pos];
        pos += 1;
        let request = match reader.push(byte) {
            Push::Pending => continue,
            Push::Overflow => Err(FrameError::Overflow),
            Push::Frame(n) => reader.take::<Request<'_>>(n),
        };
        let handshake = matches!(request, Ok(Request::Info { .. }));
        let response = match &request {
            Ok(r) => handle(&mut state, r),
            Err(e) => {
                defmt::warn!("bad request frame: {}", defmt::Debug2Format(e));
                Response::Error(DeviceError::Frame(*e))
            }
        };
        send(&mut link, &mut tx, &response);
        if cfg!(feature = "hang") && handshake {
            defmt::warn!("`hang` feature: answering nothing more");
            loop {
                link.read(&mut rx);
            }
        }
    }
}

/// Encode and send one response; one too large for a frame becomes
/// [`DeviceError::ResponseTooLarge`].
fn send(link: &mut impl Link, tx: &mut [u8; MAX_FRAME], response: &Response<'_>) {
    let len = match encode_frame(response, tx) {
        Ok(frame) => frame.len(),
        Err(_) => match encode_frame(&Response::Error(DeviceError::ResponseTooLarge), tx) {
            Ok(frame) => frame.len(),
            Err(_) => return, // a one-byte error always fits: unreachable
        },
    };
    link.write_all(&tx[..len]);
}

fn handle<'s>(state: &'s mut State, request: &Request<'_>) -> Response<'s> {
    match *request {
        Request::Info { protocol } if protocol != PROTOCOL_VERSION => {
            defmt::warn!("protocol mismatch: host {}, device {}", protocol, PROTOCOL_VERSION);
            Response::Error(DeviceError::ProtocolMismatch { device: PROTOCOL_VERSION, host: protocol })
        }
        Request::Info { .. } => Response::Info(DeviceInfo {
            protocol: PROTOCOL_VERSION,
            firmware: board::FIRMWARE,
            board: board::NAME,
            core: board::CORE,
            clock_hz: board::CLOCK_HZ,
            counter: counter::UNIT,
            arena_bytes: board::ARENA_BYTES as u32,
            max_frame: MAX_FRAME as u32,
            model: state.blob.status,
        }),
        Request::Run { input } => run(state, input),
        Request::TimeLayer { spec, repeat } => time_layer(state, &spec, repeat),
        Request::Stats => Response::Stats(stack::stats()),
    }
}

fn as_i8(bytes: &[u8]) -> &[i8] {
    // SAFETY: u8 and i8 have the same size and alignment; every bit pattern is valid.
    unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len()) }
}

fn as_u8(codes: &[i8]) -> &[u8] {
    // SAFETY: as in `as_i8`.
    unsafe { core::slice::from_raw_parts(codes.as_ptr().cast(), codes.len()) }
}

/// Run the model once, timing every layer alone.
fn run<'s>(state: &'s mut State, input: &[u8]) -> Response<'s> {
    let Some(plan) = &state.blob.plan else {
        return Response::Error(match state.blob.status {
            ModelStatus::Invalid(e) => DeviceError::Model(e),
            _ => DeviceError::NoModel,
        });
    };
    let available = state.arena.len();
    if state.blob.arena_needed > available as u64 {
        let needed = state.blob.arena_needed.min(u32::MAX as u64) as u32;
        return Response::Error(DeviceError::Run(RunError::ArenaTooSmall { needed, available: available as u32 }));
    }
    if let Err(e) = plan.load_input(state.arena, as_i8(input)) {
        defmt::warn!("run rejected: {}", defmt::Debug2Format(&e));
        return Response::Error(DeviceError::Run(e));
    }
    let mut counts = heapless::Vec::new();
    let _ = state.pin.set_high(); // Infallible
    for i in 0..plan.model.layers.len() {
        let arena = &mut *state.arena;
        let count = state.counter.measure(|| plan.run_layer(i, arena));
        let _ = counts.push(count); // layers <= MAX_LAYERS = capacity
    }
    let _ = state.pin.set_low();
    defmt::debug!("run: {} layers", counts.len());
    let overhead = state.counter.overhead();
    Response::Run(RunResult { output: as_u8(plan.output_of(state.arena)), counts, overhead })
}

/// Time a synthetic layer `repeat` times (at least once).
fn time_layer<'s>(state: &'s mut State, spec: &LayerSpec, repeat: u16) -> Response<'s> {
    let plan = match synth::build(spec, state.params, state.arena) {
        Ok(p) => p,
        Err(e) => {
            defmt::warn!("time_layer rejected: {}", defmt::Debug2Format(&e));
            return Response::Error(e);
        }
    };
    let repeat = repeat.max(1);
    let (mut min, mut max) = (u32::MAX, 0);
    for _ in 0..repeat {
        let arena = &mut *state.arena;
        let count = state.counter.measure(|| plan.run_layer(0, arena));
        min = min.min(count);
        max = max.max(count);
    }
    defmt::debug!("time_layer: min {} max {}", min, max);
    Response::LayerTime(LayerTime { min, max, repeat, overhead: state.counter.overhead() })
}
