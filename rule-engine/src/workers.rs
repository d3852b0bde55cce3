//! Where chains run: worker threads of their own (`ironbridge-rules`), apart from the runtime
//! that serves the broker, the API and the drivers. An expression may compute for up to its
//! time limit (1 s) without yielding; on shared workers three such expressions stalled health
//! answers for seconds and unrelated MQTT publishes for longer. Here they can only hold up other
//! chains.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};
use tracing::warn;

static RULES: OnceLock<Option<Runtime>> = OnceLock::new();

/// The rule workers' runtime; the caller's own when it cannot be built (no threads left), so
/// chains still run, only without the separation, and when the caller runs on a current-thread
/// runtime (tests that pause the clock drive their chains' timers too).
pub(crate) fn handle() -> Handle {
    let current = Handle::current();
    if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
        return current;
    }
    let runtime = RULES.get_or_init(|| {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        match Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("ironbridge-rules")
            .enable_all()
            .build()
        {
            Ok(runtime) => Some(runtime),
            Err(e) => {
                warn!(error = %e, "Cannot start the rule workers; rules share the main workers");
                None
            }
        }
    });
    match runtime {
        Some(runtime) => runtime.handle().clone(),
        None => current,
    }
}
