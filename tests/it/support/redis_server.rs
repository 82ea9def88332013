//! A private `redis-server` on a free loopback port, with AOF on (`appendfsync
//! always`, so a SIGKILL loses nothing acknowledged) and DEBUG enabled, which the
//! tests kill, restart and stall at will. There is no mock: Redis must be installed
//! (`scripts/test` installs it).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A redis-server owned by one test; killed on drop.
pub struct RedisServer {
    pub port: u16,
    /// `always` for the fault tests; benchmarks may ask for `everysec`.
    fsync: &'static str,
    /// The cluster bus port of a cluster node.
    cluster_port: Option<u16>,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Killed by the kernel when the thread that started it ends (the shared cluster's
    /// nodes, which no drop ever stops).
    dies_with_its_thread: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The counts hash (prefix `vc`) and field of one counter of `article`.
fn counter_location(article: &str, counter: &str) -> (String, String) {
    use viewcounter::store::redis::keys::{article_field, Keys, Partition};
    (
        Keys::new("vc").counts(Partition::of(article)),
        article_field(article, counter),
    )
}

fn redis_server_binary() -> PathBuf {
    for candidate in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("redis-server is not installed: run scripts/test, which installs it (apt-get install redis-server)");
}

impl RedisServer {
    /// Starts a fresh server and waits until it answers PING.
    pub fn start() -> RedisServer {
        RedisServer::start_with_fsync("always")
    }

    /// Starts a fresh server with `appendfsync <policy>` (`always`, `everysec`).
    pub fn start_with_fsync(policy: &'static str) -> RedisServer {
        let mut server = RedisServer {
            fsync: policy,
            port: free_port(),
            cluster_port: None,
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            dies_with_its_thread: false,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:port/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let cluster: Vec<String> = match self.cluster_port {
            Some(bus) => ["--cluster-enabled", "yes", "--cluster-port", &bus.to_string()]
                .iter()
                .map(|a| a.to_string())
                .chain([
                    "--cluster-config-file".into(),
                    self.dir.path().join("nodes.conf").display().to_string(),
                ])
                .collect(),
            None => Vec::new(),
        };
        let mut command = Command::new(redis_server_binary());
        if self.dies_with_its_thread {
            die_with_the_spawning_thread(&mut command);
        }
        let child = command
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                &self.dir.path().display().to_string(),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
                "--save",
                "",
                "--enable-debug-command",
                "local",
                "--daemonize",
                "no",
            ])
            .args(cluster)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(Instant::now() < deadline, "redis-server did not answer PING");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL (data survives in the AOF).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Makes the server unresponsive for `secs` seconds (`DEBUG SLEEP`), in the background.
    pub fn stall(&self, secs: f64) {
        let port = self.port.to_string();
        let secs = secs.to_string();
        std::thread::spawn(move || {
            let _ = Command::new("redis-cli")
                .args(["-p", &port, "DEBUG", "SLEEP", &secs])
                .stdout(Stdio::null())
                // A test that kills the server mid-sleep would leave "Error: Server
                // closed the connection" in the suite's output.
                .stderr(Stdio::null())
                .status();
        });
    }

    /// Makes the server unresponsive for `secs` seconds (`DEBUG SLEEP`), sent before
    /// this returns (on a connection Redis has already answered once), so a command
    /// another client sends afterwards waits for the end of the sleep. Joining the
    /// handle waits for that end.
    pub fn stall_from_now(&self, secs: f64) -> std::thread::JoinHandle<()> {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        let mut pong = [0u8; 7];
        conn.write_all(b"PING\r\n").expect("send PING");
        conn.read_exact(&mut pong).expect("read PONG");
        conn.write_all(format!("DEBUG SLEEP {secs}\r\n").as_bytes())
            .expect("send DEBUG SLEEP");
        std::thread::spawn(move || {
            let mut ok = [0u8; 5];
            let _ = conn.read_exact(&mut ok);
        })
    }

    /// Runs a command with redis-cli and returns its trimmed output, or None on failure.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }

    /// One stored counter (`views`, `share:<network>`) of `article` under the prefix
    /// `vc`, read straight from its partition's counts hash; `None` when absent.
    pub fn stored(&self, article: &str, counter: &str) -> Option<String> {
        let (key, field) = counter_location(article, counter);
        self.cli(&["HGET", &key, &field]).filter(|v| !v.is_empty())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Has the kernel SIGKILL the child when the thread that spawns it ends (Linux's
/// `PR_SET_PDEATHSIG`): for a server no drop will ever stop.
fn die_with_the_spawning_thread(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl,
    // which is async-signal-safe and touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
}

/// A private Redis Cluster: three masters (no replicas) on free loopback ports, made
/// with `redis-cli --cluster create`; every node killed on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes, joins them and waits until every slot is served.
    pub fn start() -> RedisCluster {
        RedisCluster::start_nodes("always", false)
    }

    /// The seed URLs of one cluster shared by the tests that only talk to it through
    /// the service, each under a key prefix of its own ([`unique_prefix`]): forming a
    /// cluster takes about 2 s, which 29 contract cases paid each. Started once, by a
    /// thread that then waits for the end of the test process; the nodes die with it.
    /// Appends are flushed every second: no test kills these nodes.
    pub fn shared_urls() -> &'static str {
        static URLS: OnceLock<String> = OnceLock::new();
        URLS.get_or_init(|| {
            let (urls_tx, urls_rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("shared-redis-cluster".into())
                .spawn(move || {
                    let cluster = RedisCluster::start_nodes("everysec", true);
                    urls_tx.send(cluster.urls()).expect("the test waits for the URLs");
                    // The nodes' parent thread: it must outlive every test.
                    loop {
                        std::thread::park();
                    }
                })
                .expect("a thread for the shared cluster");
            urls_rx.recv().expect("the shared cluster formed (see the panic above)")
        })
    }

    fn start_nodes(fsync: &'static str, dies_with_its_thread: bool) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let mut node = RedisServer {
                    fsync,
                    port: free_port(),
                    cluster_port: Some(free_port()),
                    child: None,
                    dir: tempfile::tempdir().expect("tempdir"),
                    dies_with_its_thread,
                };
                node.spawn();
                node
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes.iter().all(|n| {
            n.cli(&["CLUSTER", "INFO"])
                .is_some_and(|i| i.contains("cluster_state:ok"))
        }) {
            assert!(Instant::now() < deadline, "the cluster did not reach cluster_state:ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisCluster { nodes }
    }

    /// The seed URLs, comma-separated, as `--redis-url` takes them.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(RedisServer::url).collect::<Vec<_>>().join(",")
    }
}

/// A `--redis-prefix` no other test of this process uses.
pub fn unique_prefix() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!("t{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}
