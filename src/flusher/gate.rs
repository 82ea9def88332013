//! The crash bound under a burst: a count is durable once a tick has drained it and
//! written the journal, so what a `kill -9` can lose is what was accepted since the
//! last tick began. A tick's drain grows with the keys pending; a burst of new articles
//! on a busy machine made ticks run for seconds while every request was still accepted,
//! and a crash then lost all of it. While a tick runs longer than the flush interval,
//! ingest requests wait for it to end (backpressure instead of an unbounded window);
//! a tick stuck longer than [`GIVE_UP`] past the interval (a disk that no longer
//! answers) lets them through again: counting goes on in memory, as with a failing
//! disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long past the flush interval a tick holds ingest back at most.
pub const GIVE_UP: Duration = Duration::from_secs(5);

/// Whether a flush tick runs late, shared by the flusher and the ingest routes.
#[derive(Debug)]
pub struct TickGate {
    base: Instant,
    /// Milliseconds since `base` (plus one) when the running tick began; 0 when none runs.
    started: AtomicU64,
    interval: Duration,
    give_up: Duration,
    done: Notify,
}

impl TickGate {
    /// A gate for ticks every `interval`.
    pub fn new(interval: Duration) -> Self {
        Self::giving_up(interval, GIVE_UP)
    }

    fn giving_up(interval: Duration, give_up: Duration) -> Self {
        TickGate {
            base: Instant::now(),
            started: AtomicU64::new(0),
            interval,
            give_up,
            done: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64 + 1
    }

    /// Marks a tick running until the guard drops.
    pub fn begin(self: &Arc<Self>) -> TickRunning {
        self.started.store(self.now_ms(), Ordering::Release);
        TickRunning(self.clone())
    }

    /// How much longer an ingest request should wait for the running tick: `None`
    /// when none runs late (the common case: one atomic load).
    pub fn holds_for(&self) -> Option<Duration> {
        let started = self.started.load(Ordering::Acquire);
        if started == 0 {
            return None;
        }
        let ran = Duration::from_millis(self.now_ms().saturating_sub(started));
        let until = self.interval + self.give_up;
        (ran > self.interval && ran < until).then(|| until - ran)
    }

    /// Waits while a tick runs late, at most until it gives up; true when it waited.
    pub async fn wait(&self) -> bool {
        let notified = self.done.notified();
        tokio::pin!(notified);
        // Registered before the check: a tick that ends between the two still wakes us.
        notified.as_mut().enable();
        let Some(left) = self.holds_for() else { return false };
        let _ = tokio::time::timeout(left, notified).await;
        true
    }
}

/// A running tick; dropping it ends the tick and lets waiting requests go.
#[derive(Debug)]
pub struct TickRunning(Arc<TickGate>);

impl Drop for TickRunning {
    fn drop(&mut self) {
        self.0.started.store(0, Ordering::Release);
        self.0.done.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn a_tick_within_its_interval_holds_nothing() {
        let gate = Arc::new(TickGate::new(LONG));
        assert_eq!(gate.holds_for(), None, "no tick runs");
        let _tick = gate.begin();
        assert_eq!(gate.holds_for(), None);
    }

    #[tokio::test]
    async fn requests_wait_while_a_tick_runs_past_the_interval_and_go_when_it_ends() {
        let gate = Arc::new(TickGate::giving_up(Duration::from_millis(1), LONG));
        let tick = gate.begin();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(gate.holds_for().is_some(), "a late tick holds requests");
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the request waits for the tick");
        drop(tick);
        assert!(waiter.await.unwrap(), "and goes once the tick ends");
        assert_eq!(gate.holds_for(), None);
        assert!(!gate.wait().await, "with no tick running nothing waits");
    }

    #[tokio::test]
    async fn a_tick_stuck_past_the_give_up_holds_nothing() {
        let gate = Arc::new(TickGate::giving_up(Duration::from_millis(1), Duration::from_millis(10)));
        let _tick = gate.begin();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(gate.holds_for(), None, "ingest goes on while the disk hangs");
    }
}
