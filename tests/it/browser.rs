//! counter.js: how `GET /v1/counter.js` is served, and the script at work in a real
//! headless Chromium (driven through chromedriver) on examples/article.html.

use crate::support as common;

use common::browser::{page_errors, screenshot, text, wait_for_text, ChromeDriver, PageServer};
use common::{eventually, Client, TestApp};
use fantoccini::{Client as Browser, Locator};
use http::{Method, StatusCode};
use serde_json::json;
use viewcounter::http::script::COUNTER_JS;

/// The size the script must stay under, in bytes as served (uncompressed); BENCHMARKS.md
/// has its size raw and gzipped.
const SIZE_BUDGET: usize = 7 * 1024;

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
    async fn browsers_that_accept_gzip_get_it_under_3_kb() {
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
        assert!(gz.body.len() < 3072, "{} bytes on the wire", gz.body.len());
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

/// `n` as en-US formats it (what a page with `<html lang="en">` shows).
fn en(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Views and shares from before the page opens: the article has 12,344 views, three
/// Telegram shares and one on X; two other articles make a most-read list.
async fn seed(client: &Client) {
    let meta = |a: &str, section: &str, title: &str| {
        // A scheme in capitals is a valid url too, and linked like any other.
        let scheme = if section == "sport" { "HTTPS" } else { "https" };
        json!({"type": "view", "article": a, "section": section, "lang": "en", "title": title,
               "url": format!("{scheme}://daily.example/{section}/{a}")})
        .to_string()
    };
    let mut lines: Vec<String> = vec![meta(
        ARTICLE,
        "analytics",
        "Why page views are harder to count than they look",
    )];
    lines.extend((1..12_344).map(|_| format!(r#"{{"type":"view","article":"{ARTICLE}"}}"#)));
    lines.extend((0..20).map(|_| meta("12346", "analytics", "Reading the election turnout data")));
    lines.extend((0..10).map(|_| meta("12347", "sport", "The derby in numbers")));
    for network in ["telegram", "telegram", "telegram", "x"] {
        lines.push(format!(
            r#"{{"type":"share","article":"{ARTICLE}","network":"{network}"}}"#
        ));
    }
    for chunk in lines.chunks(1_000) {
        let r = client.post_ndjson(chunk.join("\n")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    }
    let ranked = eventually(10, || async {
        client.get("/v1/top?window=24h&limit=5").await.json()["articles"]
            .as_array()
            .is_some_and(|a| a.len() == 3)
    });
    assert!(ranked.await, "the seeded articles reach /v1/top");
}

/// The rows of a `data-top` list as (link text, href or "") in order.
async fn list_rows(browser: &Browser, css: &str) -> Vec<(String, String)> {
    let script = format!(
        "return Array.prototype.map.call(document.querySelectorAll({css:?} + ' li'), function (li) {{ \
           var a = li.querySelector('a'), t = li.firstChild; \
           return [t ? t.textContent : '', a ? a.getAttribute('href') : '', li.querySelector('small') ? li.querySelector('small').textContent : '']; }})"
    );
    let v = browser.execute(&script, vec![]).await.expect("script runs");
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let count = r[2].as_str().unwrap_or("").trim().to_string();
            (
                format!("{} {count}", r[0].as_str().unwrap_or("")),
                r[1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// What a list filled from `/v1/top?{query}` must show.
async fn expected_rows(client: &Client, query: &str) -> Vec<(String, String)> {
    let top = client.get(&format!("/v1/top?{query}")).await.json();
    top["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let label = a["title"].as_str().unwrap_or(a["article"].as_str().unwrap());
            let count = en(a["count"].as_u64().unwrap());
            (format!("{label} {count}"), a["url"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_article_page_shows_formatted_counts_share_buttons_and_most_read_links() {
    // Reads not cached (no-store), so the stop below is seen by the next load's reads
    // at once rather than after --read-max-age; the other test runs with the cache.
    let app = TestApp::start(&["--read-max-age", "0"]).await;
    let client = app.client.clone();
    seed(&client).await;
    let page = PageServer::start(app.addr).await;
    let driver = ChromeDriver::start();
    let browser = driver.connect().await;
    let shots = tempfile::tempdir().unwrap();
    let ua = browser
        .execute("return navigator.userAgent", vec![])
        .await
        .expect("script runs");
    assert!(!ua.as_str().unwrap_or("").contains("Headless"), "user agent: {ua}");

    // Open: one view, counted and shown with the page's number format.
    let before = expected_rows(&client, "window=24h&limit=5").await;
    assert_eq!(before.len(), 3);
    assert!(
        before[0].1.starts_with("https://daily.example/"),
        "titles and links: {before:?}"
    );
    browser.goto(&page.url()).await.expect("page opens");
    wait_for_text(&browser, ".stats [data-views]:not([data-format])", "12,345").await;
    assert!(eventually(10, || async { client.views(ARTICLE).await == 12_345 }).await);
    wait_for_text(&browser, ".stats [data-format='compact']", "12.3K").await;
    wait_for_text(&browser, ".stats [data-shares]", "4").await;
    wait_for_text(&browser, "[data-share='telegram'] [data-shares]", "3").await;
    wait_for_text(&browser, "[data-share='x'] [data-shares]", "1").await;
    wait_for_text(&browser, "[data-share='facebook'] [data-shares]", "0").await;
    // Visitors: the seeding client's one, and the browser's own once its mark has been
    // flushed (a read counts pending views, but visitors only from the store, so the
    // views can be there a flush before the mark is).
    let visitors_now = || async {
        client.article(ARTICLE).await["visitors"]
            .as_u64()
            .expect("reads carry visitors")
    };
    eventually(10, || async { visitors_now().await >= 2 }).await;
    let visitors = visitors_now().await;
    assert_eq!(visitors, 2, "the seeding client and the browser");
    let shown_visitors = eventually(10, || async {
        let shown = text(&browser, ".stats [data-visitors]").await;
        shown == en(visitors) || shown == en(visitors - 1)
    });
    assert!(
        shown_visitors.await,
        "{:?}",
        text(&browser, ".stats [data-visitors]").await
    );

    // The most-read lists: /v1/top's ranking (read as the page opened, with or without
    // its own view), as links where the article has a URL.
    let shown = eventually(10, || async {
        let rows = list_rows(&browser, "aside ol:nth-of-type(1)").await;
        rows == before || rows == expected_rows(&client, "window=24h&limit=5").await
    });
    assert!(
        shown.await,
        "{:?} vs {before:?}",
        list_rows(&browser, "aside ol:nth-of-type(1)").await
    );
    let analytics = expected_rows(&client, "window=7d&section=analytics&lang=en&limit=3").await;
    assert_eq!(analytics.len(), 2, "{analytics:?}");
    let rows = list_rows(&browser, "aside ol:nth-of-type(2)").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[1], analytics[1],
        "the article of the page may be shown before its own view"
    );
    screenshot(&browser, shots.path(), "article.png").await;

    // Share on Telegram: the page's own handler opens a window (stubbed here, as
    // print would be), counter.js counts one share and shows it beside the button.
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
    assert!(eventually(10, || async { shares().await == json!({"telegram": 4, "x": 1}) }).await);
    wait_for_text(&browser, "[data-share='telegram'] [data-shares]", "4").await;
    wait_for_text(&browser, ".stats [data-shares]", "5").await;
    let opened = browser
        .execute("return window.opened", vec![])
        .await
        .expect("script runs");
    assert!(
        opened.as_str().unwrap_or("").starts_with("https://t.me/share/url?url="),
        "{opened}"
    );

    // Reload: the same reader within 30 minutes is not a second view.
    browser.refresh().await.expect("reload");
    wait_for_text(&browser, "[data-share='telegram'] [data-shares]", "4").await;
    wait_for_text(&browser, ".stats [data-views]:not([data-format])", "12,345").await;
    let stored = browser
        .execute(
            "return JSON.parse(localStorage.getItem('viewcounter:' + arguments[0])).t",
            vec![json!(ARTICLE)],
        )
        .await
        .expect("script runs");
    assert!(
        stored.as_u64().is_some_and(|t| t > 0),
        "the view's time is remembered: {stored}"
    );
    assert_eq!(page_errors(&browser).await, json!([]));

    // The service stops, and something on its port accepts connections but never
    // answers: the cached script empties the placeholders after 3 s, never "…".
    let addr = app.addr;
    app.stop().await;
    let silent = tokio::net::TcpListener::bind(addr)
        .await
        .expect("the port is free again");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    browser.goto(&page.url()).await.expect("page opens");
    for css in [
        ".stats [data-views]",
        ".stats [data-visitors]",
        "[data-share='telegram'] [data-shares]",
    ] {
        let cleared = eventually(15, || async { text(&browser, css).await.is_empty() });
        assert!(cleared.await, "{css} shows {:?}", text(&browser, css).await);
    }
    let lists = eventually(15, || async { list_rows(&browser, "aside ol").await.is_empty() });
    assert!(lists.await, "{:?}", list_rows(&browser, "aside ol").await);
    screenshot(&browser, shots.path(), "article-service-down.png").await;
    assert_eq!(page_errors(&browser).await, json!([]));
    hold.abort();
    browser.close().await.expect("browser closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_is_not_counted_but_data_dedupe_0_counts_every_load() {
    let app = TestApp::start(&[]).await;
    let page = PageServer::start(app.addr).await;
    let driver = ChromeDriver::start();
    let browser = driver.connect().await;
    let client = &app.client;

    browser.goto(&page.url()).await.expect("page opens");
    wait_for_text(&browser, ".stats [data-views]:not([data-format])", "1").await;
    browser.refresh().await.expect("reload");
    wait_for_text(&browser, ".stats [data-views]:not([data-format])", "1").await;
    browser.goto(&page.url()).await.expect("page opens again");
    wait_for_text(&browser, ".stats [data-views]:not([data-format])", "1").await;
    browser.close().await.expect("browser closes");
    assert_eq!(client.views(ARTICLE).await, 1, "three loads, one view");

    // The same page with data-dedupe="0" in a new browser (a new profile: no cached
    // reads): every load counts, also when a reload's read comes from the HTTP cache.
    drop(driver);
    let driver = ChromeDriver::start();
    let page = PageServer::start_with(
        app.addr,
        &[("data-article=\"12345\"", "data-article=\"12345\" data-dedupe=\"0\"")],
    )
    .await;
    let browser = driver.connect().await;
    browser.goto(&page.url()).await.expect("page opens");
    wait_for_text(&browser, ".stats [data-views]:not([data-format])", "2").await;
    browser.refresh().await.expect("reload");
    wait_for_text(&browser, ".stats [data-views]:not([data-format])", "3").await;
    browser.close().await.expect("browser closes");
    assert!(eventually(10, || async { client.views(ARTICLE).await == 3 }).await);
    let batch_reads = client
        .metric(r#"viewcounter_http_requests_total{route="/v1/articles",status="200"}"#)
        .await;
    assert!(
        (1.0..=5.0).contains(&batch_reads),
        "at most one batch read per page load (the browser's cache answers some): {batch_reads}"
    );
}
