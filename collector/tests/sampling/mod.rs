//! Sources sample on an async runtime; these synchronous tests drive them on one shared
//! runtime, so that a source's connections (kept from one sample to the next) stay on the
//! runtime that opened them.

use std::future::Future;
use std::sync::LazyLock;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime"));

/// Runs one sampling (or any future) to completion on the shared runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    RUNTIME.block_on(f)
}
