//! libkuzzle: bulk-write JSON documents into Kuzzle (`bulk:mWrite`) through a
//! small C ABI. The C boundary is `ffi`; everything else is safe Rust.
//!
//! - `ffi`: the `extern "C"` functions, pointer checks, panic boundary.
//! - `config`: `kuzzle_connect`'s configuration and mWrite's options.
//! - `client`: a connected client: authentication and `kuzzle_query`.
//! - `transport`: HTTP to Kuzzle (ureq), gzip, answer decoding.
//! - `json`: the one-pass validating JSON scanner of the hot paths.
//! - `mwrite`: the engine: door checks, chunking, concurrency, retries, merge.
//! - `retry`: backoff with jitter, and which failures are worth a retry.
//! - `error`: status codes and the error type.

pub mod client;
pub mod config;
pub mod error;
pub mod ffi;
mod json;
pub mod mwrite;
pub mod retry;
pub mod transport;

pub use error::{kuzzle_status, Error, Status};
