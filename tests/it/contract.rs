//! The API of docs/api.md, endpoint by endpoint and error by error. Every
//! case runs against each store backend (see the `contract_tests!` list at the end).

use crate::support as common;

use common::{Backend, RedisCluster, RedisServer, TestApp};

/// A backend for one test, and the Redis servers it owns (if any).
pub struct Fixture {
    backend: Backend,
    _redis: Option<RedisServer>,
}

fn embedded() -> Fixture {
    Fixture {
        backend: Backend::Embedded,
        _redis: None,
    }
}

fn redis() -> Fixture {
    let server = RedisServer::start();
    Fixture {
        backend: Backend::Redis(server.url()),
        _redis: Some(server),
    }
}

/// One cluster for every case (it takes about 2 s to form), each case under its own
/// key prefix.
fn redis_cluster() -> Fixture {
    Fixture {
        backend: Backend::SharedRedis {
            urls: RedisCluster::shared_urls().to_string(),
            prefix: common::unique_prefix(),
        },
        _redis: None,
    }
}

mod cases {
    pub use super::series_cases::*;
    pub use super::top_cases::*;
    use super::*;
    use http::{Method, StatusCode};
    use serde_json::json;

    async fn app(fx: &Fixture, extra: &[&str]) -> TestApp {
        TestApp::start_on(&fx.backend, extra).await
    }

    pub async fn a_view_is_counted_and_read_back(fx: Fixture) {
        let app = app(&fx, &[]).await;
        let r = app
            .client
            .post_events(r#"{"type":"view","article":"12345","section":"analytics","lang":"en"}"#)
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        assert_eq!(r.json(), json!({"accepted": 1, "counted": 1}));
        assert!(r.header("content-type").starts_with("application/json"));
        let mut read = app.client.article("12345").await;
        let visitors = read.as_object_mut().unwrap().remove("visitors");
        assert!(
            matches!(visitors.and_then(|v| v.as_u64()), Some(0 | 1)),
            "flushed or not yet"
        );
        assert_eq!(
            read,
            json!({"article": "12345", "views": 1, "shares": {}, "shares_total": 0, "section": "analytics", "lang": "en"})
        );
    }

    pub async fn arrays_ndjson_and_text_plain_bodies_are_accepted(fx: Fixture) {
        let app = app(&fx, &[]).await;
        let array = r#"[{"type":"view","article":"a"},{"type":"share","article":"a","network":"telegram"}]"#;
        let ndjson = "{\"type\":\"view\",\"article\":\"a\"}\n{\"type\":\"view\",\"article\":\"a\"}\n";
        for (ct, body, n) in [
            ("application/json", array, 2),
            ("application/x-ndjson", ndjson, 2),
            ("text/plain;charset=UTF-8", r#"{"type":"view","article":"a"}"#, 1),
        ] {
            let r = app
                .client
                .send(Method::POST, "/v1/events", &[("content-type", ct)], body)
                .await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{ct}: {}", r.text());
            assert_eq!(r.json()["accepted"], n);
        }
        let a = app.client.article("a").await;
        assert_eq!(
            (a["views"].as_u64(), a["shares"]["telegram"].as_u64()),
            (Some(4), Some(1))
        );
    }

    pub async fn a_batch_with_one_bad_event_counts_nothing(fx: Fixture) {
        let app = app(&fx, &[]).await;
        let body =
            r#"[{"type":"view","article":"a"},{"type":"view","article":"b"},{"type":"view","article":"bad id"}]"#;
        let r = app.client.post_events(body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.error_code(), "invalid_article");
        assert_eq!(r.json()["error"]["index"], 2);
        assert!(r.json()["error"]["message"].is_string());
        assert_eq!(app.client.views("a").await, 0);
        assert_eq!(app.client.views("b").await, 0);
    }

    pub async fn a_batch_names_its_first_bad_event_whatever_makes_it_bad(fx: Fixture) {
        let app = app(&fx, &[]).await;
        let ok = r#"{"type":"view","article":"a"}"#;
        let bad_id = r#"{"type":"view","article":"bad id"}"#;
        let cases = [
            // An invalid event before one that is not an object, a duplicate key, or
            // broken JSON: the invalid one is named, in an array and in NDJSON alike.
            (format!("[{ok},{bad_id},5]"), "invalid_article", 1),
            (
                format!(r#"[{bad_id},{{"type":"view","article":"a","article":"b"}}]"#),
                "invalid_article",
                0,
            ),
            (format!("{ok}\n{bad_id}\n{{\"type\":\"view\""), "invalid_article", 1),
            (format!(r#"[{ok},{bad_id},{{"type":}}]"#), "invalid_article", 1),
            // Broken JSON inside an array names its element, as NDJSON does.
            (format!(r#"[{ok},{ok},{{"type":}}]"#), "malformed_json", 2),
            (format!("{ok}\n{ok}\n{{\"type\":}}"), "malformed_json", 2),
            (format!("[{ok},5]"), "malformed_json", 1),
        ];
        for (body, code, index) in cases {
            let r = app.client.post_events(&body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(
                (r.error_code().as_str(), &r.json()["error"]["index"]),
                (code, &json!(index)),
                "{body}"
            );
        }
        // An error after the array closed is the body's, not an event's.
        let r = app.client.post_events(&format!("[{ok}] x")).await;
        assert_eq!(r.error_code(), "malformed_json");
        assert!(r.json()["error"].get("index").is_none(), "{}", r.text());
        assert_eq!(app.client.views("a").await, 0);
    }

    pub async fn metadata_serde_json_refuses_is_dropped_or_repaired_and_the_view_counted(fx: Fixture) {
        let app = app(&fx, &[]).await;
        // A headline cut inside an emoji (what JSON.stringify makes of it), a section
        // of the same, a number out of any range.
        let body = r#"{"type":"view","article":"cut","title":"Floods \ud83c","section":"\ud83d","lang":1e400}"#;
        let r = app.client.post_events(body).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        assert_eq!(r.json()["counted"], 1);
        let a = app.client.article("cut").await;
        assert_eq!(a["views"], 1);
        assert_eq!(a["title"], "Floods \u{fffd}");
        assert!(a.get("section").is_none() && a.get("lang").is_none(), "{a}");
    }

    pub async fn every_invalid_event_gets_a_400_with_its_code(fx: Fixture) {
        let app = app(&fx, &[]).await;
        let long = "a".repeat(65);
        let cases = [
            (r#"{"type":"click","article":"a"}"#.to_string(), "invalid_type"),
            (r#"{"article":"a"}"#.to_string(), "invalid_type"),
            (r#"{"type":"view"}"#.to_string(), "invalid_article"),
            (format!(r#"{{"type":"view","article":"{long}"}}"#), "invalid_article"),
            (
                r#"{"type":"share","article":"a","network":"myspace"}"#.to_string(),
                "invalid_network",
            ),
            (r#"{"type":"share","article":"a"}"#.to_string(), "invalid_network"),
            // A field of the wrong JSON type is invalid by that field's rule.
            (r#"{"type":"view","article":{"$gt":""}}"#.to_string(), "invalid_article"),
            (r#"{"type":"view","article":-1}"#.to_string(), "invalid_article"),
            (r#"{"type":"view","article":true}"#.to_string(), "invalid_article"),
            (
                r#"{"type":"share","article":"a","network":["x"]}"#.to_string(),
                "invalid_network",
            ),
            (r#"{"type":1,"article":"a"}"#.to_string(), "invalid_type"),
            (r#"{"type":"view","article":"#.to_string(), "malformed_json"),
            ("[1, 2]".to_string(), "malformed_json"),
            ("".to_string(), "malformed_json"),
        ];
        for (body, code) in cases {
            let r = app.client.post_events(&body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(r.error_code(), code, "{body}");
        }
        assert_eq!(app.client.views("a").await, 0);
    }

    pub async fn more_than_a_thousand_events_are_refused(fx: Fixture) {
        let app = app(&fx, &["--max-body-bytes", "1000000"]).await;
        let one = r#"{"type":"view","article":"a"}"#;
        let ok = format!("[{}]", vec![one; 1000].join(","));
        assert_eq!(app.client.post_events(&ok).await.status, StatusCode::ACCEPTED);
        let too_many = format!("[{}]", vec![one; 1001].join(","));
        let r = app.client.post_events(&too_many).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(app.client.views("a").await, 1000);
    }

    pub async fn an_oversize_body_gets_413(fx: Fixture) {
        let app = app(&fx, &[]).await;
        let one = r#"{"type":"view","article":"a"}"#;
        let big = format!("[{}]", vec![one; 2500].join(","));
        assert!(big.len() > 64 * 1024);
        let r = app.client.post_events(&big).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(r.error_code(), "payload_too_large");
        assert_eq!(app.client.views("a").await, 0);
    }

    pub async fn other_content_types_get_415(fx: Fixture) {
        let app = app(&fx, &[]).await;
        for ct in ["application/x-www-form-urlencoded", "text/html", "multipart/form-data"] {
            let r = app
                .client
                .send(
                    Method::POST,
                    "/v1/events",
                    &[("content-type", ct)],
                    r#"{"type":"view","article":"a"}"#,
                )
                .await;
            assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}");
            assert_eq!(r.error_code(), "unsupported_media_type");
        }
        assert_eq!(app.client.views("a").await, 0);
    }

    pub async fn a_wrong_method_gets_405_with_allow(fx: Fixture) {
        let app = app(&fx, &[]).await;
        for (method, path, allow) in [
            (Method::GET, "/v1/events", "POST"),
            (Method::DELETE, "/v1/events", "POST"),
            (Method::POST, "/v1/articles/a", "GET"),
            (Method::POST, "/v1/pixel.gif", "GET"),
            (Method::PUT, "/v1/articles", "GET"),
            (Method::POST, "/healthz", "GET"),
            (Method::HEAD, "/v1/pixel.gif?type=view&article=a", "GET"),
        ] {
            let r = app.client.send(method.clone(), path, &[], "").await;
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                r.header("allow").contains(allow),
                "{method} {path}: {}",
                r.header("allow")
            );
            if method != Method::HEAD {
                assert_eq!(r.error_code(), "method_not_allowed");
            }
        }
    }

    pub async fn an_unknown_path_gets_a_json_404(fx: Fixture) {
        let app = app(&fx, &[]).await;
        // `/` redirects to the newsroom (tests/newsroom.rs), a 404 with --newsroom off.
        for path in [
            "/index.html",
            "/v2/events",
            "/v1/articles/",
            "/v1/articles/a/b",
            "/v1/admin/articles/a",
        ] {
            let r = app.client.get(path).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(r.error_code(), "not_found", "{path}");
        }
    }

    pub async fn the_pixel_counts_and_answers_a_gif_with_no_store(fx: Fixture) {
        let app = app(&fx, &[]).await;
        let r = app
            .client
            .get("/v1/pixel.gif?type=view&article=12345&section=analytics&lang=en")
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-type"), "image/gif");
        assert_eq!(r.header("cache-control"), "no-store");
        assert!(r.body.starts_with(b"GIF89a") && r.body.len() == 43);
        let r = app
            .client
            .get("/v1/pixel.gif?type=share&article=12345&network=whatsapp")
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let bad = app.client.get("/v1/pixel.gif?type=view&article=no%20way").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.error_code(), "invalid_article");
        let a = app.client.article("12345").await;
        assert_eq!(a["views"], 1);
        assert_eq!(a["shares"], json!({"whatsapp": 1}));
    }

    pub async fn an_unseen_article_is_zeros(fx: Fixture) {
        let app = app(&fx, &[]).await;
        assert_eq!(
            app.client.article("never-seen").await,
            json!({"article": "never-seen", "views": 0, "shares": {}, "shares_total": 0, "visitors": 0})
        );
        let r = app.client.get("/v1/articles/bad%20id").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.error_code(), "invalid_article");
    }

    pub async fn shares_are_counted_per_network(fx: Fixture) {
        let app = app(&fx, &[]).await;
        for network in ["telegram", "telegram", "facebook", "copy_link", "print"] {
            app.client.share("s1", network).await;
        }
        let a = app.client.article("s1").await;
        assert_eq!(
            a["shares"],
            json!({"telegram": 2, "facebook": 1, "copy_link": 1, "print": 1})
        );
        assert_eq!(a["shares_total"], 5);
        assert_eq!(a["views"], 0);
    }

    pub async fn the_batch_read_answers_in_the_order_asked(fx: Fixture) {
        let app = app(&fx, &[]).await;
        app.client.view("b").await;
        app.client.view("b").await;
        app.client.view("c").await;
        let r = app.client.get("/v1/articles?ids=c,a,b").await;
        assert_eq!(r.status, StatusCode::OK);
        let list = r.json()["articles"].as_array().expect("articles array").clone();
        let got: Vec<(String, u64)> = list
            .iter()
            .map(|a| (a["article"].as_str().unwrap().to_string(), a["views"].as_u64().unwrap()))
            .collect();
        assert_eq!(got, [("c".into(), 1), ("a".into(), 0), ("b".into(), 2)]);
        let ids: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        let too_many = app.client.get(&format!("/v1/articles?ids={}", ids.join(","))).await;
        assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            app.client.get("/v1/articles?ids=a,bad%20id").await.status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(app.client.get("/v1/articles").await.status, StatusCode::BAD_REQUEST);
    }

    pub async fn counts_survive_flushes_and_include_pending(fx: Fixture) {
        let app = app(&fx, &["--flush-interval", "50ms"]).await;
        for _ in 0..5 {
            app.client.view("f").await;
        }
        assert_eq!(app.client.views("f").await, 5, "pending counts are visible at once");
        let flushed = common::eventually(5, || async {
            app.client
                .metric("viewcounter_flush_batches_total{result=\"ok\"}")
                .await
                >= 1.0
        })
        .await;
        assert!(flushed, "a flush happened");
        for _ in 0..3 {
            app.client.view("f").await;
        }
        assert_eq!(app.client.views("f").await, 8);
    }

    /// One writer, reads in between: with a flush every 10 ms many reads meet a batch
    /// being drained or landing, and each must see every accepted view exactly once.
    pub async fn reads_stay_exact_while_batches_land(fx: Fixture) {
        let app = app(&fx, &["--flush-interval", "10ms"]).await;
        for n in 1..=300u64 {
            app.client.view("landing").await;
            assert_eq!(app.client.views("landing").await, n, "read {n}");
        }
    }

    pub async fn the_admin_api_is_absent_without_a_token(fx: Fixture) {
        let app = app(&fx, &[]).await;
        let r = app
            .client
            .send(
                Method::PUT,
                "/v1/admin/articles/a",
                &[("authorization", "Bearer x")],
                r#"{"views":1}"#,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.error_code(), "not_found");
    }

    pub async fn the_admin_api_needs_the_bearer_token(fx: Fixture) {
        let app = app(&fx, &["--admin-token", "s3cret-token"]).await;
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("s3cret-token"),
            Some("Basic s3cret-token"),
        ] {
            let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
            let r = app
                .client
                .send(Method::PUT, "/v1/admin/articles/a", &headers, r#"{"views":1}"#)
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(r.error_code(), "unauthorized");
            let r = app
                .client
                .send(Method::DELETE, "/v1/admin/articles/a", &headers, "")
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        }
        assert_eq!(app.client.views("a").await, 0);
    }

    /// An admin write, sent again (at most twice) when it answered 503
    /// `store_unavailable`: a PUT or DELETE is idempotent, and on a loaded box its
    /// Redis call can outlast the store's 2 s response timeout. Any other answer is
    /// returned as it came.
    async fn admin_write(
        app: &TestApp,
        method: Method,
        path: &str,
        auth: &[(&str, &str)],
        body: &'static str,
    ) -> common::Reply {
        let mut attempt = 1;
        loop {
            let r = app.client.send(method.clone(), path, auth, body).await;
            if r.status != StatusCode::SERVICE_UNAVAILABLE || r.error_code() != "store_unavailable" || attempt == 3 {
                return r;
            }
            eprintln!("{method} {path}: 503 store_unavailable (attempt {attempt}), sent again");
            attempt += 1;
        }
    }

    pub async fn admin_put_sets_totals_and_delete_forgets(fx: Fixture) {
        let app = app(&fx, &["--admin-token", "s3cret-token"]).await;
        let auth = [("authorization", "Bearer s3cret-token")];
        app.client.view("m").await;
        let body = r#"{"views": 479, "shares": {"telegram": 5, "facebook": 3}}"#;
        for _ in 0..2 {
            let r = admin_write(&app, Method::PUT, "/v1/admin/articles/m", &auth, body).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }
        let mut read = app.client.article("m").await;
        // The view before the PUT may have reached the store with its visitor: the
        // admin sets counts, not visitors.
        let visitors = read.as_object_mut().unwrap().remove("visitors");
        assert!(matches!(visitors.and_then(|v| v.as_u64()), Some(0 | 1)));
        assert_eq!(
            read,
            json!({"article": "m", "views": 479, "shares": {"telegram": 5, "facebook": 3}, "shares_total": 8})
        );
        app.client.view("m").await;
        assert_eq!(app.client.views("m").await, 480);
        for bad in [
            r#"{"views": -1}"#,
            r#"{"shares": {"myspace": 1}}"#,
            "nope",
            r#"{"veiws": 1}"#,
            r#"{"views": 18446744073709551615}"#,
            r#"{"shares": {"telegram": 9007199254740993}}"#,
            // Each at 2^53, but shares_total would be past it.
            r#"{"shares": {"telegram": 9007199254740992, "x": 9007199254740992}}"#,
            r#"{"shares": {"telegram": 18446744073709551615, "Telegram": 1}}"#,
        ] {
            let r = app.client.send(Method::PUT, "/v1/admin/articles/m", &auth, bad).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        let r = app
            .client
            .send(Method::PUT, "/v1/admin/articles/bad%20id", &auth, body)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = admin_write(&app, Method::DELETE, "/v1/admin/articles/m", &auth, "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(app.client.article("m").await["views"], 0);
        assert_eq!(app.client.article("m").await["shares_total"], 0);
    }

    pub async fn cors_preflight_and_origins_follow_the_configuration(fx: Fixture) {
        let app = app(&fx, &["--allowed-origins", "https://news.example"]).await;
        let origin = [
            ("origin", "https://news.example"),
            ("access-control-request-method", "POST"),
        ];
        let r = app.client.send(Method::OPTIONS, "/v1/events", &origin, "").await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(r.header("access-control-allow-origin"), "https://news.example");
        assert!(r.header("access-control-allow-methods").contains("POST"));
        let evil = [("origin", "https://evil.example")];
        let r = app.client.send(Method::GET, "/v1/articles/a", &evil, "").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("access-control-allow-origin"), "");
        let any = app_with_any_origin(&fx).await;
        let r = any.client.send(Method::GET, "/v1/articles/a", &evil, "").await;
        assert_eq!(r.header("access-control-allow-origin"), "*");
    }

    async fn app_with_any_origin(fx: &Fixture) -> TestApp {
        app(fx, &[]).await
    }

    pub async fn new_keys_beyond_capacity_get_503_while_held_keys_count(fx: Fixture) {
        let app = app(&fx, &["--max-pending-keys", "2", "--flush-interval", "1h"]).await;
        app.client.view("k1").await;
        app.client.view("k2").await;
        let r = app.client.post_events(r#"{"type":"view","article":"k3"}"#).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.error_code(), "capacity_exhausted");
        assert!(!r.header("retry-after").is_empty());
        app.client.view("k1").await;
        assert_eq!(app.client.views("k1").await, 2);
        assert_eq!(app.client.views("k3").await, 0);
        let ready = app.client.get("/readyz").await;
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "a full map is not ready");
    }

    pub async fn operations_endpoints_answer(fx: Fixture) {
        let app = app(&fx, &[]).await;
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/v1/counter.js",
            "/v1/articles/a",
            "/v1/top",
        ] {
            let head = app.client.send(Method::HEAD, path, &[], "").await;
            assert_eq!(head.status, StatusCode::OK, "HEAD {path}");
            assert!(head.body.is_empty(), "HEAD {path} has no body");
        }
        let h = app.client.get("/healthz").await;
        assert_eq!((h.status, h.text().as_str()), (StatusCode::OK, "ok"));
        assert_eq!(app.client.get("/readyz").await.status, StatusCode::OK);
        app.client.view("a").await;
        let m = app.client.get("/metrics").await;
        assert_eq!(m.status, StatusCode::OK);
        assert!(m.header("content-type").starts_with("text/plain; version=0.0.4"));
        assert!(m.text().contains("viewcounter_events_total{type=\"view\"} 1"));
    }

    pub async fn metrics_can_move_to_an_internal_address(fx: Fixture) {
        let app = app(&fx, &["--metrics-listen", "127.0.0.1:0"]).await;
        assert_eq!(app.client.get("/metrics").await.status, StatusCode::NOT_FOUND);
        let internal = common::Client::new(app.metrics_addr.expect("internal address bound"));
        assert_eq!(internal.get("/metrics").await.status, StatusCode::OK);
        assert_eq!(internal.get("/healthz").await.status, StatusCode::OK);
        assert_eq!(internal.get("/v1/articles/a").await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.client.get("/healthz").await.status, StatusCode::OK);
    }
}

mod series_cases {
    use super::*;
    use http::StatusCode;
    use serde_json::{json, Value};

    pub async fn series_and_meta_follow_the_events(fx: Fixture) {
        let app = TestApp::start_on(&fx.backend, &["--flush-interval", "50ms"]).await;
        let r = app
            .client
            .post_events(
                r#"[{"type":"view","article":"s-1","section":"sport","lang":"en"},
                    {"type":"view","article":"s-1"},
                    {"type":"share","article":"s-1","network":"telegram"},
                    {"type":"view","article":"s-2","section":"culture","lang":"az"}]"#,
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        let last = common::eventually_some(10, || {
            let client = app.client.clone();
            async move {
                let r = client.get("/v1/articles/s-1/series?window=24h").await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text());
                let v = r.json();
                (v["points"][23]["views"] == 2).then_some(v)
            }
        })
        .await
        .expect("the views reach the current hour's point");
        assert_eq!(
            (last["article"].clone(), last["window"].clone(), last["step"].clone()),
            (json!("s-1"), json!("24h"), json!("1h"))
        );
        let points = last["points"].as_array().unwrap();
        assert_eq!(points.len(), 24);
        assert_eq!(points[23]["shares"], 1);
        assert!(points[..23].iter().all(|p| p["views"] == 0 && p["shares"] == 0));
        let daily = app.client.get("/v1/articles/s-1/series?window=90d").await.json();
        assert_eq!(
            (daily["step"].clone(), daily["points"].as_array().unwrap().len()),
            (json!("1d"), 90)
        );
        assert_eq!(
            daily["points"][89],
            json!({"t": daily["points"][89]["t"], "views": 2, "shares": 1})
        );
        assert!(daily["points"][89]["t"].as_str().unwrap().ends_with("T00:00:00Z"));

        // One request's events can straddle a drain, so s-2 may land a flush after s-1.
        let both = || async {
            let meta: Value = app.client.get("/v1/meta").await.json();
            meta["sections"] == json!(["culture", "sport"])
        };
        common::eventually(10, both).await;
        let meta: Value = app.client.get("/v1/meta").await.json();
        assert_eq!(meta["sections"], json!(["culture", "sport"]));
        assert_eq!(meta["langs"], json!(["az", "en"]));
        let networks: Vec<&str> = meta["networks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert!(
            networks.windows(2).all(|w| w[0] < w[1]) && networks.contains(&"telegram"),
            "{networks:?}"
        );
    }

    pub async fn top_entries_carry_the_title_and_url_where_known(fx: Fixture) {
        let app = TestApp::start_on(&fx.backend, &["--flush-interval", "50ms"]).await;
        let r = app
            .client
            .post_events(
                r#"[{"type":"view","article":"t-1","title":"  The budget, line by line ","url":"https://daily.example/t-1"},
                    {"type":"view","article":"t-1","title":"A second writer's title"},
                    {"type":"view","article":"t-2"}]"#,
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        let top = common::eventually_some(10, || {
            let client = app.client.clone();
            async move {
                let v = client.get("/v1/top?window=1h").await.json();
                (v["articles"].as_array().map(Vec::len) == Some(2)).then_some(v)
            }
        })
        .await
        .expect("both articles ranked");
        assert_eq!(
            top["articles"][0],
            json!({"article": "t-1", "count": 2, "title": "The budget, line by line", "url": "https://daily.example/t-1"})
        );
        assert_eq!(
            top["articles"][1],
            json!({"article": "t-2", "count": 1}),
            "no title, no field"
        );
    }

    pub async fn series_refuses_bad_windows_and_ids(fx: Fixture) {
        let app = TestApp::start_on(&fx.backend, &[]).await;
        for (path, code) in [
            ("/v1/articles/a/series?window=1y", "invalid_window"),
            ("/v1/articles/a/series?days=3", "invalid_query"),
            ("/v1/articles/a%20b/series", "invalid_article"),
        ] {
            let r = app.client.get(path).await;
            assert_eq!(
                (r.status, r.error_code()),
                (StatusCode::BAD_REQUEST, code.to_string()),
                "{path}"
            );
        }
        let r = app.client.get("/v1/articles/never/series").await;
        assert_eq!(r.json()["points"].as_array().unwrap().len(), 48, "default 48h, zeros");
        assert_eq!(
            app.client.get("/v1/articles/a/series/x").await.status,
            StatusCode::NOT_FOUND
        );
    }
}

mod top_cases {
    use super::*;
    use http::StatusCode;
    use serde_json::{json, Value};

    async fn top_when(app: &TestApp, query: &str, expect: usize) -> Value {
        let found = common::eventually_some(10, || {
            let client = app.client.clone();
            let query = query.to_string();
            async move {
                let r = client.get(&format!("/v1/top?{query}")).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text());
                let v = r.json();
                let ok = v["articles"].as_array().is_some_and(|a| a.len() == expect);
                ok.then_some(v)
            }
        });
        found
            .await
            .unwrap_or_else(|| panic!("/v1/top?{query} never showed {expect} articles"))
    }

    fn pairs(v: &Value) -> Vec<(String, u64)> {
        v["articles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["article"].as_str().unwrap().to_string(), a["count"].as_u64().unwrap()))
            .collect()
    }

    pub async fn top_ranks_by_count_then_id_with_filters(fx: Fixture) {
        let app = TestApp::start_on(&fx.backend, &["--flush-interval", "50ms"]).await;
        let mut events = Vec::new();
        for (article, n, section, lang) in [
            ("t-b", 3, "analytics", "en"),
            ("t-a", 3, "analytics", "ru"),
            ("t-c", 5, "sport", "en"),
            ("t-d", 1, "analytics", "en"),
        ] {
            for _ in 0..n {
                events.push(json!({"type": "view", "article": article, "section": section, "lang": lang}));
            }
        }
        events.push(json!({"type": "share", "article": "t-d", "network": "telegram"}));
        events.push(json!({"type": "share", "article": "t-d", "network": "telegram"}));
        events.push(json!({"type": "share", "article": "t-b", "network": "facebook"}));
        let r = app.client.post_events(&Value::Array(events).to_string()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);

        let v = top_when(&app, "window=15m", 4).await;
        assert_eq!(v["metric"], "views");
        assert_eq!(v["window"], "15m");
        assert!(v["generated_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            pairs(&v),
            [
                ("t-c".into(), 5),
                ("t-a".into(), 3),
                ("t-b".into(), 3),
                ("t-d".into(), 1)
            ]
        );
        assert_eq!(
            v["articles"][0],
            json!({"article": "t-c", "count": 5, "section": "sport", "lang": "en"})
        );
        for window in ["1h", "24h", "7d", "30d", "all"] {
            assert_eq!(
                pairs(&top_when(&app, &format!("window={window}"), 4).await).len(),
                4,
                "{window}"
            );
        }
        let v = top_when(&app, "window=1h&limit=2", 2).await;
        assert_eq!(pairs(&v), [("t-c".into(), 5), ("t-a".into(), 3)]);
        let v = top_when(&app, "section=analytics", 3).await;
        assert_eq!(pairs(&v), [("t-a".into(), 3), ("t-b".into(), 3), ("t-d".into(), 1)]);
        let v = top_when(&app, "section=analytics&lang=en", 2).await;
        assert_eq!(pairs(&v), [("t-b".into(), 3), ("t-d".into(), 1)]);
        let v = top_when(&app, "lang=ru", 1).await;
        assert_eq!(pairs(&v), [("t-a".into(), 3)]);
        let v = top_when(&app, "metric=shares", 2).await;
        assert_eq!(v["metric"], "shares");
        assert_eq!(pairs(&v), [("t-d".into(), 2), ("t-b".into(), 1)]);
        let v = top_when(&app, "metric=shares&network=facebook", 1).await;
        assert_eq!(pairs(&v), [("t-b".into(), 1)]);
    }

    /// Posts `n` views of `article` in `section`.
    async fn views(app: &TestApp, article: &str, n: usize, section: &str) {
        let events: Vec<Value> = (0..n)
            .map(|_| json!({"type": "view", "article": article, "section": section}))
            .collect();
        let r = app.client.post_events(&Value::Array(events).to_string()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }

    pub async fn a_ranking_answered_from_stale_candidates_is_replaced_by_the_recomputed_one(fx: Fixture) {
        let app = TestApp::start_on(&fx.backend, &["--flush-interval", "50ms"]).await;
        views(&app, "s-old", 2, "news").await;
        let v = top_when(&app, "window=1h&section=news", 1).await;
        assert_eq!(pairs(&v), [("s-old".into(), 2)]);
        views(&app, "s-new", 5, "news").await;
        // Each answer is a ranking (the stale one while the recomputation runs), never an
        // error, until the recomputed one has replaced it.
        let replaced = common::eventually_some(30, || {
            let client = app.client.clone();
            async move {
                let r = client.get("/v1/top?window=1h&section=news&limit=5").await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text());
                let got = pairs(&r.json());
                let fresh = [("s-new".to_string(), 5), ("s-old".to_string(), 2)];
                assert!(got.contains(&fresh[1]), "{got:?}");
                (got == fresh).then_some(())
            }
        });
        assert!(
            replaced.await.is_some(),
            "the recomputed ranking never replaced the stale one"
        );
        let v = top_when(&app, "window=1h&lang=en", 0).await;
        assert_eq!(pairs(&v), [], "a filter no article matches");
    }

    /// Waits until `/v1/top?{query}` lists exactly `expect` (article, count).
    async fn top_shows(app: &TestApp, query: &str, expect: &[(&str, u64)]) {
        let expect: Vec<(String, u64)> = expect.iter().map(|(a, c)| (a.to_string(), *c)).collect();
        let mut last = Vec::new();
        for _ in 0..300 {
            let r = app.client.get(&format!("/v1/top?{query}")).await;
            // 503 while the rankings load at start (on a loaded box that can outlast
            // the request's wait for them); any other answer is a ranking.
            if r.status != StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(r.status, StatusCode::OK, "{}", r.text());
                last = pairs(&r.json());
                if last == expect {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("/v1/top?{query} never showed {expect:?}; last {last:?}");
    }

    pub async fn rankings_follow_counts_that_rise_after_they_were_first_computed(fx: Fixture) {
        let app = TestApp::start_on(&fx.backend, &["--flush-interval", "50ms"]).await;
        let view = |article: &str, section: &str, lang: &str| json!({"type": "view", "article": article, "section": section, "lang": lang});
        let share = |article: &str| json!({"type": "share", "article": article, "network": "telegram"});
        let post = |events: Vec<Value>| {
            let client = app.client.clone();
            async move {
                let r = client.post_events(&Value::Array(events).to_string()).await;
                assert_eq!(r.status, StatusCode::ACCEPTED);
            }
        };
        let titled = |article: &str, title: &str| json!({"type": "view", "article": article, "section": "news", "lang": "en", "title": title});
        let mut first = vec![titled("r-a", "A"); 3];
        first.extend(vec![view("r-b", "news", "en"); 2]);
        first.push(view("r-c", "sport", "ru"));
        post(first).await;
        // Every ranking below computed once: the next ones start from these.
        top_shows(&app, "window=1h", &[("r-a", 3), ("r-b", 2), ("r-c", 1)]).await;
        top_shows(&app, "window=1h&section=news", &[("r-a", 3), ("r-b", 2)]).await;
        top_shows(&app, "window=1h&lang=ru", &[("r-c", 1)]).await;
        top_shows(&app, "window=1h&metric=shares", &[]).await;

        // Counts rise: an article overtakes, a new one enters a known section, shares begin.
        let mut more = vec![view("r-c", "sport", "ru"); 4];
        more.extend(vec![titled("r-d", "D"); 3]);
        more.extend(vec![share("r-b"); 2]);
        post(more).await;
        let all = [("r-c", 5), ("r-a", 3), ("r-d", 3), ("r-b", 2)];
        top_shows(&app, "window=1h", &all).await;
        // Titles: kept for an article still ranked, read for one new to the ranking.
        let v = app.client.get("/v1/top?window=1h").await.json();
        let title = |i: usize| (v["articles"][i]["article"].clone(), v["articles"][i]["title"].clone());
        assert_eq!(title(1), (json!("r-a"), json!("A")));
        assert_eq!(title(2), (json!("r-d"), json!("D")));
        top_shows(&app, "window=all", &all).await;
        top_shows(&app, "window=1h&section=news", &[("r-a", 3), ("r-d", 3), ("r-b", 2)]).await;
        top_shows(
            &app,
            "window=1h&section=news&lang=en&limit=2",
            &[("r-a", 3), ("r-d", 3)],
        )
        .await;
        top_shows(&app, "window=1h&lang=ru", &[("r-c", 5)]).await;
        top_shows(&app, "window=1h&metric=shares", &[("r-b", 2)]).await;

        // And again, from the rankings just shown.
        post(vec![view("r-b", "news", "en"); 2]).await;
        top_shows(&app, "window=1h&section=news", &[("r-b", 4), ("r-a", 3), ("r-d", 3)]).await;
        top_shows(&app, "window=1h", &[("r-c", 5), ("r-b", 4), ("r-a", 3), ("r-d", 3)]).await;
    }

    pub async fn top_refuses_every_bad_parameter(fx: Fixture) {
        let app = TestApp::start_on(&fx.backend, &[]).await;
        for query in [
            "window=2h",
            "window=",
            "limit=0",
            "limit=101",
            "limit=-1",
            "limit=x",
            "metric=likes",
            "metric=shares&network=myspace",
            "metric=views&network=telegram",
            "section=not%2Fvalid",
            "lang=e",
            "bogus=1",
        ] {
            let r = app.client.get(&format!("/v1/top?{query}")).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
            assert!(!r.error_code().is_empty(), "{query}");
        }
        let r = app.client.get("/v1/top").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["window"], "24h");
        assert_eq!(r.json()["articles"], json!([]));
    }
}

macro_rules! contract_tests {
    ($backend:ident, [$($case:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(super::$backend()).await
                }
            )*
        }
    };
}

macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        contract_tests!(embedded, [$($case),*]);
        contract_tests!(redis, [$($case),*]);
        contract_tests!(redis_cluster, [$($case),*]);
    };
}

on_every_backend!(
    a_view_is_counted_and_read_back,
    arrays_ndjson_and_text_plain_bodies_are_accepted,
    a_batch_with_one_bad_event_counts_nothing,
    a_batch_names_its_first_bad_event_whatever_makes_it_bad,
    metadata_serde_json_refuses_is_dropped_or_repaired_and_the_view_counted,
    every_invalid_event_gets_a_400_with_its_code,
    more_than_a_thousand_events_are_refused,
    an_oversize_body_gets_413,
    other_content_types_get_415,
    a_wrong_method_gets_405_with_allow,
    an_unknown_path_gets_a_json_404,
    the_pixel_counts_and_answers_a_gif_with_no_store,
    an_unseen_article_is_zeros,
    shares_are_counted_per_network,
    the_batch_read_answers_in_the_order_asked,
    counts_survive_flushes_and_include_pending,
    reads_stay_exact_while_batches_land,
    the_admin_api_is_absent_without_a_token,
    the_admin_api_needs_the_bearer_token,
    admin_put_sets_totals_and_delete_forgets,
    cors_preflight_and_origins_follow_the_configuration,
    new_keys_beyond_capacity_get_503_while_held_keys_count,
    operations_endpoints_answer,
    metrics_can_move_to_an_internal_address,
    top_ranks_by_count_then_id_with_filters,
    top_refuses_every_bad_parameter,
    a_ranking_answered_from_stale_candidates_is_replaced_by_the_recomputed_one,
    rankings_follow_counts_that_rise_after_they_were_first_computed,
    series_and_meta_follow_the_events,
    series_refuses_bad_windows_and_ids,
    top_entries_carry_the_title_and_url_where_known,
);
