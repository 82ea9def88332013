//! The accept loop: hyper 1.x through hyper-util's auto builder (HTTP/1.1 keep-alive
//! and h2c), with the connection discipline hostile traffic needs: a cap on open
//! connections (a semaphore, as mini-redis does), a deadline for the first request
//! head (also for a connection that sends nothing), an idle keep-alive timeout, and a
//! bounded graceful drain at shutdown. Each listener has its own cap, so the internal
//! address answers probes while the public one is saturated.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
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
    // No timer for HTTP/1: the connection's watchdog enforces the head deadline and the
    // idle timeout (a head counts as arrived only once it is whole, so a head that
    // trickles in is closed at the same deadline). Hyper's own head timer would box a
    // fresh sleep and register it with the timer wheel for every request.
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
/// request arrived, and when the last one ended. A request only writes here; the
/// watchdog reads it when its timer fires (no wake-up per request).
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

/// Resolves when the connection has been silent or idle past its limit. The deadline
/// is read again when the timer fires: a request that ended meanwhile moved it, one in
/// progress puts it off by another idle timeout (the body deadline and hyper bound the
/// request itself).
async fn expired(activity: &Activity, limits: &ServerLimits) {
    loop {
        let now = Instant::now();
        match activity.deadline(limits) {
            Some(at) if at <= now => return,
            Some(at) => tokio::time::sleep_until(at).await,
            None => tokio::time::sleep_until(now + limits.idle_timeout).await,
        }
    }
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
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            let signal = WokenOnly::new(next_signal(&shutdown, &force, &activity, &limits, closing));
            let signal = tokio::select! {
                biased;
                // A client that vanishes mid-request is not an error worth logging.
                _ = conn.as_mut() => break,
                signal = signal => signal,
            };
            match signal {
                Signal::Force | Signal::DrainOver => break,
                // No request head in time, or idle: an HTTP/1 connection is closed at
                // once (hyper's graceful close of an idle HTTP/1 connection would wait
                // for a head that is not coming).
                Signal::Expired if !activity.http2.load(Ordering::Relaxed) => break,
                Signal::Expired | Signal::Shutdown => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
        open.dec();
        drop(permit);
    }
}

/// Why a connection's loop stops serving as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// The drain timeout of the shutdown passed: drop the connection.
    Force,
    /// The service is shutting down: close gracefully.
    Shutdown,
    /// Silent or idle past its limit.
    Expired,
    /// A graceful close the client did not complete within the drain timeout.
    DrainOver,
}

/// The next signal for a connection: before `closing`, shutdown or expiry; after it,
/// the drain timeout. The force of the drain applies in both.
async fn next_signal(
    shutdown: &CancellationToken,
    force: &CancellationToken,
    activity: &Activity,
    limits: &ServerLimits,
    closing: bool,
) -> Signal {
    tokio::select! {
        _ = force.cancelled() => Signal::Force,
        _ = shutdown.cancelled(), if !closing => Signal::Shutdown,
        _ = expired(activity, limits), if !closing => Signal::Expired,
        _ = tokio::time::sleep(limits.drain_timeout), if closing => Signal::DrainOver,
    }
}

/// Polls its future only when that future's own waker fired (and at the first poll),
/// not every time the task wakes. A connection's task wakes several times a request;
/// polling its shutdown and force tokens each time would lock a mutex that every
/// connection shares (each token's waiter list), and the watchdog's timer with them.
struct WokenOnly<F> {
    inner: Pin<Box<F>>,
    flag: Arc<WakeFlag>,
    /// `flag` as a waker, made once.
    waker: Waker,
}

/// Set when the wrapped future's waker fires; wakes the task that polls the wrapper.
struct WakeFlag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> WokenOnly<F> {
    fn new(inner: F) -> Self {
        let flag = Arc::new(WakeFlag {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        WokenOnly {
            inner: Box::pin(inner),
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

impl<F: Future> Future for WokenOnly<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read: a wake in between is not lost.
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner.as_mut().poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A future that counts its polls and stays pending until told.
    struct Counted {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<AtomicWaker>,
    }

    impl Future for Counted {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            self.waker.register(cx.waker());
            if self.ready.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    #[test]
    fn the_wrapped_future_is_polled_only_when_its_own_waker_fired() {
        let (polls, ready, inner_waker) = Default::default();
        let counted = Counted {
            polls: Arc::clone(&polls),
            ready: Arc::clone(&ready),
            waker: Arc::clone(&inner_waker),
        };
        let mut wrapped = WokenOnly::new(counted);
        let task = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&task);
        assert!(Pin::new(&mut wrapped).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1, "polled at the first poll");
        for _ in 0..3 {
            assert!(Pin::new(&mut wrapped).poll(&mut cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "the task's other wake-ups do not poll it"
        );
        ready.store(true, Ordering::SeqCst);
        inner_waker.wake();
        assert!(Pin::new(&mut wrapped).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_wake_of_the_wrapped_future_wakes_the_task() {
        let woken = Arc::new(AtomicBool::new(false));
        struct Flag(Arc<AtomicBool>);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let (polls, ready, inner_waker) = Default::default();
        let mut wrapped = WokenOnly::new(Counted {
            polls,
            ready,
            waker: Arc::clone(&inner_waker),
        });
        let task = Waker::from(Arc::new(Flag(Arc::clone(&woken))));
        assert!(Pin::new(&mut wrapped)
            .poll(&mut Context::from_waker(&task))
            .is_pending());
        assert!(!woken.load(Ordering::SeqCst));
        std::thread::spawn(move || inner_waker.wake()).join().unwrap();
        assert!(woken.load(Ordering::SeqCst), "the task is woken to poll the wrapper");
    }
}
