//! The `signer` stage and the CA's certificate building. Only this crate
//! links signing code that touches the CA's private keys (invariant 8).

#![forbid(unsafe_code)]

pub mod ca;
pub mod certificate;
pub mod config;
pub mod crls;
mod handler;
mod lint_metrics;
mod refusal;
pub mod serial;

pub use handler::Signer;
