//! Knobs for ACME client authors (embedded mode only, off unless asked for):
//! the test server Pebble is not. A client can be made to see `processing`
//! for a while or for K polls, odd `Retry-After` values, an order that ends
//! `invalid` after `processing`, one that never finishes, and HTTP faults.
//!
//! Every knob acts on the real pipeline or the real api through a seam —
//! a queue or handler decorator, or the api's client-testing hooks
//! (`api::hooks`) — so the stages themselves carry no test code, and the
//! production binaries cannot turn any of this on.
//!
//! `values`: the knobs and their syntax; `state`: the knobs at run time and
//! the api hooks, and the log of the requests they saw; `pipeline`: the
//! queue and stage decorators.

mod pipeline;
mod state;
mod values;

pub use pipeline::{DelayingQueue, Faulty};
pub use state::{KnobState, MAX_SEEN_REQUESTS, RequestLog, SeenRequest};
pub use values::{
    FinalizeDelay, HttpFault, InjectedFailure, Knobs, KnobsDoc, RetryAfterFormat, parse_duration,
};
