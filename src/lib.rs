//! libkuzzle: bulk-write JSON documents into Kuzzle (`bulk:mWrite`) through a
//! small C ABI. The C boundary is `ffi`, the only module with `unsafe`;
//! everything else is safe Rust and private to the crate.
//!
//! - `ffi`: the `extern "C"` functions, pointer checks, panic boundary.
//! - `config`: `kuzzle_connect`'s configuration and mWrite's options.
//! - `client/`: a connected client: authentication, `kuzzle_query`, the
//!   request loop over the nodes (failover), stats.
//! - `nodes/`: the nodes of `hosts`: alive or dead, load, adaptive
//!   concurrency.
//! - `net`: the engines' one seam to the network.
//! - `transport`: HTTP to Kuzzle (ureq), gzip, answer decoding.
//! - `json`: the one-pass validating JSON scanner of the hot paths.
//! - `mwrite/`: the engine: door checks, planning, workers, answers, merge.
//! - `retry`: backoff with jitter, and what each failure means for a retry.
//! - `secrets`: keeps passwords, tokens and API keys out of error texts.
//! - `error`: status codes and the error type.

#![deny(unsafe_code)]

mod client;
mod config;
mod error;
#[allow(unsafe_code)]
pub mod ffi;
mod json;
mod mwrite;
mod net;
mod nodes;
mod producer;
mod retry;
mod secrets;
mod spool;
mod transport;

pub use error::{kuzzle_status, Error, Status};
