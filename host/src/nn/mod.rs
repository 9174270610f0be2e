//! Networks on the host: the op list a model is made of ([`spec`]) and its
//! quantization plan ([`qplan`]).

pub mod calib;
pub mod fakequant;
pub mod net;
pub mod qplan;
pub mod spec;
