//! What each `kiln` subcommand does, one module each; their flags are in
//! [`crate::cli`].

pub mod ari;
pub mod block_key;
pub mod ca;
pub mod conformance;
pub mod dead_letters;
pub mod eab;
pub mod init;
pub mod migrate;
pub mod order;
pub mod report;
pub mod revoke;
pub mod serve;
