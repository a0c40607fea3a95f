//! Refuses the testkit's waiting calls on the thread that drives a current-thread tokio runtime.
//!
//! The testkit is synchronous: starting members, waiting for a leader or for health, restarting
//! and running `docker` block the calling thread for up to seconds. Called from the body of a
//! plain `#[tokio::test]` (a current-thread runtime), that freezes every task of the runtime
//! meanwhile: the client's HTTP/2 connections do not see a killed member's socket close, so the
//! next write goes out on a dead connection and fails with an ambiguous transport error. That
//! failure shows up far from its cause and only sometimes, so the testkit refuses up front.

use super::TestkitError;

/// `Err(CurrentThreadRuntime)` when called from the future a current-thread runtime is
/// blocking on. Plain threads, multi-thread runtimes and `spawn_blocking` closures pass.
pub(crate) fn refuse_current_thread(call: &'static str) -> Result<(), TestkitError> {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return Ok(());
    };
    // `spawn_blocking` closures (and spawned tasks) have a task id; the future passed to
    // `block_on`, which is what a `#[tokio::test]` body is, has none.
    let blocks_the_runtime = handle.runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread
        && tokio::task::try_id().is_none();
    if blocks_the_runtime {
        Err(TestkitError::CurrentThreadRuntime { call })
    } else {
        Ok(())
    }
}
