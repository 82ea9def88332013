//! The accept loop: hyper 1.x through hyper-util's auto builder (HTTP/1.1 keep-alive
//! and h2c), with the connection discipline hostile traffic needs: a cap on open
//! connections (a semaphore, as mini-redis does), a deadline for the first request
//! head (also for a connection that sends nothing), an idle keep-alive timeout, and a
//! bounded graceful drain at shutdown. Each listener has its own cap, so the internal
//! address answers probes while the public one is saturated.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::IntGauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::routes::{handle, Surface};
use super::SharedApi;

/// Connections the internal listener holds at most: probes and one scraper need few,
/// and its own budget keeps them answered while the public side is full.
pub const INTERNAL_MAX_CONNECTIONS: usize = 64;
/// File descriptors kept back from the public connection cap: the internal listener,
/// the store's files and sockets, spill files.
pub const FD_RESERVE: u64 = 256;
/// Accept errors are logged at most once per this period (with how many there were).
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);
/// Back-off after an accept error that means "out of descriptors or memory".
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Connection-level settings of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A connection must deliver its first request head within this time of being
    /// accepted (also one that sends nothing).
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this long
    /// (a later request's head must arrive within it).
    pub idle_timeout: Duration,
    /// Open connections at most; past it new connections wait in the listen backlog.
    pub max_connections: usize,
    /// At shutdown, in-flight requests get this long to finish.
    pub drain_timeout: Duration,
}

impl ServerLimits {
    /// The same limits with another connection cap (the internal listener's).
    pub fn with_max_connections(self, max_connections: usize) -> ServerLimits {
        ServerLimits {
            max_connections,
            ..self
        }
    }
}

/// Raises the soft limit of open files to the hard limit; returns the soft limit now
/// in force (None where it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
        }
    }
}

/// The public connection cap: `--max-connections`, lowered to what the descriptor
/// limit leaves after the reserve (so the service runs out of permits, never of fds).
pub fn connection_cap(max_connections: usize, fd_limit: Option<u64>) -> usize {
    let by_fds = fd_limit.map_or(usize::MAX, |n| n.saturating_sub(FD_RESERVE).max(16) as usize);
    max_connections.min(by_fds).max(1)
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // No hyper timer for HTTP/1: the connection's watchdog enforces the head deadline
    // and the idle timeout (see `Activity::deadline`), and a timer armed by hyper for
    // every request head cost a timer-wheel insert and removal per beacon.
    b.http1()
        .header_read_timeout(None)
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_header_list_size(16 * 1024)
        .max_concurrent_streams(100);
    b
}

/// What a connection's watchdog needs to know: requests in progress, whether any
/// request arrived, and when the last one ended. A request only touches atomics here:
/// the watchdog reads them when its own timer fires.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    active: AtomicUsize,
    served: AtomicBool,
    /// The requests come over HTTP/2, which closes gracefully with a GOAWAY.
    http2: AtomicBool,
    /// Milliseconds after `opened` when the last request ended.
    last_end_ms: AtomicU64,
}

/// Marks a request in progress; its drop marks the end.
struct InProgress(Arc<Activity>);

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            active: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            last_end_ms: AtomicU64::new(0),
        })
    }

    fn begin(self: &Arc<Self>, version: http::Version) -> InProgress {
        self.served.store(true, Ordering::Relaxed);
        self.http2.store(version == http::Version::HTTP_2, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::AcqRel);
        InProgress(self.clone())
    }

    /// When the connection becomes closable if nothing happens meanwhile; `None` while
    /// a request is in progress (the body deadline and hyper bound that).
    fn deadline(&self, limits: &ServerLimits) -> Option<Instant> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        if !self.served.load(Ordering::Relaxed) {
            return Some(self.opened + limits.header_read_timeout);
        }
        let last_end = Duration::from_millis(self.last_end_ms.load(Ordering::Relaxed));
        Some(self.opened + last_end + limits.idle_timeout)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let since = self.0.opened.elapsed().as_millis() as u64;
        self.0.last_end_ms.store(since, Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// When the watchdog looks again, having looked at `now` and found the connection
/// closable at `deadline` (`None`: a request in progress). Never later than one idle
/// timeout from now, so no deadline is missed: the deadline only moves later, except
/// when a request ends, and a request that ends after `now` sets it past
/// `now + idle_timeout`. A keep-alive connection thus costs its requests no timer.
fn next_look(now: Instant, deadline: Option<Instant>, limits: &ServerLimits) -> Instant {
    let latest = now + limits.idle_timeout;
    deadline.map_or(latest, |at| at.min(latest))
}

/// Resolves when the connection has been silent or idle past its limit.
async fn expired(activity: &Activity, limits: &ServerLimits) {
    loop {
        let now = Instant::now();
        let deadline = activity.deadline(limits);
        if deadline.is_some_and(|at| at <= now) {
            return;
        }
        tokio::time::sleep_until(next_look(now, deadline, limits)).await;
    }
}

/// What the watchdog asks of its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// Serve on.
    Nothing = 0,
    /// Finish the requests in progress, then close (an HTTP/2 GOAWAY; shutdown).
    Finish = 1,
    /// Close now.
    Close = 2,
}

/// The watchdog's word to the connection's task: an atomic the task reads each time it
/// runs, and the task's waker to wake it. The connection future alone is polled per
/// request, not a `select!` over timers and cancellation futures.
#[derive(Debug, Default)]
struct Orders {
    ask: std::sync::atomic::AtomicU8,
    task: AtomicWaker,
}

impl Orders {
    fn give(&self, ask: Ask) {
        self.ask.fetch_max(ask as u8, Ordering::AcqRel);
        self.task.wake();
    }

    /// The order standing now; registers `cx` to be woken by the next.
    fn read(&self, cx: &mut Context<'_>) -> Ask {
        self.task.register(cx.waker());
        match self.ask.load(Ordering::Acquire) {
            0 => Ask::Nothing,
            1 => Ask::Finish,
            _ => Ask::Close,
        }
    }
}

/// A connection's watchdog (its own task, woken by its timer and at shutdown only):
/// closes a silent or idle connection, asks every connection to finish at shutdown,
/// and cuts short a close the client does not complete.
async fn watch(
    activity: Arc<Activity>,
    orders: Arc<Orders>,
    limits: ServerLimits,
    shutdown: CancellationToken,
    force: CancellationToken,
) {
    tokio::select! {
        _ = force.cancelled() => return orders.give(Ask::Close),
        _ = shutdown.cancelled() => {}
        _ = expired(&activity, &limits) => {
            // No request head in time, or idle: an HTTP/1 connection is closed at once
            // (hyper's graceful close of an idle HTTP/1 connection would wait for the
            // client's next request).
            if !activity.http2.load(Ordering::Relaxed) {
                return orders.give(Ask::Close);
            }
        }
    }
    orders.give(Ask::Finish);
    tokio::select! {
        _ = force.cancelled() => {}
        _ = tokio::time::sleep(limits.drain_timeout) => {}
    }
    orders.give(Ask::Close);
}

/// Logs accept errors at most once per [`ACCEPT_LOG_EVERY`].
#[derive(Debug)]
struct AcceptErrors {
    since_log: u64,
    last_log: Option<Instant>,
    backoff: Duration,
}

impl AcceptErrors {
    fn new() -> Self {
        AcceptErrors {
            since_log: 0,
            last_log: None,
            backoff: ACCEPT_BACKOFF_MIN,
        }
    }

    /// Records one error; returns how long to wait before accepting again.
    fn record(&mut self, e: &io::Error, surface: Surface) -> Duration {
        self.since_log += 1;
        if self.last_log.is_none_or(|at| at.elapsed() >= ACCEPT_LOG_EVERY) {
            tracing::warn!(error = %e, ?surface, count = self.since_log, "accept failed (logged at most every 10 s)");
            self.since_log = 0;
            self.last_log = Some(Instant::now());
        }
        if is_resource_exhaustion(e) {
            let wait = self.backoff;
            self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF_MAX);
            wait
        } else {
            // A connection reset before it was accepted: nothing to wait for.
            Duration::ZERO
        }
    }

    fn accepted(&mut self) {
        self.backoff = ACCEPT_BACKOFF_MIN;
    }
}

/// EMFILE, ENFILE, ENOBUFS, ENOMEM: accepting again at once would fail again.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12)) || e.kind() == io::ErrorKind::OutOfMemory
}

/// Serves `listener` until `shutdown`, then stops accepting and waits (at most the
/// drain timeout) for in-flight requests. Returns when drained.
pub async fn serve(
    listener: TcpListener,
    api: SharedApi,
    surface: Surface,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let builder = Arc::new(builder());
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Cancelled when the drain timeout passes: the connections still open are dropped.
    let force = CancellationToken::new();
    let open = api.metrics.open_connections.with_label_values(&[surface.label()]);
    let mut errors = AcceptErrors::new();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = match stream {
            Ok(accepted) => accepted,
            Err(e) => {
                api.metrics.accept_errors.inc();
                let wait = errors.record(&e, surface);
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        errors.accepted();
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            api: api.clone(),
            surface,
            peer: peer.ip(),
            limits,
            builder: builder.clone(),
            open: open.clone(),
        };
        tokio::spawn(conn.run(stream, permit, shutdown.clone(), force.clone()));
    }
    drop(listener);
    drain(&permits, limits, surface).await;
    force.cancel();
}

/// Waits until every connection has returned its permit, at most the drain timeout.
async fn drain(permits: &Semaphore, limits: ServerLimits, surface: Surface) {
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = permits.acquire_many(all) => tracing::debug!(?surface, "connections drained"),
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(?surface, "drain timeout: closing remaining connections");
        }
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    api: SharedApi,
    surface: Surface,
    peer: std::net::IpAddr,
    limits: ServerLimits,
    builder: Arc<auto::Builder<TokioExecutor>>,
    open: IntGauge,
}

impl Connection {
    async fn run(
        self,
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        shutdown: CancellationToken,
        force: CancellationToken,
    ) {
        let Connection {
            api,
            surface,
            peer,
            limits,
            builder,
            open,
        } = self;
        open.inc();
        let activity = Activity::new();
        let watched = activity.clone();
        let service = service_fn(move |req| {
            let request = watched.begin(req.version());
            let answer = handle(api.clone(), surface, peer, req);
            async move {
                let resp = answer.await;
                drop(request);
                resp
            }
        });
        let orders = Arc::new(Orders::default());
        let watchdog = tokio::spawn(watch(activity, orders.clone(), limits, shutdown, force));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let mut conn = std::pin::pin!(conn);
        let mut finishing = false;
        // A client that vanishes mid-request is not an error worth logging.
        std::future::poll_fn(|cx| match orders.read(cx) {
            Ask::Close => Poll::Ready(()),
            ask => {
                if ask == Ask::Finish && !finishing {
                    conn.as_mut().graceful_shutdown();
                    finishing = true;
                }
                conn.as_mut().poll(cx).map(|_| ())
            }
        })
        .await;
        watchdog.abort();
        open.dec();
        drop(permit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(header_s: u64, idle_s: u64) -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(header_s),
            idle_timeout: Duration::from_secs(idle_s),
            max_connections: 1,
            drain_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_watchdog_looks_again_at_the_deadline_or_one_idle_timeout_on() {
        let now = Instant::now();
        let l = limits(10, 60);
        let s = Duration::from_secs;
        assert_eq!(next_look(now, Some(now + s(5)), &l), now + s(5));
        assert_eq!(next_look(now, Some(now + s(500)), &l), now + s(60));
        // A request in progress: looked at again one idle timeout on.
        assert_eq!(next_look(now, None, &l), now + s(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_expired_at_its_deadlines_and_not_before() {
        let l = limits(10, 3);
        let a = Activity::new();
        // Silent: the head deadline.
        let t0 = Instant::now();
        expired(&a, &l).await;
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        // A request that lasts 5 s (longer than the idle timeout), then idle: closable
        // one idle timeout after it ended, whatever the watchdog slept meanwhile.
        let a = Activity::new();
        let request = a.begin(http::Version::HTTP_11);
        let t0 = Instant::now();
        let ends = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(request);
        };
        tokio::join!(ends, expired(&a, &l));
        assert_eq!(t0.elapsed(), Duration::from_secs(8));
    }
}
