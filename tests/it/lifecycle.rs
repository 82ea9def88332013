//! The process around the API: configuration errors, restarts, and SIGTERM.

use crate::support as common;

use std::time::{Duration, Instant};

use common::process::{run_to_exit, Process};
use common::TestApp;

#[test]
fn bad_configuration_exits_2_with_one_line_on_stderr() {
    for args in [
        &["--flush-interval", "soon"][..],
        &["--listen", "not-an-address"],
        &["--max-pending-keys", "0"],
        &["--worker-threads", "1000000"],
        &["--share-networks", "Bad Name"],
        &["--log-format", "xml"],
        &["--redis-cluster"],
        &["--redis-url", "http://wrong"],
        &["--no-such-flag"],
    ] {
        let (status, stderr) = run_to_exit(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("configuration error"), "{args:?}: {stderr}");
    }
    let (_, stderr) = run_to_exit(&["--log-format", "xml"]);
    assert!(
        stderr.contains("text, json"),
        "the line names the possible values: {stderr}"
    );
}

#[test]
fn what_stops_the_start_exits_2_with_one_line_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for args in [
        &["--data-dir", file.to_str().unwrap()][..],
        &["--data-dir", data, "--listen", &taken],
        &[
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            &taken,
        ],
        &["--data-dir", data, "--redis-url", "redis://127.0.0.1:notaport"],
        &["--data-dir", data, "--header-read-timeout", "0"],
    ] {
        let (status, stderr) = run_to_exit(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("viewcounter: configuration error"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn environment_variables_configure_like_flags() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_viewcounter"))
        .env_clear()
        .env("VIEWCOUNTER_FLUSH_INTERVAL", "never")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flush-interval"));
}

#[test]
fn a_bad_tokio_worker_count_is_a_configuration_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for value in ["abc", "0", "", "1000000"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_viewcounter"))
            .env_clear()
            .env("TOKIO_WORKER_THREADS", value)
            .args(["--listen", "127.0.0.1:0", "--data-dir", data])
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value:?}: {stderr}");
        assert!(
            stderr.contains("configuration error") && stderr.contains("TOKIO_WORKER_THREADS"),
            "{stderr}"
        );
    }
}

#[test]
fn help_and_version_exit_0() {
    let (status, _) = run_to_exit(&["--help"]);
    assert_eq!(status.code(), Some(0));
    let (status, _) = run_to_exit(&["--version"]);
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_survive_a_clean_restart_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(dir.path(), &["--flush-interval", "1h"]).await;
    for _ in 0..3 {
        app.client.view("r1").await;
    }
    app.client.share("r1", "telegram").await;
    app.stop().await;

    let app = TestApp::start_in(dir.path(), &[]).await;
    let a = app.client.article("r1").await;
    assert_eq!(a["views"], 3);
    assert_eq!(a["shares"]["telegram"], 1);
}

#[tokio::test]
async fn the_default_is_a_worker_thread_per_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Process::start(dir.path(), &[]);
    let cpus = std::thread::available_parallelism().unwrap().get();
    let client = common::Client::new(p.addr);
    assert_eq!(client.metric("viewcounter_worker_threads").await, cpus as f64);
    p.terminate();
    assert_eq!(p.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

#[tokio::test]
async fn one_worker_thread_serves_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Process::start(dir.path(), &["--worker-threads", "1", "--flush-interval", "1h"]);
    let client = common::Client::new(p.addr);
    for _ in 0..3 {
        client.view("w1").await;
    }
    assert_eq!(client.views("w1").await, 3);
    assert_eq!(client.metric("viewcounter_worker_threads").await, 1.0);
    p.terminate();
    assert_eq!(p.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_stop_the_internal_probes_answer_until_the_final_flush() {
    use tokio::io::AsyncWriteExt;
    let args = [
        "--metrics-listen",
        "127.0.0.1:0",
        "--drain-timeout",
        "300s",
        "--body-read-timeout",
        "300s",
    ];
    let app = TestApp::start(&args).await;
    let probes = common::Client::new(app.metrics_addr.expect("an internal listener"));
    // A request in flight keeps the stop draining: its body never comes.
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    slow.write_all(head.as_bytes()).await.unwrap();
    let open = r#"viewcounter_open_connections{listener="public"}"#;
    assert!(common::eventually(60, || async { probes.metric(open).await >= 1.0 }).await);
    let stopping = tokio::spawn(app.stop());
    let readyz = common::eventually_some(60, || async {
        let r = probes.get("/readyz").await;
        (r.status == http::StatusCode::SERVICE_UNAVAILABLE).then_some(r)
    })
    .await
    .expect("/readyz turns 503 while the service stops");
    assert_eq!(readyz.json()["reason"], "shutting_down");
    assert_eq!(probes.get("/healthz").await.status, http::StatusCode::OK);
    drop(slow);
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_what_was_accepted_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Process::start(dir.path(), &["--flush-interval", "1h"]);
    let client = common::Client::new(p.addr);
    for _ in 0..7 {
        client.view("t1").await;
    }
    let started = Instant::now();
    p.terminate();
    let status = p.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(p.drain_logs().iter().any(|l| l.contains("final flush done")));

    let app = TestApp::start_in(dir.path(), &[]).await;
    assert_eq!(app.client.views("t1").await, 7);
}
