//! Connection discipline under hostile traffic, over real sockets: silent and idle
//! connections are closed, slow and oversize bodies are refused, and a flood of
//! silent connections neither stops new requests nor the internal probes.
//! Timing is never asserted tightly: a loaded two-core box may be slow, so bounds
//! are generous and only tell "closed by the service" from "held for ever".

use crate::support as common;

use std::time::{Duration, Instant};

use common::{eventually, Client, TestApp};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection; the time that took, or None if it
/// was still open after `limit`.
async fn time_until_closed(s: &mut (impl AsyncRead + Unpin), limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, s.read_to_end(&mut buf)).await {
        Ok(_) => Some(started.elapsed()),
        Err(_) => None,
    }
}

/// Sends `head` and reads the first line of the answer.
async fn status_line(s: &mut TcpStream, head: &str) -> String {
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("an answer within 30 s")
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).lines().next().unwrap_or("").to_string()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_head_deadline() {
    let app = TestApp::start(&[]).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let took = time_until_closed(&mut s, Duration::from_secs(60)).await;
    let took = took.expect("a silent connection is closed (default head deadline 10 s)");
    assert!(
        took >= Duration::from_secs(5),
        "closed after {took:?}, before the 10 s deadline"
    );
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let app = TestApp::start(&["--idle-timeout", "1s", "--header-read-timeout", "60s"]).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let line = status_line(&mut s, HEALTHZ).await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let took = time_until_closed(&mut s, Duration::from_secs(120)).await;
    let took = took.expect("an idle keep-alive connection is closed");
    // Not by the head deadline (it was closed there, at 10 s, whatever the idle timeout).
    assert!(took < Duration::from_secs(30), "closed after {took:?}");
}

#[tokio::test]
async fn a_keep_alive_connection_is_kept_past_the_head_deadline_while_within_the_idle_timeout() {
    let app = TestApp::start(&["--idle-timeout", "120s", "--header-read-timeout", "1s"]).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let line = status_line(&mut s, HEALTHZ).await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let closed = time_until_closed(&mut s, Duration::from_secs(4)).await;
    assert_eq!(closed, None, "closed at the head deadline, not the idle timeout");
    let line = status_line(&mut s, HEALTHZ).await;
    assert!(line.starts_with("HTTP/1.1 200"), "a second request: {line}");
}

/// A header that never ends: each byte keeps the head growing, never complete.
const ENDLESS_HEADER: &str = "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Starts a request on `s`, then sends the rest of its head a byte every 200 ms, as a
/// slowloris client does, never completing it; answers how long the server held the
/// connection (None if it was still open after two minutes).
async fn time_until_closed_while_a_head_trickles(s: TcpStream) -> Option<Duration> {
    let (mut read, mut write) = s.into_split();
    write.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let trickle = tokio::spawn(async move {
        for b in ENDLESS_HEADER.bytes().cycle() {
            if write.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let closed = time_until_closed(&mut read, Duration::from_secs(120)).await;
    trickle.abort();
    closed
}

#[tokio::test]
async fn a_first_head_that_trickles_in_is_closed_at_the_head_deadline() {
    let app = TestApp::start(&["--header-read-timeout", "2s", "--idle-timeout", "600s"]).await;
    let s = TcpStream::connect(app.addr).await.unwrap();
    let took = time_until_closed_while_a_head_trickles(s).await;
    let took = took.expect("a head that never completes is closed");
    assert!(
        took < Duration::from_secs(60),
        "closed after {took:?}, not at the 2 s deadline"
    );
}

#[tokio::test]
async fn a_later_head_that_trickles_in_is_closed_at_the_idle_timeout() {
    let app = TestApp::start(&["--idle-timeout", "2s", "--header-read-timeout", "600s"]).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let line = status_line(&mut s, HEALTHZ).await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let took = time_until_closed_while_a_head_trickles(s).await;
    let took = took.expect("a keep-alive connection whose next head never completes is closed");
    assert!(
        took < Duration::from_secs(60),
        "closed after {took:?}, not at the 2 s idle timeout"
    );
}

#[tokio::test]
async fn an_oversize_content_length_is_refused_before_the_body_is_sent() {
    let app = TestApp::start(&["--body-read-timeout", "60s"]).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    // No body follows: a server that waited for it would answer nothing for 60 s.
    let line = status_line(
        &mut s,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n",
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");
    assert!(time_until_closed(&mut s, Duration::from_secs(30)).await.is_some());
}

#[tokio::test]
async fn a_body_that_trickles_in_is_refused_at_the_body_deadline() {
    let app = TestApp::start(&["--body-read-timeout", "1s"]).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let (mut read, mut write) = s.into_split();
    let trickle = tokio::spawn(async move {
        // One byte every 300 ms: 100 bytes would take 30 s.
        while write.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut got = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), read.read(&mut got))
        .await
        .expect("an answer before the body is complete")
        .unwrap();
    let answer = String::from_utf8_lossy(&got[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    trickle.abort();
    assert_eq!(app.client.views("x").await, 0);
}

/// An HTTP/2 client by hand, as an attacker would write one: the connection preface and
/// an empty SETTINGS frame, then (if `request`) one GET of /healthz, then nothing but
/// acknowledgements of the server's SETTINGS and PINGs (keeping the connection "alive"
/// at the protocol level). Returns the frame types the server sent and how long it
/// kept the connection, or None if it was still open after `limit`.
async fn h2_connection_kept_for(
    addr: std::net::SocketAddr,
    request: bool,
    limit: Duration,
) -> Option<(Vec<u8>, Duration)> {
    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;
    const ACK: u8 = 0x1;
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    if request {
        // HPACK: :method GET, :scheme http (static table), :path and :authority literal.
        let mut block = vec![0x82, 0x86, 0x44, 8];
        block.extend_from_slice(b"/healthz");
        block.extend_from_slice(&[0x41, 1, b'x']);
        hello.extend(frame(0x1, 0x4 | 0x1, 1, &block)); // HEADERS, END_HEADERS | END_STREAM
    }
    s.write_all(&hello).await.unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    let read_frames = async {
        let mut head = [0u8; 9];
        while s.read_exact(&mut head).await.is_ok() {
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if s.read_exact(&mut payload).await.is_err() {
                break;
            }
            let (kind, flags) = (head[3], head[4]);
            seen.push(kind);
            let answer = match kind {
                SETTINGS if flags & ACK == 0 => Some(frame(SETTINGS, ACK, 0, &[])),
                PING if flags & ACK == 0 => Some(frame(PING, ACK, 0, &payload)),
                _ => None,
            };
            if let Some(answer) = answer {
                if s.write_all(&answer).await.is_err() {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(limit, read_frames).await.ok()?;
    Some((seen, started.elapsed()))
}

#[tokio::test]
async fn an_h2c_connection_that_only_answers_pings_is_closed_after_the_head_deadline() {
    let app = TestApp::start(&["--header-read-timeout", "2s"]).await;
    let (frames, _) = h2_connection_kept_for(app.addr, false, Duration::from_secs(60))
        .await
        .expect("a connection with no request is closed, whatever it answers");
    assert_eq!(frames.first(), Some(&0x4), "the server spoke HTTP/2 first: {frames:?}");
}

#[tokio::test]
async fn an_idle_h2c_connection_is_closed_after_its_last_request() {
    let app = TestApp::start(&["--idle-timeout", "1s"]).await;
    let (frames, _) = h2_connection_kept_for(app.addr, true, Duration::from_secs(60))
        .await
        .expect("an idle HTTP/2 connection is closed, whatever it answers");
    assert!(
        frames.contains(&0x1),
        "the request was answered (a HEADERS frame): {frames:?}"
    );
}

/// Out of file descriptors (EMFILE), the accept loop backs off and logs once per 10 s
/// instead of spinning; once descriptors are free again it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_service_backs_off_logs_rarely_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    // ~15 descriptors are in use once it serves; the connection cap (16 at this limit)
    // leaves the accept loop to meet EMFILE first.
    let service = common::process::Process::start_with_fd_limit(dir.path(), &["--header-read-timeout", "3s"], 24);
    let started = Instant::now();
    let silent = open_silent(service.addr, 40).await;
    assert!(silent.len() >= 20, "the kernel completed {} connections", silent.len());
    // The accepted ones are closed at the head deadline, freeing descriptors for the
    // rest of the backlog: a few rounds of 3 s.
    tokio::time::sleep(Duration::from_secs(8)).await;
    drop(silent);
    let client = Client::new(service.addr);
    let counted = eventually(60, || async {
        let post = client.try_post_events(r#"{"type":"view","article":"after-emfile"}"#.into());
        let status = tokio::time::timeout(Duration::from_secs(5), post).await;
        matches!(status, Ok(Some(StatusCode::ACCEPTED)))
    })
    .await;
    assert!(counted, "the service serves again once descriptors are free");
    let elapsed = started.elapsed().as_secs();
    let logged = service
        .drain_logs()
        .into_iter()
        .filter(|l| l.contains("accept failed"))
        .count() as u64;
    assert!(
        logged >= 1,
        "the flood ran the service out of descriptors (no accept error logged)"
    );
    assert!(
        logged <= elapsed / 10 + 2,
        "{logged} accept-error lines in {elapsed} s: at most one per 10 s"
    );
}

/// Raises this process's open-files limit so the test can hold its connections.
fn raise_own_fd_limit(needed: u64) {
    let soft = viewcounter::http::server::raise_fd_limit().unwrap_or(0);
    assert!(
        soft >= needed,
        "the test needs {needed} open files; the hard limit allows {soft}"
    );
}

/// Opens up to `n` connections that send nothing (those the kernel does not complete
/// within a few seconds are given up: the backlog is full, which is the point).
async fn open_silent(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        set.spawn(async move {
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
                .await
                .ok()
                .and_then(Result::ok)
        });
    }
    let mut held = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        if let Ok(Some(s)) = r {
            held.push(s);
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_thousand_silent_connections_do_not_stop_new_requests_nor_the_probes() {
    raise_own_fd_limit(14_000);
    let app = TestApp::start(&["--max-connections", "1000", "--metrics-listen", "127.0.0.1:0"]).await;
    let internal = Client::new(app.metrics_addr.expect("internal address"));
    let held = open_silent(app.addr, 12_000).await;
    assert!(held.len() >= 1_000, "only {} connections opened", held.len());
    let metrics = internal.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        eventually(30, || async {
            internal
                .metric(r#"viewcounter_open_connections{listener="public"}"#)
                .await
                >= 1_000.0
        })
        .await,
        "the public side reaches its cap"
    );

    // The internal address answers at once, the public side is full.
    let health = internal.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(internal.get("/readyz").await.status, StatusCode::OK);

    // A new POST is answered: silent connections leave at their head deadline.
    let post = tokio::time::timeout(
        Duration::from_secs(120),
        app.client.post_events(r#"{"type":"view","article":"through"}"#),
    )
    .await
    .expect("a new POST is answered while silent connections hold the cap");
    assert!(
        matches!(post.status, StatusCode::ACCEPTED | StatusCode::SERVICE_UNAVAILABLE),
        "{}",
        post.status
    );
    assert!(
        internal
            .metric(r#"viewcounter_open_connections{listener="public"}"#)
            .await
            <= 1_000.0
    );
    drop(held);
}
