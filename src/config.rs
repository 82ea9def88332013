//! Configuration: every flag of the contract's command-line table, each also read from
//! its `VIEWCOUNTER_*` variable. Nothing else reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::event::{Networks, Signer, DEFAULT_NETWORKS};
use crate::failpoint::Failpoint;
use crate::http::client::Cidr;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, for log shippers.
    Json,
}

/// Which origins may call the API from a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: any origin.
    Any,
    /// Only these exact origins (e.g. `https://news.example`).
    List(Vec<String>),
}

impl AllowedOrigins {
    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if allowed.
    pub fn allow<'a>(&'a self, origin: Option<&'a str>) -> Option<&'a str> {
        match self {
            AllowedOrigins::Any => Some("*"),
            AllowedOrigins::List(list) => origin.filter(|o| list.iter().any(|a| a == o)),
        }
    }
}

fn parse_origins(s: &str) -> Result<AllowedOrigins, String> {
    let list: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(String::from)
        .collect();
    if list.iter().any(|o| o == "*") {
        return Ok(AllowedOrigins::Any);
    }
    if list.is_empty() {
        return Err("the list of origins is empty".into());
    }
    if let Some(bad) = list
        .iter()
        .find(|o| !(o.starts_with("http://") || o.starts_with("https://")))
    {
        return Err(format!("origin {bad:?} must start with http:// or https://"));
    }
    Ok(AllowedOrigins::List(list))
}

fn parse_networks(s: &str) -> Result<Networks, String> {
    Networks::new(s.split(',').filter(|n| !n.trim().is_empty()))
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("must be on or off".into()),
    }
}

fn parse_user_password(s: &str) -> Result<String, String> {
    match s.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => Ok(s.to_string()),
        _ => Err("must be USER:PASSWORD, both non-empty".into()),
    }
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Most `--worker-threads`: a runtime starts them all at once, and past the CPUs more
/// only cost memory and switches.
const MAX_WORKER_THREADS: usize = 1024;

/// A worker count: 1 to [`MAX_WORKER_THREADS`].
fn parse_worker_threads(s: &str) -> Result<usize, String> {
    match parse_positive(s)? {
        n if n > MAX_WORKER_THREADS => Err(format!("must be at most {MAX_WORKER_THREADS}")),
        n => Ok(n),
    }
}

fn parse_positive_u64(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A timeout: zero would close every connection (or fail every store call) at once.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(d)
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(10) {
        return Err("must be at least 10ms".into());
    }
    Ok(d)
}

/// A view-and-share counter for news sites.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "viewcounter",
    version,
    about,
    max_term_width = 100,
    args_override_self = true
)]
pub struct Config {
    /// Public API address.
    #[arg(
        long,
        env = "VIEWCOUNTER_LISTEN",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// Internal address for /metrics, /healthz and /readyz (unset: /metrics on the public address).
    #[arg(long, env = "VIEWCOUNTER_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Redis URL, redis://host:port/db (unset: the embedded store). Several comma-separated URLs mean Redis Cluster.
    #[arg(long, env = "VIEWCOUNTER_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,

    /// Treat --redis-url as Redis Cluster seed nodes.
    #[arg(long, env = "VIEWCOUNTER_REDIS_CLUSTER")]
    pub redis_cluster: bool,

    /// Prefix of every Redis key.
    #[arg(long, env = "VIEWCOUNTER_REDIS_PREFIX", default_value = "vc", value_name = "PREFIX")]
    pub redis_prefix: String,

    /// How long an API read waits for Redis before answering from the last known totals (or 503).
    #[arg(long, env = "VIEWCOUNTER_REDIS_READ_TIMEOUT", default_value = "500ms", value_name = "DUR", value_parser = parse_timeout)]
    pub redis_read_timeout: Duration,

    /// Directory of the embedded store and of the journal.
    #[arg(long, env = "VIEWCOUNTER_DATA_DIR", default_value = "./data", value_name = "DIR")]
    pub data_dir: PathBuf,

    /// How often pending counts are written to the store (250ms, 1s, 5s, ...).
    #[arg(long, env = "VIEWCOUNTER_FLUSH_INTERVAL", default_value = "1s", value_name = "DUR", value_parser = parse_interval)]
    pub flush_interval: Duration,

    /// How often unique-visitor marks are written to the store (at a flush; at most
    /// every flush). Each write costs Redis a few commands per article, so they are held
    /// longer than counts; visitors in reads lag by up to this much.
    #[arg(long, env = "VIEWCOUNTER_VISITOR_FLUSH_INTERVAL", default_value = "10s", value_name = "DUR", value_parser = parse_interval)]
    pub visitor_flush_interval: Duration,

    /// Bearer token for /v1/admin/* (unset: the admin API answers 404).
    #[arg(long, env = "VIEWCOUNTER_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// CORS origins for ingest and reads, comma-separated, or * for any.
    #[arg(long, env = "VIEWCOUNTER_ALLOWED_ORIGINS", default_value = "*", value_name = "LIST", value_parser = parse_origins)]
    pub allowed_origins: AllowedOrigins,

    /// Accepted share networks, comma-separated.
    #[arg(long, env = "VIEWCOUNTER_SHARE_NETWORKS", default_value = DEFAULT_NETWORKS, value_name = "LIST", value_parser = parse_networks)]
    pub share_networks: Networks,

    /// Events (POST /v1/events, the pixel) a second per client, in bursts of as many;
    /// a request over it gets 429 with Retry-After and counts nothing. 0: no limit.
    #[arg(long, env = "VIEWCOUNTER_RATE_LIMIT", default_value = "0", value_name = "N")]
    pub rate_limit: u32,

    /// Header naming the client behind the site's own proxy (e.g. X-Forwarded-For: its
    /// rightmost address not in --trusted-proxies); unset: the connection's peer address.
    #[arg(long, env = "VIEWCOUNTER_CLIENT_IP_HEADER", value_name = "NAME")]
    pub client_ip_header: Option<http::HeaderName>,

    /// CIDRs of the site's proxies, comma-separated, for --client-ip-header: the header is
    /// read only from them, and their addresses in it are skipped.
    #[arg(long, env = "VIEWCOUNTER_TRUSTED_PROXIES", value_name = "LIST", value_delimiter = ',', value_parser = clap::value_parser!(Cidr))]
    pub trusted_proxies: Vec<Cidr>,

    /// Count automated clients too (crawlers, link previews, HTTP libraries, headless browsers).
    #[arg(long, env = "VIEWCOUNTER_COUNT_BOTS")]
    pub count_bots: bool,

    /// Secrets for signed beacons, comma-separated (any one signs: rotation); unset: unsigned beacons count.
    #[arg(long, env = "VIEWCOUNTER_BEACON_SECRET", value_name = "LIST", hide_env_values = true, value_parser = Signer::parse)]
    pub beacon_secret: Option<Signer>,

    /// Capacity of the in-memory map of pending counters; new keys beyond it get 503.
    #[arg(long, env = "VIEWCOUNTER_MAX_PENDING_KEYS", default_value = "1000000", value_name = "N", value_parser = parse_positive)]
    pub max_pending_keys: usize,

    /// Log output format.
    #[arg(long, env = "VIEWCOUNTER_LOG_FORMAT", default_value = "text", value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "VIEWCOUNTER_MAX_BODY_BYTES", default_value = "65536", value_name = "BYTES", value_parser = parse_positive)]
    pub max_body_bytes: usize,

    /// How long a client may take to send its request headers.
    #[arg(long, env = "VIEWCOUNTER_HEADER_READ_TIMEOUT", default_value = "10s", value_name = "DUR", value_parser = parse_timeout)]
    pub header_read_timeout: Duration,

    /// At shutdown, how long in-flight requests may take to finish.
    #[arg(long, env = "VIEWCOUNTER_DRAIN_TIMEOUT", default_value = "10s", value_name = "DUR", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// At shutdown, how long the final flush may wait for the store before leaving the rest in the journal.
    #[arg(long, env = "VIEWCOUNTER_FINAL_FLUSH_TIMEOUT", default_value = "5s", value_name = "DUR", value_parser = humantime::parse_duration)]
    pub final_flush_timeout: Duration,

    /// Open connections at most on the public address (also bounded by the open-files
    /// limit, raised to its hard limit at start); past it new connections wait.
    #[arg(long, env = "VIEWCOUNTER_MAX_CONNECTIONS", default_value = "10000", value_name = "N", value_parser = parse_positive)]
    pub max_connections: usize,

    /// Threads that serve requests (the runtime's workers); unset: one per CPU the
    /// process may use. Fewer leave CPUs to a neighbour on the same machine (a sidecar, a
    /// proxy, a load generator): a worker that must share its CPU is preempted mid-request.
    #[arg(long, env = "VIEWCOUNTER_WORKER_THREADS", value_name = "N", value_parser = parse_worker_threads)]
    pub worker_threads: Option<usize>,

    /// A keep-alive connection with no request in progress is closed after this long.
    #[arg(long, env = "VIEWCOUNTER_IDLE_TIMEOUT", default_value = "60s", value_name = "DUR", value_parser = parse_timeout)]
    pub idle_timeout: Duration,

    /// A request body must arrive whole within this time of its head (else 408).
    #[arg(long, env = "VIEWCOUNTER_BODY_READ_TIMEOUT", default_value = "10s", value_name = "DUR", value_parser = parse_timeout)]
    pub body_read_timeout: Duration,

    /// Articles tracked in memory for rankings; past it the least recently seen leave
    /// the in-memory rankings (their counts stay in the store).
    #[arg(long, env = "VIEWCOUNTER_MAX_ARTICLES", default_value = "2000000", value_name = "N", value_parser = parse_positive)]
    pub max_articles: usize,

    /// How long a CDN or browser may reuse a read (Cache-Control max-age); 0 sends no-store.
    #[arg(long, env = "VIEWCOUNTER_READ_MAX_AGE", default_value = "10s", value_name = "DUR", value_parser = humantime::parse_duration)]
    pub read_max_age: Duration,

    /// Largest size of the local journal in bytes; at the cap, events for new keys get
    /// 503 until the store catches up.
    #[arg(long, env = "VIEWCOUNTER_JOURNAL_MAX_BYTES", default_value = "1073741824", value_name = "BYTES", value_parser = parse_positive_u64)]
    pub journal_max_bytes: u64,

    /// Serve the editors' page at /newsroom/ (and redirect / to it): on or off (404).
    #[arg(long, env = "VIEWCOUNTER_NEWSROOM", default_value = "on", value_name = "on|off", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub newsroom: bool,

    /// HTTP Basic authentication for the newsroom page, USER:PASSWORD (unset: open).
    #[arg(long, env = "VIEWCOUNTER_NEWSROOM_AUTH", value_name = "USER:PASSWORD", hide_env_values = true, value_parser = parse_user_password)]
    pub newsroom_auth: Option<String>,

    /// A tool instead of the server (none: run the server).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Test only: die abruptly at a chosen moment (see failpoint.rs).
    #[arg(long, env = "VIEWCOUNTER_FAILPOINT", value_name = "NAME", hide = true)]
    pub failpoint: Option<Failpoint>,
}

/// The tools the binary also is.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print the data-* attributes of a signed beacon, for a page's counter.js tag.
    Sign(SignArgs),
}

/// `viewcounter sign`: what a page's beacon carries, signed.
#[derive(Debug, Clone, clap::Args)]
pub struct SignArgs {
    /// The --beacon-secret list, as the service takes it: the first secret signs (when
    /// rotating, the new secret goes first).
    #[arg(long, env = "VIEWCOUNTER_BEACON_SECRET", value_name = "LIST", hide_env_values = true, value_parser = Signer::parse)]
    pub secret: Signer,
    /// The article id.
    #[arg(long, value_name = "ID", value_parser = parse_article)]
    pub article: String,
    /// Expiry, Unix seconds (default: 30 days from now).
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub exp: Option<u64>,
    /// The section, exactly as the page sends it.
    #[arg(long)]
    pub section: Option<String>,
    /// The language, exactly as the page sends it.
    #[arg(long)]
    pub lang: Option<String>,
    /// The title, exactly as the page sends it.
    #[arg(long)]
    pub title: Option<String>,
    /// The url, exactly as the page sends it.
    #[arg(long)]
    pub url: Option<String>,
}

fn parse_article(s: &str) -> Result<String, String> {
    crate::event::validate_article(s)
        .map(String::from)
        .map_err(|e| e.to_string())
}

impl SignArgs {
    /// The default lifetime of a signature.
    pub const DEFAULT_LIFETIME_SECS: u64 = 30 * 24 * 3600;

    /// The `data-*` attributes, signed, with `now` (Unix seconds) deciding the default expiry.
    pub fn attributes(&self, now: u64) -> String {
        let exp = self.exp.unwrap_or(now + Self::DEFAULT_LIFETIME_SECS).to_string();
        let field = |f: &Option<String>| f.as_deref().unwrap_or("").to_string();
        let signed = self.secret.first_signs(&crate::event::verify::Signed {
            article: &self.article,
            exp: &exp,
            section: &field(&self.section),
            lang: &field(&self.lang),
            title: &field(&self.title),
            url: &field(&self.url),
        });
        let mut out = vec![("article", self.article.clone()), ("exp", exp)];
        for (name, value) in [
            ("section", &self.section),
            ("lang", &self.lang),
            ("title", &self.title),
            ("url", &self.url),
        ] {
            if let Some(v) = value {
                out.push((name, v.clone()));
            }
        }
        out.push(("sig", signed));
        out.iter()
            .map(|(name, v)| format!("data-{name}=\"{}\"", html_escape(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Config {
    /// tokio reads `TOKIO_WORKER_THREADS` when `--worker-threads` is not given, and
    /// panics on a value that is not a positive integer: it is held to the flag's rule.
    fn check_tokio_worker_threads(&self) -> Result<(), String> {
        if self.worker_threads.is_some() {
            return Ok(());
        }
        match std::env::var("TOKIO_WORKER_THREADS") {
            Err(std::env::VarError::NotPresent) => Ok(()),
            Ok(v) => parse_worker_threads(&v)
                .map(|_| ())
                .map_err(|e| format!("TOKIO_WORKER_THREADS {e} (or set --worker-threads)")),
            Err(e) => Err(format!("TOKIO_WORKER_THREADS: {e}")),
        }
    }

    /// Checks what the per-flag parsers cannot: combinations of flags, and tokio's own
    /// variable for the worker count.
    pub fn validate(&self) -> Result<(), String> {
        self.check_tokio_worker_threads()?;
        if self.redis_cluster && self.redis_url.is_none() {
            return Err("--redis-cluster needs --redis-url".into());
        }
        if let Some(url) = &self.redis_url {
            if let Some(bad) = url
                .split(',')
                .find(|u| !(u.starts_with("redis://") || u.starts_with("rediss://")))
            {
                return Err(format!("--redis-url {bad:?} must start with redis:// or rediss://"));
            }
        }
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(['{', '}', ' ']) {
            return Err("--redis-prefix must be non-empty, without braces or spaces".into());
        }
        if self.admin_token.as_deref().is_some_and(str::is_empty) {
            return Err("--admin-token must not be empty".into());
        }
        if self.metrics_listen.is_some_and(|m| m == self.listen && m.port() != 0) {
            return Err("--metrics-listen must differ from --listen".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_is_off_unless_asked_for() {
        let c = Config::parse_from(["viewcounter"]);
        assert_eq!((c.rate_limit, c.client_ip_header), (0, None));
        let c = Config::parse_from([
            "viewcounter",
            "--rate-limit",
            "20",
            "--client-ip-header",
            "X-Forwarded-For",
        ]);
        assert_eq!(c.rate_limit, 20);
        assert_eq!(c.client_ip_header.unwrap(), "x-forwarded-for");
        assert!(Config::try_parse_from(["viewcounter", "--client-ip-header", "bad header"]).is_err());
        assert!(Config::try_parse_from(["viewcounter", "--rate-limit", "-1"]).is_err());
    }

    #[test]
    fn the_newsroom_is_on_and_open_unless_configured() {
        let c = Config::parse_from(["viewcounter"]);
        assert!(c.newsroom);
        assert_eq!(c.newsroom_auth, None);
        let c = Config::parse_from(["viewcounter", "--newsroom", "off", "--newsroom-auth", "ed:pw:x"]);
        assert!(!c.newsroom);
        assert_eq!(c.newsroom_auth.as_deref(), Some("ed:pw:x"));
        for bad in [
            &["--newsroom", "yes"][..],
            &["--newsroom-auth", "editor"],
            &["--newsroom-auth", ":pw"],
        ] {
            let args = std::iter::once("viewcounter").chain(bad.iter().copied());
            assert!(Config::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sign_prints_the_attributes_of_a_signed_beacon() {
        let c = Config::parse_from([
            "viewcounter",
            "sign",
            "--secret",
            "k",
            "--article",
            "a",
            "--exp",
            "1",
            "--title",
            "A \"quote\"",
        ]);
        let Some(Command::Sign(args)) = c.command else {
            panic!("a sign command")
        };
        let expected_sig = crate::event::verify::Signed {
            article: "a",
            exp: "1",
            title: "A \"quote\"",
            ..Default::default()
        }
        .sign("k");
        assert_eq!(
            args.attributes(0),
            format!(r#"data-article="a" data-exp="1" data-title="A &quot;quote&quot;" data-sig="{expected_sig}""#)
        );
        assert!(Config::parse_from(["viewcounter"]).command.is_none());
        assert!(Config::try_parse_from(["viewcounter", "sign", "--secret", "k", "--article", "a b"]).is_err());
    }

    #[test]
    fn sign_takes_the_services_secret_list_and_signs_with_the_first() {
        let sig = |secret: &str| {
            let c = Config::parse_from([
                "viewcounter",
                "sign",
                "--secret",
                secret,
                "--article",
                "a",
                "--exp",
                "9",
            ]);
            let Some(Command::Sign(args)) = c.command else {
                panic!("a sign command")
            };
            args.attributes(0)
        };
        assert_eq!(sig("new, old"), sig("new"));
        assert_eq!(sig(" new "), sig("new"));
        assert_ne!(sig("old,new"), sig("new"));
        for bad in ["", "k,", " "] {
            let args = ["viewcounter", "sign", "--secret", bad, "--article", "a"];
            assert!(Config::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bots_are_filtered_and_beacons_unsigned_unless_asked() {
        let c = Config::parse_from(["viewcounter"]);
        assert!(!c.count_bots && c.beacon_secret.is_none() && c.trusted_proxies.is_empty());
        let c = Config::parse_from([
            "viewcounter",
            "--count-bots",
            "--beacon-secret",
            "a,b",
            "--trusted-proxies",
            "10.0.0.0/8,127.0.0.1",
        ]);
        assert!(c.count_bots && c.beacon_secret.is_some());
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(Config::try_parse_from(["viewcounter", "--trusted-proxies", "10.0.0.0/99"]).is_err());
        assert!(Config::try_parse_from(["viewcounter", "--beacon-secret", ""]).is_err());
        let c = Config::try_parse_from(["viewcounter", "--worker-threads", "3"]).unwrap();
        assert_eq!(c.worker_threads, Some(3));
        assert!(Config::try_parse_from(["viewcounter", "--worker-threads", "0"]).is_err());
        assert!(Config::try_parse_from(["viewcounter", "--worker-threads", "1024"]).is_ok());
        assert!(Config::try_parse_from(["viewcounter", "--worker-threads", "1025"]).is_err());
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = Config::parse_from(["viewcounter"]);
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.flush_interval, Duration::from_secs(1));
        assert_eq!(c.max_pending_keys, 1_000_000);
        assert_eq!(c.allowed_origins, AllowedOrigins::Any);
        assert_eq!(c.share_networks.len(), 12);
        assert_eq!(c.max_body_bytes, 64 * 1024);
        assert_eq!((c.max_connections, c.max_articles), (10_000, 2_000_000));
        assert_eq!(c.read_max_age, Duration::from_secs(10));
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.worker_threads, None);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn durations_and_lists_parse() {
        let c = Config::parse_from([
            "viewcounter",
            "--flush-interval",
            "250ms",
            "--allowed-origins",
            "https://a.example, https://b.example",
            "--share-networks",
            "telegram,x",
        ]);
        assert_eq!(c.flush_interval, Duration::from_millis(250));
        assert_eq!(
            c.allowed_origins.allow(Some("https://b.example")),
            Some("https://b.example")
        );
        assert_eq!(c.allowed_origins.allow(Some("https://c.example")), None);
        assert_eq!(c.share_networks.names().collect::<Vec<_>>(), ["telegram", "x"]);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["viewcounter", "--flush-interval", "soon"][..],
            &["viewcounter", "--max-pending-keys", "0"],
            &["viewcounter", "--share-networks", "Tele Gram"],
            &["viewcounter", "--listen", "nowhere"],
            &["viewcounter", "--log-format", "xml"],
            // A zero timeout would close every connection or fail every store call.
            &["viewcounter", "--header-read-timeout", "0"],
            &["viewcounter", "--body-read-timeout", "0s"],
            &["viewcounter", "--idle-timeout", "0"],
            &["viewcounter", "--redis-read-timeout", "0ms"],
            &["viewcounter", "--visitor-flush-interval", "0"],
        ] {
            assert!(Config::try_parse_from(args).is_err(), "{args:?}");
        }
        let c = Config::parse_from(["viewcounter", "--redis-cluster"]);
        assert!(c.validate().is_err());
        let c = Config::parse_from(["viewcounter", "--admin-token", ""]);
        assert!(c.validate().is_err());
    }
}
