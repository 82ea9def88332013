//! A real headless Chromium driven through chromedriver (WebDriver), with a desktop
//! browser's User-Agent (the bot filter refuses "HeadlessChrome"), and a page server
//! that serves examples/article.html as a news site would.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::eventually;

/// A desktop Chrome user agent: headless Chromium's own says "HeadlessChrome".
pub const DESKTOP_UA: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// Recorded before any other script of the page runs: every uncaught error and
/// unhandled rejection, for the "throws nothing into the console" check.
const ERROR_RECORDER: &str = "<script>window.pageErrors=[];addEventListener('error',function(e){pageErrors.push(String(e.message))});addEventListener('unhandledrejection',function(e){pageErrors.push(String(e.reason))});</script>";

/// Serves examples/article.html at `/article.html` with `{{COUNTER_ORIGIN}}`
/// replaced by the app's origin, on its own port as a news site would.
pub struct PageServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl PageServer {
    pub async fn start(api: SocketAddr) -> PageServer {
        PageServer::start_with(api, &[]).await
    }

    /// Like [`PageServer::start`], with each `(from, to)` replaced in the page.
    pub async fn start_with(api: SocketAddr, edits: &[(&str, &str)]) -> PageServer {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/article.html");
        let html = std::fs::read_to_string(&path).expect("examples/article.html reads");
        let html = html
            .replace("{{COUNTER_ORIGIN}}", &format!("http://{api}"))
            .replace("<head>", &format!("<head>{ERROR_RECORDER}"));
        let html = edits.iter().fold(html, |h, (from, to)| h.replace(from, to));
        let html = Bytes::from(html);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("page server binds");
        let addr = listener.local_addr().expect("bound address");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let html = html.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    let page = req.uri().path() == "/article.html";
                    let resp = Response::builder()
                        .status(if page { StatusCode::OK } else { StatusCode::NOT_FOUND })
                        .header("content-type", "text/html; charset=utf-8")
                        .body(Full::new(if page { html.clone() } else { Bytes::new() }))
                        .expect("response builds");
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        PageServer { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/article.html", self.addr)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// chromedriver on a free port, in its own process group so that dropping it also
/// ends the Chromium it started (also when the test panics half-way).
pub struct ChromeDriver {
    child: Child,
    port: u16,
    chromium: PathBuf,
    _profile: tempfile::TempDir,
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

impl ChromeDriver {
    pub fn start() -> ChromeDriver {
        let (Some(driver), Some(chromium)) = (find_program(&["chromedriver"]), find_program(&["chromium"])) else {
            panic!(
                "the browser test needs chromium and chromedriver on PATH: run scripts/test, which installs \
                 the Debian packages chromium and chromium-driver"
            );
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child =
            std::os::unix::process::CommandExt::process_group(Command::new(&driver).arg(format!("--port={port}")), 0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts");
        let mut me = ChromeDriver {
            child,
            port,
            chromium,
            _profile: tempfile::tempdir().expect("profile dir"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("chromedriver exited early: {status}");
            }
            assert!(Instant::now() < deadline, "chromedriver did not listen within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        me
    }

    pub async fn connect(&self) -> Browser {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
        ]
        .map(String::from)
        .into_iter()
        .chain([
            format!("--user-data-dir={}", self._profile.path().display()),
            format!("--user-agent={DESKTOP_UA}"),
        ])
        .collect::<Vec<_>>();
        let caps = json!({ "goog:chromeOptions": { "binary": self.chromium, "args": args } });
        let Value::Object(caps) = caps else { unreachable!() };
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromedriver session with headless chromium")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The negative pid names the whole group: chromedriver and its Chromium.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// The text of the first element matching `css` ("" while it is missing).
pub async fn text(browser: &Browser, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(el) => el.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Polls the page until `css` shows `want`; panics with what it showed instead.
pub async fn wait_for_text(browser: &Browser, css: &str, want: &str) {
    let shown = eventually(10, || async move { text(browser, css).await == want }).await;
    assert!(shown, "{css} shows {:?}, not {want:?}", text(browser, css).await);
}

/// Saves a PNG screenshot of the page to `dir/name`.
pub async fn screenshot(browser: &Browser, dir: &Path, name: &str) -> PathBuf {
    let png = browser.screenshot().await.expect("screenshot");
    let path = dir.join(name);
    std::fs::write(&path, png).expect("screenshot written");
    path
}

/// The errors the page's scripts threw (see `ERROR_RECORDER`).
pub async fn page_errors(browser: &Browser) -> Value {
    browser
        .execute("return window.pageErrors || []", vec![])
        .await
        .unwrap_or(json!(["pageErrors unreadable"]))
}
