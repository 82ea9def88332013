//! The real `viewcounter` binary as a child process, for signals and exit codes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::base_args;

/// A running binary; killed on drop.
pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
    pub logs: mpsc::Receiver<String>,
}

/// Runs the binary to completion with `args` (no defaults added).
pub fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_viewcounter"))
        .args(args)
        .env_clear()
        .output()
        .expect("binary runs");
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

impl Process {
    /// Starts the binary on port 0 in `data_dir` and waits for its "listening" line.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Process {
        Process::spawn(Command::new(env!("CARGO_BIN_EXE_viewcounter")), data_dir, extra)
    }

    /// [`Process::start`] with the open-files limit, soft and hard, at `nofile`
    /// (through util-linux's `prlimit`, as an operator's unit file would set it).
    pub fn start_with_fd_limit(data_dir: &Path, extra: &[&str], nofile: u64) -> Process {
        let mut prlimit = Command::new("prlimit");
        prlimit
            .arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_viewcounter"));
        Process::spawn(prlimit, data_dir, extra)
    }

    fn spawn(mut command: Command, data_dir: &Path, extra: &[&str]) -> Process {
        let mut args = base_args(data_dir);
        args.remove(0);
        args.extend(["--log-format".into(), "json".into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = command
            .args(&args)
            .env("RUST_LOG", "info")
            // The worker count is what the tests set, not the caller's environment's.
            .env_remove("VIEWCOUNTER_WORKER_THREADS")
            .env_remove("TOKIO_WORKER_THREADS")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // A start replays the journal before it listens: a large one (tens of thousands
        // of articles in a debug build on a loaded machine) takes a while.
        let deadline = Instant::now() + Duration::from_secs(180);
        let addr = loop {
            let line = logs
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the binary logs a listening line");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == "listening" {
                break v["addr"].as_str().expect("addr field").parse().expect("addr parses");
            }
        };
        Process { child, addr, logs }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits up to `limit` for the exit; panics if it does not come.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the process did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every log line received so far.
    pub fn drain_logs(&self) -> Vec<String> {
        self.logs.try_iter().collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
