//! The servers the load benchmark compares, each on its own runtime with two workers:
//! a bare hyper server (read body, answer 204), viewcounter itself, and a server that
//! does one Redis INCR per request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::redis_server::RedisServer;

/// The addresses of the three targets.
pub struct Servers {
    pub bare: SocketAddr,
    pub service: SocketAddr,
    pub incr: SocketAddr,
    _runtimes: Vec<tokio::runtime::Runtime>,
    _data: tempfile::TempDir,
}

/// A runtime with two workers, as the service has on this machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).ok();
            let h = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let h = h.clone();
                    async move { Ok::<_, Infallible>(h(req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

impl Servers {
    /// Starts all three; the service uses `redis_url` unless `embedded`.
    pub fn start(redis_url: &str, embedded: bool) -> Servers {
        let data = tempfile::tempdir().unwrap();
        let bare_rt = runtime();
        let bare = bare_rt.block_on(serve(|req: Request<Incoming>| async move {
            let _ = req.into_body().collect().await;
            status(StatusCode::NO_CONTENT)
        }));

        let incr_rt = runtime();
        let url = redis_url.to_string();
        let incr = incr_rt.block_on(async move {
            let client = redis::Client::open(url).unwrap();
            let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
            serve(move |req: Request<Incoming>| {
                let mut conn = conn.clone();
                async move {
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let article = v["article"].as_str().unwrap_or("none").to_string();
                    let r: redis::RedisResult<i64> = redis::cmd("INCR")
                        .arg(format!("incr:views:{article}"))
                        .query_async(&mut conn)
                        .await;
                    status(if r.is_ok() {
                        StatusCode::NO_CONTENT
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    })
                }
            })
            .await
        });

        let service_rt = runtime();
        let service = start_service(&service_rt, data.path(), (!embedded).then_some(redis_url));
        Servers {
            bare,
            service,
            incr,
            _runtimes: vec![bare_rt, incr_rt, service_rt],
            _data: data,
        }
    }
}

/// Starts viewcounter in process on `rt` (port 0, `data_dir`, Redis if `redis_url`)
/// and returns its address once it serves.
pub fn start_service(rt: &tokio::runtime::Runtime, data_dir: &Path, redis_url: Option<&str>) -> SocketAddr {
    start_service_with(rt, data_dir, redis_url, &[])
}

/// [`start_service`] with more command-line flags.
pub fn start_service_with(
    rt: &tokio::runtime::Runtime,
    data_dir: &Path,
    redis_url: Option<&str>,
    extra: &[&str],
) -> SocketAddr {
    let mut args = vec![
        "viewcounter".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
    ];
    if let Some(url) = redis_url {
        args.extend(["--redis-url".into(), url.to_string()]);
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let config = viewcounter::Config::parse_from(args);
    rt.block_on(async move {
        let app = viewcounter::App::build(config).await.expect("service builds");
        let addr = app.public_addr();
        tokio::spawn(app.run_until(tokio_util::sync::CancellationToken::new()));
        addr
    })
}

/// Total calls in INFO commandstats, minus the INFO/CONFIG calls of the benchmark itself.
pub fn redis_calls(redis: &RedisServer) -> u64 {
    let info = redis.cli(&["INFO", "commandstats"]).unwrap_or_default();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info") && !l.starts_with("cmdstat_config"))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

/// `name=calls` of every command run, most first.
pub fn redis_breakdown(redis: &RedisServer) -> String {
    let info = redis.cli(&["INFO", "commandstats"]).unwrap_or_default();
    let mut rows: Vec<(u64, String)> = info
        .lines()
        .filter_map(|l| {
            let name = l.strip_prefix("cmdstat_")?.split(':').next()?.to_string();
            let calls = l.split("calls=").nth(1)?.split(',').next()?.parse().ok()?;
            Some((calls, name))
        })
        .collect();
    rows.sort_unstable_by(|a, b| b.cmp(a));
    rows.iter()
        .map(|(c, n)| format!("{n}={c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A keep-alive HTTP/1.1 client connection to `addr` (no Nagle delay), its driver
/// spawned on the current runtime.
pub async fn connect<B>(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).ok();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}
