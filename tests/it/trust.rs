//! Counts an editor can trust: bots are answered but not counted, metadata is
//! forgiving and its first writer stands (across instances sharing one Redis), the
//! admin API and signed beacons may change it, unsigned or forged beacons are refused
//! when a secret is set, and the rate limit counts events. Real processes, real
//! redis-server.

use crate::support as common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{Backend, RedisServer, TestApp};
use http::{Method, StatusCode};
use serde_json::json;
use viewcounter::event::verify::Signed;

const BROWSER: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const HEADLESS: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36";

async fn post_as(app: &TestApp, user_agent: Option<&str>, body: &str) -> common::Reply {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(ua) = user_agent {
        headers.push(("user-agent", ua));
    }
    app.client
        .send(Method::POST, "/v1/events", &headers, body.to_string())
        .await
}

fn view(article: &str) -> String {
    format!(r#"{{"type":"view","article":"{article}"}}"#)
}

/// The articles `/v1/top?window=all&query` lists; `Err` with the answer when it is not
/// a 200 (a 503 while a loaded box keeps Redis from answering in time).
async fn top_articles(app: &TestApp, query: &str) -> Result<Vec<String>, String> {
    let r = app.client.get(&format!("/v1/top?window=all&{query}")).await;
    if r.status != StatusCode::OK {
        return Err(format!("{} {}", r.status, r.text()));
    }
    Ok(r.json()["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["article"].as_str().unwrap().to_string())
        .collect())
}

/// Waits until `/v1/top?window=all&query` lists exactly `expect`.
async fn top_shows(app: &TestApp, query: &str, expect: &[&str]) {
    let ok = common::eventually(15, || async {
        top_articles(app, query).await.is_ok_and(|a| a == expect)
    })
    .await;
    assert!(
        ok,
        "/v1/top?{query} never showed {expect:?}: {:?}",
        top_articles(app, query).await
    );
}

/// Waits until the article's metadata field reads `expect`.
async fn field_becomes(app: &TestApp, article: &str, field: &str, expect: &str) {
    let ok = common::eventually(15, || async { app.client.article(article).await[field] == expect }).await;
    assert!(ok, "{article}.{field}: {}", app.client.article(article).await);
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn signed_view(secret: &str, article: &str, exp: u64, section: &str) -> String {
    let exp_text = exp.to_string();
    let sig = Signed {
        article,
        exp: &exp_text,
        section,
        ..Signed::default()
    }
    .sign(secret);
    json!({"type": "view", "article": article, "section": section, "exp": exp, "sig": sig}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_are_answered_but_not_counted_and_no_user_agent_counts() {
    let app = TestApp::start(&[]).await;
    for ua in [
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
        HEADLESS,
        "curl/8.5.0",
        "python-requests/2.32",
    ] {
        let r = post_as(&app, Some(ua), &format!("[{},{}]", view("b"), view("b"))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{ua}");
        assert_eq!(r.json(), json!({"accepted": 2, "counted": 0}), "{ua}");
    }
    let pixel = app
        .client
        .send(
            Method::GET,
            "/v1/pixel.gif?type=view&article=b",
            &[("user-agent", "Twitterbot/1.0")],
            "",
        )
        .await;
    assert_eq!(pixel.status, StatusCode::OK);
    assert_eq!(app.client.views("b").await, 0);
    assert_eq!(
        app.client
            .metric(r#"viewcounter_events_ignored_total{reason="bot"}"#)
            .await,
        9.0
    );

    let r = post_as(&app, Some(BROWSER), &view("b")).await;
    assert_eq!(r.json(), json!({"accepted": 1, "counted": 1}));
    let r = post_as(&app, None, &view("b")).await;
    assert_eq!(
        r.json(),
        json!({"accepted": 1, "counted": 1}),
        "no User-Agent: a site's own relay"
    );
    assert_eq!(app.client.views("b").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_bots_turns_the_filter_off() {
    let app = TestApp::start(&["--count-bots"]).await;
    let r = post_as(&app, Some("Googlebot/2.1"), &view("b")).await;
    assert_eq!(r.json(), json!({"accepted": 1, "counted": 1}));
    assert_eq!(app.client.views("b").await, 1);
}

async fn forgiving_metadata(backend: &Backend) {
    let app = TestApp::start_on(backend, &["--flush-interval", "50ms"]).await;
    let body = json!([
        {"type": "view", "article": "m-1", "section": "Analytics", "lang": "EN_gb",
         "title": "  Why page views\u{7} are hard ", "url": "https://site.example/a/m-1"},
        {"type": "view", "article": "m-2", "section": "Политика", "lang": "ru"},
        {"type": "view", "article": "m-3", "section": "a/b <script>", "url": "javascript:alert(1)"},
        {"type": "share", "article": "m-1", "network": "Telegram"},
        // Metadata of the wrong JSON type is invalid metadata: dropped, the view kept.
        {"type": "view", "article": "m-4", "section": {"$ne": ""}, "lang": ["en"], "title": true, "url": 5},
        // A letter's combining marks are part of it (a virama; an accent typed as a
        // second character, composed into one spelling).
        {"type": "view", "article": "m-5", "section": "हिन्दी", "lang": "hi"},
        {"type": "view", "article": "m-6", "section": "Cafe\u{301}"},
    ]);
    let r = post_as(&app, Some(BROWSER), &body.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json(), json!({"accepted": 7, "counted": 7}));

    top_shows(&app, "section=Analytics", &["m-1"]).await;
    top_shows(
        &app,
        "section=%D0%9F%D0%BE%D0%BB%D0%B8%D1%82%D0%B8%D0%BA%D0%B0",
        &["m-2"],
    )
    .await;
    top_shows(&app, "lang=en-GB", &["m-1"]).await;
    let hindi: String = form_urlencoded::byte_serialize("हिन्दी".as_bytes()).collect();
    top_shows(&app, &format!("section={hindi}"), &["m-5"]).await;
    top_shows(&app, "section=caf%C3%A9", &["m-6"]).await;
    assert_eq!(app.client.article("m-6").await["section"], "caf\u{e9}");
    let top = app.client.get("/v1/top?window=all&section=analytics").await.json();
    assert_eq!(
        (&top["articles"][0]["title"], &top["articles"][0]["url"]),
        (&json!("Why page views are hard"), &json!("https://site.example/a/m-1")),
        "{top}"
    );
    let a = app.client.article("m-1").await;
    assert_eq!(
        (
            &a["section"],
            &a["lang"],
            &a["title"],
            &a["url"],
            &a["shares"]["telegram"]
        ),
        (
            &json!("analytics"),
            &json!("en-gb"),
            &json!("Why page views are hard"),
            &json!("https://site.example/a/m-1"),
            &json!(1)
        )
    );
    let dropped = app.client.article("m-3").await;
    assert_eq!(dropped["views"], 1, "an invalid section is dropped, the view counted");
    assert!(
        dropped.get("section").is_none() && dropped.get("url").is_none(),
        "{dropped}"
    );
    let wrong_types = app.client.article("m-4").await;
    assert_eq!(wrong_types["views"], 1, "{wrong_types}");
    for f in ["section", "lang", "title", "url"] {
        assert!(wrong_types.get(f).is_none(), "{wrong_types}");
    }
    let field = |f: &str| format!(r#"viewcounter_event_fields_dropped_total{{field="{f}"}}"#);
    assert_eq!(app.client.metric(&field("section")).await, 2.0);
    assert_eq!(app.client.metric(&field("url")).await, 2.0);
    assert_eq!(app.client.metric(&field("lang")).await, 1.0);
    assert_eq!(app.client.metric(&field("title")).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgiving_metadata_is_normalised_stored_and_found_on_the_embedded_store() {
    forgiving_metadata(&Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgiving_metadata_is_normalised_stored_and_found_on_redis() {
    let redis = RedisServer::start();
    forgiving_metadata(&Backend::Redis(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_cannot_move_a_section_but_the_admin_can() {
    let redis = RedisServer::start();
    let backend = Backend::Redis(redis.url());
    let args = ["--flush-interval", "50ms", "--admin-token", "t0ken"];
    let (first, second) = (
        TestApp::start_on(&backend, &args).await,
        TestApp::start_on(&backend, &args).await,
    );
    let story = json!({"type": "view", "article": "s-1", "section": "politics", "title": "Budget"});
    for _ in 0..3 {
        assert_eq!(
            post_as(&first, None, &story.to_string()).await.status,
            StatusCode::ACCEPTED
        );
    }
    top_shows(&first, "section=politics", &["s-1"]).await;
    top_shows(&second, "section=politics", &["s-1"]).await;

    let forged = json!({"type": "view", "article": "s-1", "section": "casino", "title": "Win big"});
    assert_eq!(
        post_as(&second, None, &forged.to_string()).await.status,
        StatusCode::ACCEPTED
    );
    common::eventually(15, || async { second.client.views("s-1").await == 4 }).await;
    second.wait_metric_above(common::FLUSH_OK, 0.0, 15).await;
    for app in [&first, &second] {
        let a = app.client.article("s-1").await;
        assert_eq!(
            (&a["section"], &a["title"]),
            (&json!("politics"), &json!("Budget")),
            "{a}"
        );
        top_shows(app, "section=politics", &["s-1"]).await;
        top_shows(app, "section=casino", &[]).await;
    }

    let r = second
        .client
        .send(
            Method::PUT,
            "/v1/admin/articles/s-1",
            &[("authorization", "Bearer t0ken"), ("content-type", "application/json")],
            r#"{"section": "World News", "title": "Budget, revised"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["views"], 4, "metadata alone leaves the counts");
    for app in [&first, &second] {
        field_becomes(app, "s-1", "section", "world-news").await;
        field_becomes(app, "s-1", "title", "Budget, revised").await;
    }
    top_shows(&second, "section=world-news", &["s-1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_secret_only_valid_signatures_count_and_they_may_move_metadata() {
    let redis = RedisServer::start();
    let backend = Backend::Redis(redis.url());
    let args = ["--flush-interval", "50ms", "--beacon-secret", "new-secret,old-secret"];
    let (first, second) = (
        TestApp::start_on(&backend, &args).await,
        TestApp::start_on(&backend, &args).await,
    );
    let exp = now() + 3600;

    // Every write of g-1 goes through `second`, every read through `first`, which
    // holds none of it pending: a read of `first` shows what the store holds. (Signed
    // values from two instances land in the order their batches do: had `first` sent
    // "politics" too, its batch could land after the "world" below and move it back.)
    let r = post_as(&second, None, &signed_view("new-secret", "g-1", exp, "politics")).await;
    assert_eq!(r.json(), json!({"accepted": 1, "counted": 1}), "{}", r.text());
    let r = post_as(&second, None, &signed_view("old-secret", "g-1", exp, "politics")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "a secret being rotated out still signs");
    field_becomes(&first, "g-1", "section", "politics").await;

    let refused = [
        view("g-1"),
        signed_view("new-secret", "g-1", now() - 10, "politics"),
        signed_view("new-secret", "g-1", exp, "politics").replace("politics", "casino"),
        signed_view("another-secret", "g-1", exp, "politics"),
        format!(
            "[{},{}]",
            signed_view("new-secret", "g-1", exp, "politics"),
            view("g-2")
        ),
    ];
    for body in &refused {
        let r = post_as(&second, None, body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(r.error_code(), "invalid_signature", "{body}");
    }
    let pixel = second.client.get("/v1/pixel.gif?type=view&article=g-1").await;
    assert_eq!(pixel.status, StatusCode::FORBIDDEN);
    let sig = Signed {
        article: "g-1",
        exp: &exp.to_string(),
        ..Signed::default()
    }
    .sign("new-secret");
    let pixel = second
        .client
        .get(&format!("/v1/pixel.gif?type=view&article=g-1&exp={exp}&sig={sig}"))
        .await;
    assert_eq!(pixel.status, StatusCode::OK);

    let moved = signed_view("new-secret", "g-1", exp, "world");
    assert_eq!(post_as(&second, None, &moved).await.status, StatusCode::ACCEPTED);
    field_becomes(&first, "g-1", "section", "world").await;
    assert!(common::eventually(15, || async { first.client.views("g-1").await == 4 }).await);
    assert_eq!(second.client.views("g-2").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_counts_events_and_refuses_the_whole_request() {
    let app = TestApp::start(&["--rate-limit", "10"]).await;
    let batch = |n: usize| format!("[{}]", vec![view("r"); n].join(","));
    assert_eq!(post_as(&app, None, &batch(8)).await.status, StatusCode::ACCEPTED);
    let r = post_as(&app, None, &batch(5)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.error_code(), "rate_limited");
    assert!(r.header("retry-after").parse::<u64>().unwrap() >= 1);
    let r = post_as(&app, None, &batch(1_000)).await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "a batch larger than the burst never passes"
    );
    let said = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(said.contains("at most 10 events"), "and the client is told so: {said}");
    assert_eq!(app.client.views("r").await, 8, "a refused request counts nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    let app = TestApp::start(&[
        "--rate-limit",
        "2",
        "--client-ip-header",
        "X-Forwarded-For",
        "--trusted-proxies",
        "127.0.0.1/32",
    ])
    .await;
    let from = |client: &'static str| {
        let app = &app;
        async move {
            let headers = [("content-type", "application/json"), ("x-forwarded-for", client)];
            app.client
                .send(
                    Method::POST,
                    "/v1/events",
                    &headers,
                    format!("[{},{}]", view("p"), view("p")),
                )
                .await
        }
    };
    assert_eq!(from("203.0.113.1").await.status, StatusCode::ACCEPTED);
    assert_eq!(from("203.0.113.1").await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(from("6.6.6.6, 203.0.113.2").await.status, StatusCode::ACCEPTED);
    assert_eq!(
        from("203.0.113.2, 127.0.0.1").await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the proxy's own hop is skipped"
    );
}

/// `viewcounter sign` for article 12345 of section analytics, with the secret as
/// `--secret` or (`None`) from the environment; its line and whether it succeeded.
fn sign_12345(secret: Option<&str>, env: &[(&str, &str)]) -> (bool, String) {
    let mut args = vec![
        "sign",
        "--article",
        "12345",
        "--exp",
        "4000000000",
        "--section",
        "analytics",
    ];
    if let Some(s) = secret {
        args.extend(["--secret", s]);
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_viewcounter"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn the_sign_subcommand_prints_attributes_a_server_accepts() {
    let (ok, line) = sign_12345(Some("s"), &[]);
    assert!(ok);
    let sig = Signed {
        article: "12345",
        exp: "4000000000",
        section: "analytics",
        ..Signed::default()
    }
    .sign("s");
    assert_eq!(
        line.trim(),
        format!(r#"data-article="12345" data-exp="4000000000" data-section="analytics" data-sig="{sig}""#)
    );
    // The service's own list and variable work as they are: the first secret signs.
    assert_eq!(
        sign_12345(None, &[("VIEWCOUNTER_BEACON_SECRET", " s , old")]),
        (true, line)
    );
    let (status, stderr) = common::process::run_to_exit(&["sign", "--article", "a"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--secret"), "the line names what is missing: {stderr}");
}

#[test]
fn invalid_trust_flags_exit_2() {
    for args in [&["--trusted-proxies", "10.0.0.0/40"][..], &["--beacon-secret", "a,,b"]] {
        let (status, stderr) = common::process::run_to_exit(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
    }
}
