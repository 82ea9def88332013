//! Shutdown: SIGINT | SIGTERM -> a cancellation token, and the ingest gate that
//! guarantees no event is accepted after the final flush has drained the map.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use tokio_util::sync::CancellationToken;

/// Cancels the returned token at the first SIGINT or SIGTERM.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        t.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Where the process is in its life: readiness and whether events are still admitted.
#[derive(Debug)]
pub struct Lifecycle {
    stopping: AtomicBool,
    // std RwLock: the critical section (recording into the map) never awaits.
    accepting: RwLock<bool>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            stopping: AtomicBool::new(false),
            accepting: RwLock::new(true),
        }
    }
}

impl Lifecycle {
    /// Marks the service as stopping: /readyz turns 503 so balancers move away.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// True once shutdown began.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Runs `record` unless ingest is closed; the final flush waits for it to finish.
    pub fn admit<R>(&self, record: impl FnOnce() -> R) -> Option<R> {
        let open = self.accepting.read().unwrap_or_else(|e| e.into_inner());
        open.then(record)
    }

    /// Closes ingest; returns after every admitted recording has finished.
    pub fn close_ingest(&self) {
        self.begin_stop();
        *self.accepting.write().unwrap_or_else(|e| e.into_inner()) = false;
    }
}
