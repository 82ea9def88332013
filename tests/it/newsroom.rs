//! The newsroom: `/newsroom/` served from the binary (on, off, behind Basic auth, `/`
//! redirecting to it), and the page at work in headless Chromium on each store after a
//! seeded set of events: the ranking against `/v1/top`, a filter kept in the URL, the
//! article view's series, phone width, and the service going away.

use crate::support as common;

use common::browser::{screenshot, ChromeDriver};
use common::{eventually, Backend, Client, RedisServer, TestApp};
use fantoccini::{Client as Browser, Locator};
use http::{Method, StatusCode};
use serde_json::{json, Value};

mod served {
    use super::*;

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_from_the_binary() {
        let app = TestApp::start(&[]).await;
        let page = app.client.get("/newsroom/").await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
        assert!(page.header("content-security-policy").contains("default-src 'self'"));
        for asset in [
            "app.js",
            "app.css",
            "vendor/uPlot.iife.min.js",
            "vendor/uPlot.min.css",
            "vendor/uPlot.LICENSE",
        ] {
            assert!(
                page.text().contains(asset) || asset.ends_with("LICENSE"),
                "{asset} is linked"
            );
            let r = app.client.get(&format!("/newsroom/{asset}")).await;
            assert_eq!(r.status, StatusCode::OK, "{asset}");
        }
        assert_eq!(
            app.client.get("/newsroom/missing.js").await.status,
            StatusCode::NOT_FOUND
        );
        let bare = app.client.get("/newsroom").await;
        assert_eq!(
            (bare.status, bare.header("location")),
            (StatusCode::FOUND, "/newsroom/".to_string())
        );
        let root = app.client.get("/").await;
        assert_eq!(
            (root.status, root.header("location")),
            (StatusCode::FOUND, "/newsroom/".to_string())
        );
    }

    #[tokio::test]
    async fn newsroom_off_answers_404_also_at_the_root() {
        let app = TestApp::start(&["--newsroom", "off"]).await;
        for path in ["/newsroom/", "/newsroom", "/newsroom/app.js", "/"] {
            let r = app.client.get(path).await;
            assert_eq!(
                (r.status, r.error_code()),
                (StatusCode::NOT_FOUND, "not_found".to_string()),
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn newsroom_auth_asks_for_basic_credentials_and_checks_them() {
        let app = TestApp::start(&["--newsroom-auth", "editor:s3cret"]).await;
        let r = app.client.get("/newsroom/").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.header("www-authenticate"),
            r#"Basic realm="viewcounter newsroom", charset="UTF-8""#
        );
        assert_eq!(r.error_code(), "unauthorized");
        let wrong = basic(&app.client, "/newsroom/", "ZWRpdG9yOndyb25n").await; // editor:wrong
        assert_eq!(wrong, StatusCode::UNAUTHORIZED);
        let right = basic(&app.client, "/newsroom/app.js", "ZWRpdG9yOnMzY3JldA==").await; // editor:s3cret
        assert_eq!(right, StatusCode::OK);
        // What the page reads is the public API, open as before.
        assert_eq!(app.client.get("/v1/meta").await.status, StatusCode::OK);
    }

    async fn basic(client: &Client, path: &str, token: &str) -> StatusCode {
        let auth = format!("Basic {token}");
        client
            .send(Method::GET, path, &[("authorization", &auth)], "")
            .await
            .status
    }
}

/// Views with titles, sections and languages, and shares on several networks.
async fn seed(client: &Client) {
    let mut lines = Vec::new();
    let articles = [
        ("budget-2027", "politics", "en", "The budget, line by line", 40),
        ("derby", "sport", "en", "The derby in numbers", 25),
        ("election-az", "politics", "az", "Seçkilərin nəticələri", 12),
        ("transfer", "sport", "en", "Summer transfers so far", 7),
    ];
    for (id, section, lang, title, views) in articles {
        for _ in 0..views {
            lines.push(
                json!({"type": "view", "article": id, "section": section, "lang": lang, "title": title,
                       "url": format!("https://daily.example/{section}/{id}")})
                .to_string(),
            );
        }
    }
    for (id, network, n) in [
        ("derby", "telegram", 6),
        ("derby", "whatsapp", 2),
        ("budget-2027", "x", 3),
    ] {
        for _ in 0..n {
            lines.push(json!({"type": "share", "article": id, "network": network}).to_string());
        }
    }
    let r = client.post_ndjson(lines.join("\n")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let ranked = eventually(20, || async {
        client.get("/v1/top?window=24h&limit=20").await.json()["articles"]
            .as_array()
            .is_some_and(|a| a.len() == 4)
    });
    assert!(ranked.await, "the seeded articles reach /v1/top");
}

/// The page's rows as (article id, count shown with its separators removed).
async fn rows(browser: &Browser) -> Vec<(String, u64)> {
    let v = browser
        .execute(
            "return Array.prototype.map.call(document.querySelectorAll('#top tbody tr'), function (tr) { \
               return [tr.dataset.article, tr.querySelector('.count').textContent]; })",
            vec![],
        )
        .await
        .expect("script runs");
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let digits: String = r[1]
                .as_str()
                .unwrap_or("")
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            (r[0].as_str().unwrap().to_string(), digits.parse().unwrap_or(0))
        })
        .collect()
}

async fn ranking(client: &Client, query: &str) -> (Vec<(String, u64)>, Value) {
    let top = client.get(&format!("/v1/top?limit=20&{query}")).await.json();
    let pairs = top["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["article"].as_str().unwrap().to_string(), a["count"].as_u64().unwrap()))
        .collect();
    (pairs, top)
}

async fn js(browser: &Browser, script: &str) -> Value {
    browser.execute(script, vec![]).await.expect("script runs")
}

async fn wait_js(browser: &Browser, script: &str, secs: u64) -> bool {
    eventually(secs, || async { js(browser, script).await == json!(true) }).await
}

async fn the_newsroom_ranks_filters_and_charts(backend: Backend, auth: bool) {
    let mut flags = vec!["--read-max-age", "0"];
    if auth {
        flags.extend(["--newsroom-auth", "editor:s3cret"]);
    }
    let app = TestApp::start_on(&backend, &flags).await;
    let client = app.client.clone();
    seed(&client).await;
    let driver = ChromeDriver::start();
    let browser = driver.connect().await;
    let shots = tempfile::tempdir().unwrap();
    let base = if auth {
        format!("http://editor:s3cret@{}/newsroom/", app.addr)
    } else {
        format!("http://{}/newsroom/", app.addr)
    };

    // The board: /v1/top's ranking, row for row, with titles linked where known.
    browser.goto(&base).await.expect("page opens");
    let (want, top) = ranking(&client, "window=24h").await;
    let shown = eventually(20, || async { rows(&browser).await == want }).await;
    let status = js(
        &browser,
        "return document.body ? document.body.innerText.slice(0, 300) : 'no body'",
    )
    .await;
    assert!(shown, "{:?} vs {want:?}; the page shows {status}", rows(&browser).await);
    for entry in top["articles"].as_array().unwrap() {
        let id = entry["article"].as_str().unwrap();
        let title = js(
            &browser,
            &format!("return document.querySelector('tr[data-article=\"{id}\"] .title').firstChild.textContent"),
        )
        .await;
        assert_eq!(title.as_str().unwrap(), entry["title"].as_str().unwrap_or(id), "{id}");
        if let Some(url) = entry["url"].as_str() {
            let href = js(
                &browser,
                &format!("return document.querySelector('tr[data-article=\"{id}\"] .title a').getAttribute('href')"),
            )
            .await;
            assert_eq!(href, json!(url));
        }
    }
    let telegram = js(
        &browser,
        "return document.querySelector('tr[data-article=\"derby\"] .chip[data-network=\"telegram\"]').textContent",
    )
    .await;
    assert_eq!(telegram, json!("telegram 6"));
    assert!(
        wait_js(
            &browser,
            "return document.querySelectorAll('#top .spark canvas').length === 4",
            10
        )
        .await,
        "a sparkline per row"
    );
    let sections = js(&browser, "return Array.prototype.map.call(document.querySelectorAll('#section option'), function (o) { return o.value; })").await;
    assert_eq!(sections, json!(["", "politics", "sport"]));
    screenshot(&browser, shots.path(), "newsroom.png").await;

    // A filter: the URL keeps it, the rows follow /v1/top's filtered ranking.
    browser
        .find(Locator::Css("#section"))
        .await
        .unwrap()
        .select_by_value("sport")
        .await
        .unwrap();
    let (sport, _) = ranking(&client, "window=24h&section=sport").await;
    assert_eq!(sport.len(), 2);
    assert!(
        eventually(10, || async { rows(&browser).await == sport }).await,
        "{:?}",
        rows(&browser).await
    );
    let url = browser.current_url().await.unwrap();
    assert!(url.query().unwrap_or("").contains("section=sport"), "{url}");
    browser
        .find(Locator::Css("[data-metric='shares']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let (shared, _) = ranking(&client, "metric=shares&window=24h&section=sport").await;
    assert!(
        eventually(10, || async { rows(&browser).await == shared }).await,
        "{:?}",
        rows(&browser).await
    );
    // A shared link opens the same view.
    browser.goto(url.as_str()).await.unwrap();
    assert!(eventually(10, || async { rows(&browser).await == sport }).await);
    // A link with a filter the service refuses is not an outage: the filter is cleared
    // and the page says so.
    browser.goto(&format!("{base}?section=sport&lang=x")).await.unwrap();
    assert!(
        eventually(10, || async { rows(&browser).await == sport }).await,
        "{:?}",
        rows(&browser).await
    );
    let notice = js(
        &browser,
        "var n = document.querySelector('#notice'); return n.hidden ? '' : n.textContent",
    )
    .await;
    assert!(notice.as_str().unwrap().contains(r#"lang "x""#), "{notice}");
    assert_eq!(
        js(&browser, "return document.querySelector('#down').hidden").await,
        json!(true)
    );
    let url = browser.current_url().await.unwrap();
    assert_eq!(url.query(), Some("section=sport"), "{url}");

    // The article view: hourly and daily series as the API gives them.
    browser
        .find(Locator::Css("tr[data-article='derby'] .count"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let hours = client.get("/v1/articles/derby/series?window=48h").await.json();
    let sum = |v: &Value, k: &str| {
        v["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[k].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!((sum(&hours, "views"), sum(&hours, "shares")), (25, 8));
    let drawn = "var h = document.querySelector('#chart-hours'), d = document.querySelector('#chart-days'); \
         return h.dataset.points === '48' && h.dataset.views === '25' && h.dataset.shares === '8' && \
         d.dataset.points === '90' && d.dataset.views === '25' && !!h.querySelector('canvas');";
    assert!(wait_js(&browser, drawn, 10).await, "the charts show the series");
    assert_eq!(
        js(&browser, "return document.querySelector('#a-views').textContent").await,
        json!("25")
    );
    let networks = js(&browser, "return Array.prototype.map.call(document.querySelectorAll('#a-networks tr'), function (tr) { return tr.dataset.network; })").await;
    assert_eq!(networks, json!(["telegram", "whatsapp"]));
    assert!(browser
        .current_url()
        .await
        .unwrap()
        .query()
        .unwrap_or("")
        .contains("article=derby"));
    screenshot(&browser, shots.path(), "newsroom-article.png").await;

    // Phone width: nothing wider than the screen.
    browser.set_window_size(390, 844).await.unwrap();
    browser.back().await.unwrap();
    assert!(eventually(10, || async { !rows(&browser).await.is_empty() }).await);
    let fits = "var t = document.querySelector('.table-wrap'); \
                return document.documentElement.scrollWidth <= window.innerWidth + 1 && t.scrollWidth <= t.clientWidth + 1";
    let fit = wait_js(&browser, fits, 10).await;
    let widths = js(
        &browser,
        "var t = document.querySelector('.table-wrap'); return [window.innerWidth, t.scrollWidth, t.clientWidth].concat(Array.prototype.map.call(document.querySelectorAll('#top tbody tr:first-child td'), function (td) { return td.className + ':' + td.offsetWidth; }))",
    )
    .await;
    assert!(fit, "the board fits a phone: {widths}");
    screenshot(&browser, shots.path(), "newsroom-phone.png").await;

    // The service goes away: the page says so plainly (within one 15 s refresh).
    browser.set_window_size(1280, 1000).await.unwrap();
    app.stop().await;
    assert!(
        wait_js(&browser, "return !document.querySelector('#down').hidden", 40).await,
        "the page says the service is unreachable"
    );
    let said = js(&browser, "return document.querySelector('#down').textContent").await;
    assert!(said.as_str().unwrap().contains("unreachable"), "{said}");
    screenshot(&browser, shots.path(), "newsroom-down.png").await;
    if let Ok(dir) = std::env::var("NEWSROOM_SCREENSHOTS") {
        for f in [
            "newsroom.png",
            "newsroom-article.png",
            "newsroom-phone.png",
            "newsroom-down.png",
        ] {
            std::fs::copy(shots.path().join(f), std::path::Path::new(&dir).join(f)).unwrap();
        }
    }
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newsroom_on_the_embedded_store_ranks_filters_and_charts_behind_basic_auth() {
    the_newsroom_ranks_filters_and_charts(Backend::Embedded, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newsroom_on_redis_ranks_filters_and_charts() {
    let redis = RedisServer::start();
    the_newsroom_ranks_filters_and_charts(Backend::Redis(redis.url()), false).await;
}
