//! The journal and replay on the Redis store, with the real binary where signals
//! matter: SIGTERM while Redis is down or hung, a crash in the middle of a replay, and
//! spill files of older versions (replayed too) that do not parse.

use crate::support as common;
use crate::support::load;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::process::{run_to_exit, Process};
use common::{Client, RedisServer, TestApp, FLUSH_DUPLICATE, FLUSH_OK};
use load::{assert_redis_holds, Load};
use viewcounter::counts::Counts;
use viewcounter::event::{ArticleId, Meta};
use viewcounter::failpoint;
use viewcounter::flusher::journal;
use viewcounter::flusher::spill;
use viewcounter::store::{ArticleDelta, Batch, BatchId};

const SET_ASIDE: &str = r#"viewcounter_spill_files_total{action="set_aside"}"#;

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

fn spill_files(dir: &Path) -> Vec<PathBuf> {
    files_ending(dir, ".json")
}

fn journal_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(journal::FILE_NAME)).map_or(0, |m| m.len())
}

/// Sends SIGTERM and returns how long the process took to exit 0.
fn terminate(mut process: Process) -> Duration {
    let started = Instant::now();
    process.terminate();
    let status = process.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_redis_is_down_keeps_the_journal_and_the_next_start_replays_exactly() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let process = Process::start(dir.path(), &["--redis-url", &redis.url()]);
    let load = Load::start(&Client::new(process.addr), 2);
    load.wait_accepted(2_000).await;

    redis.kill();
    load.wait_accepted(2_000).await;
    let ledger = load.stop().await;
    let took = terminate(process);

    assert!(took < Duration::from_secs(15), "SIGTERM took {took:?}");
    assert!(
        journal_bytes(dir.path()) > 0,
        "the journal keeps what Redis did not take"
    );
    assert!(spill_files(dir.path()).is_empty(), "no spill file any more");
    tokio::task::block_in_place(|| redis.restart());
    let app = TestApp::start_in(dir.path(), &["--redis-url", &redis.url()]).await;
    assert!(common::eventually(15, || async { journal_bytes(dir.path()) == 0 }).await);
    app.stop().await;
    assert_redis_holds(&redis.url(), &[&ledger]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_redis_hangs_exits_in_time_and_the_replay_counts_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let process = Process::start(dir.path(), &["--redis-url", &redis.url()]);
    let client = Client::new(process.addr);
    let load = Load::start(&client, 2);
    load.wait_accepted(2_000).await;
    // After a flush went through, Redis has the script: a hung flush can run later.
    assert!(common::eventually(10, || async { client.metric(FLUSH_OK).await >= 1.0 }).await);

    // A flush sent now hangs; Redis runs it after waking, once the service has
    // given up on it and kept it in the journal: the replay must then be a duplicate.
    redis.stall(6.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ledger = load.stop().await;
    let took = terminate(process);
    assert!(took < Duration::from_secs(15), "SIGTERM took {took:?}");
    assert!(journal_bytes(dir.path()) > 0, "the journal keeps the unanswered batch");

    assert!(common::eventually(10, || async { redis.cli(&["PING"]).as_deref() == Some("PONG") }).await);
    let app = TestApp::start_in(dir.path(), &["--redis-url", &redis.url()]).await;
    assert!(common::eventually(15, || async { journal_bytes(dir.path()) == 0 }).await);
    assert!(app.client.metric(FLUSH_DUPLICATE).await >= 1.0);
    app.stop().await;
    assert_redis_holds(&redis.url(), &[&ledger]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spill_found_while_redis_is_still_down_is_applied_once_it_returns() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    spill::write(dir.path(), "earlier", &[crashed_batch(1)]).unwrap();
    redis.kill();

    let url = redis.url();
    let app = TestApp::start_in(dir.path(), &["--redis-url", &url, "--final-flush-timeout", "500ms"]).await;
    app.client.view("during-outage").await;
    assert_eq!(spill_files(dir.path()).len(), 1, "kept until Redis acknowledges it");
    tokio::task::block_in_place(|| redis.restart());

    assert!(common::eventually(15, || async { spill_files(dir.path()).is_empty() }).await);
    assert_eq!(app.client.views("crash-000").await, 1);
    app.stop().await;
    let views = |a: &str| redis.stored(a, "views");
    assert_eq!(views("crash-000").as_deref(), Some("1"));
    assert_eq!(views("during-outage").as_deref(), Some("1"));
}

/// Batch `seq` of a crashed run: `seq` views and one telegram share on each of 100 articles.
fn crashed_batch(seq: u64) -> Batch {
    let articles = (0..100)
        .map(|i| ArticleDelta {
            article: ArticleId::parse(&format!("crash-{i:03}")).unwrap(),
            counts: Counts::new(seq, [("telegram", 1)]),
            meta: Meta::default(),
            visitors: Vec::new(),
        })
        .collect();
    Batch {
        id: BatchId {
            instance: "crashed".into(),
            epoch_ms: 1_700_000_000_000,
            seq,
            chunk: 0,
        },
        flushed_at_ms: 1_700_000_000_000,
        articles,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_applying_a_replayed_batch_and_deleting_its_file_counts_it_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Batch> = (1..=3).map(crashed_batch).collect();
    spill::write(dir.path(), "crashed", &batches).unwrap();

    let data_dir = dir.path().display().to_string();
    let url = redis.url();
    let (status, stderr) = run_to_exit(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
        "--redis-url",
        &url,
        "--failpoint",
        "exit-after-replay-apply",
    ]);
    assert_eq!(status.code(), Some(failpoint::EXIT_CODE), "{stderr}");
    assert_eq!(spill_files(dir.path()).len(), 1, "the file outlives the crash");
    // Batches are applied a few at a time, so the crash may follow more than one.
    let applied_before: u64 = redis
        .stored("crash-000", "share:telegram")
        .map_or(0, |n| n.parse().unwrap());
    assert!(applied_before >= 1, "a batch was applied before the crash");

    let app = TestApp::start_in(dir.path(), &["--redis-url", &url]).await;
    assert!(spill_files(dir.path()).is_empty());
    assert!(app.client.metric(FLUSH_DUPLICATE).await >= applied_before as f64);
    app.stop().await;
    for i in 0..100 {
        let a = format!("crash-{i:03}");
        assert_eq!(redis.stored(&a, "views").as_deref(), Some("6"), "{a}");
        assert_eq!(redis.stored(&a, "share:telegram").as_deref(), Some("3"), "{a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_spill_files_are_set_aside_and_the_service_counts() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spill-garbage.json"), b"\x00not json at all{").unwrap();
    let valid = spill::write(dir.path(), "truncated", &[crashed_batch(1)]).unwrap();
    let bytes = std::fs::read(&valid).unwrap();
    std::fs::write(&valid, &bytes[..bytes.len() / 2]).unwrap();

    let app = TestApp::start_in(dir.path(), &["--redis-url", &redis.url()]).await;
    app.client.view("after-garbage").await;

    assert_eq!(app.client.metric(SET_ASIDE).await, 2.0);
    assert_eq!(app.client.views("after-garbage").await, 1);
    app.stop().await;
    assert!(spill_files(dir.path()).is_empty());
    let aside: Vec<String> = files_ending(dir.path(), ".corrupt")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(aside, ["spill-garbage.corrupt", "spill-truncated.corrupt"]);
    assert_eq!(redis.stored("after-garbage", "views").as_deref(), Some("1"));
    assert_eq!(redis.stored("crash-000", "views"), None);
}
