//! counter.js: how `GET /v1/counter.js` is served, and the script at work in a real
//! headless Chromium (driven through chromedriver) on examples/article.html.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{eventually, TestApp};
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use viewcounter::http::script::COUNTER_JS;

/// The size the script must stay under, in bytes as served (uncompressed).
const SIZE_BUDGET: usize = 3 * 1024;

/// A desktop Chrome user agent: headless Chromium's own says "HeadlessChrome".
const DESKTOP_UA: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

const ARTICLE: &str = "12345";

mod served {
    use super::*;

    #[tokio::test]
    async fn counter_js_is_served_as_cacheable_javascript_within_its_size_budget() {
        let app = TestApp::start(&[]).await;
        let r = app.client.get("/v1/counter.js").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-type"), "application/javascript; charset=utf-8");
        assert_eq!(r.header("cache-control"), "public, max-age=300");
        assert!(r.header("etag").starts_with('"'), "etag: {:?}", r.header("etag"));
        assert_eq!(r.text(), COUNTER_JS);
        assert!(r.body.len() < SIZE_BUDGET, "counter.js is {} bytes", r.body.len());
    }

    #[tokio::test]
    async fn a_client_holding_the_current_script_gets_304() {
        let app = TestApp::start(&[]).await;
        let etag = app.client.get("/v1/counter.js").await.header("etag");
        let r = app
            .client
            .send(Method::GET, "/v1/counter.js", &[("if-none-match", &etag)], "")
            .await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), etag);
        let stale = app
            .client
            .send(Method::GET, "/v1/counter.js", &[("if-none-match", "\"old\"")], "")
            .await;
        assert_eq!(stale.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn browsers_that_accept_gzip_get_it_under_2_kb() {
        use std::io::Read;
        let app = TestApp::start(&[]).await;
        let plain = app.client.get("/v1/counter.js").await;
        let gz = app
            .client
            .send(
                Method::GET,
                "/v1/counter.js",
                &[("accept-encoding", "gzip, deflate, br")],
                "",
            )
            .await;
        assert_eq!(gz.status, StatusCode::OK);
        assert_eq!(gz.header("content-encoding"), "gzip");
        assert_eq!(gz.header("vary"), "Accept-Encoding");
        assert_ne!(
            gz.header("etag"),
            plain.header("etag"),
            "one validator per representation"
        );
        assert!(gz.body.len() < 2048, "{} bytes on the wire", gz.body.len());
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&gz.body[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, plain.body);
        assert_eq!(plain.header("content-encoding"), "");
    }

    #[tokio::test]
    async fn posting_to_counter_js_is_405() {
        let app = TestApp::start(&[]).await;
        let r = app.client.send(Method::POST, "/v1/counter.js", &[], "x").await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.header("allow"), "GET, HEAD");
        assert_eq!(r.error_code(), "method_not_allowed");
    }
}

/// Serves examples/article.html at `/article.html` with `{{COUNTER_ORIGIN}}`
/// replaced by the app's origin, on its own port as a news site would.
struct PageServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl PageServer {
    async fn start(api: SocketAddr) -> PageServer {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/article.html");
        let html = std::fs::read_to_string(&path).expect("examples/article.html reads");
        let html = Bytes::from(html.replace("{{COUNTER_ORIGIN}}", &format!("http://{api}")));
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

    fn url(&self) -> String {
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
struct ChromeDriver {
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
    fn start() -> ChromeDriver {
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

    async fn connect(&self) -> Browser {
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
async fn text(browser: &Browser, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(el) => el.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Polls the page until `css` shows `want`; panics with what it showed instead.
async fn wait_for_text(browser: &Browser, css: &str, want: &str) {
    let shown = eventually(10, || async move { text(browser, css).await == want }).await;
    assert!(shown, "{css} shows {:?}, not {want:?}", text(browser, css).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_article_page_counts_one_view_a_telegram_share_and_a_reload_in_headless_chromium() {
    let app = TestApp::start(&[]).await;
    let page = PageServer::start(app.addr).await;
    let driver = ChromeDriver::start();
    let browser = driver.connect().await;
    let client = &app.client;
    let ua = browser
        .execute("return navigator.userAgent", vec![])
        .await
        .expect("script runs");
    assert!(!ua.as_str().unwrap_or("").contains("Headless"), "user agent: {ua}");

    // Open: one view, shown on the page (the read and the view do not race).
    browser.goto(&page.url()).await.expect("page opens");
    wait_for_text(&browser, ".byline [data-views]", "1").await;
    assert!(eventually(10, || async { client.views(ARTICLE).await == 1 }).await);
    wait_for_text(&browser, "li[data-article='12346'] [data-views]", "0").await;

    // Share on Telegram: the page's own handler opens a window (stubbed here, as
    // print would be), counter.js counts one share and shows it.
    browser
        .execute(
            "window.open = function (u) { window.opened = u; return null; }; window.print = function () {};",
            vec![],
        )
        .await
        .expect("stubs install");
    let telegram = browser
        .find(Locator::Css("[data-share='telegram']"))
        .await
        .expect("button");
    telegram.click().await.expect("click");
    let shares = || async { client.article(ARTICLE).await["shares"].clone() };
    assert!(eventually(10, || async { shares().await == json!({"telegram": 1}) }).await);
    wait_for_text(&browser, ".byline [data-shares]", "1").await;
    let opened = browser
        .execute("return window.opened", vec![])
        .await
        .expect("script runs");
    assert!(
        opened.as_str().unwrap_or("").starts_with("https://t.me/share/url?url="),
        "{opened}"
    );

    // Reload: a second view, and the page shows it.
    browser.refresh().await.expect("reload");
    wait_for_text(&browser, ".byline [data-views]", "2").await;
    assert!(eventually(10, || async { client.views(ARTICLE).await == 2 }).await);

    // Closing the page (pagehide) must not send the view again.
    browser.close().await.expect("browser closes");
    let article = client.article(ARTICLE).await;
    assert_eq!(article["views"], 2, "{article}");
    assert_eq!(article["shares"], json!({"telegram": 1}), "{article}");
    let batch_reads = client
        .metric(r#"viewcounter_http_requests_total{route="/v1/articles",status="200"}"#)
        .await;
    assert_eq!(batch_reads, 2.0, "one batch read per page load");
}
