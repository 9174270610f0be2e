//! releq-common: the no_std core that the releq host and firmware share.
//!
//! Everything that must agree bit for bit between the host and the
//! microcontroller lives here, compiled into both:
//!
//! - [`model`]: the `.releq` format (header, CRC, zero-copy postcard payload);
//! - [`validate`]: one-time validation with typed errors, and the exact
//!   flash / arena figures;
//! - [`quant`]: TFLite-style integer-only arithmetic (the rounding contract);
//! - [`pack`]: bit-packing of weights at 2..=8 bits;
//! - [`kernels`]: the scalar reference kernels;
//! - [`runtime`]: running a validated model layer by layer;
//! - [`protocol`]: host <-> device messages and COBS framing;
//! - [`embed`]: running a model embedded in your own firmware (aligned
//!   blob, caller-provided arena, build-time constants such as the exact
//!   `ARENA_BYTES`).
//!
//! With the `std` feature (default, host side) it also offers
//! [`builder`]: building models from owned arrays and encoding them.
#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(feature = "std")]
pub mod builder;
pub mod embed;
pub mod kernels;
pub mod model;
pub mod pack;
pub mod protocol;
pub mod quant;
pub mod runtime;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validate;

pub use model::{Layer, Model, Shape, TensorQuant};
pub use validate::{ModelError, Plan};
