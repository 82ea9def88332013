//! docs/openapi.yaml stays in step with docs/api.md and with the running service:
//! every path the reference names is described, and every described path is served.

use crate::support as common;

use common::TestApp;
use http::{Method, StatusCode};

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_default()
}

/// `  /v1/x:` lines of the OpenAPI document.
fn openapi_paths() -> Vec<String> {
    repo_file("docs/openapi.yaml")
        .lines()
        .filter_map(|l| l.strip_prefix("  /").and_then(|p| p.strip_suffix(':')))
        .map(|p| format!("/{p}"))
        .collect()
}

/// Every path docs/api.md names in a heading of the form ``### `GET /v1/x?query` ``,
/// and the operations and admin paths its lists name.
fn reference_paths() -> Vec<String> {
    let mut paths: Vec<String> = repo_file("docs/api.md")
        .lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|p| p.trim_end_matches('`').split('?').next().unwrap_or(p).to_string())
        .collect();
    paths.extend(
        [
            "/healthz",
            "/readyz",
            "/metrics",
            "/v1/counter.js",
            "/v1/admin/articles/{article}",
        ]
        .map(String::from),
    );
    paths
}

#[test]
fn the_reference_has_a_section_for_every_endpoint() {
    let named = reference_paths();
    for path in [
        "/v1/events",
        "/v1/pixel.gif",
        "/v1/articles/{article}",
        "/v1/articles/{article}/series",
        "/v1/meta",
        "/v1/articles",
        "/v1/top",
    ] {
        assert!(
            named.iter().any(|p| p == path),
            "docs/api.md lacks a section for {path}: {named:?}"
        );
    }
}

#[test]
fn every_path_of_the_reference_is_in_the_openapi_document() {
    let documented = openapi_paths();
    for path in reference_paths() {
        assert!(documented.contains(&path), "docs/openapi.yaml lacks {path}");
    }
}

#[tokio::test]
async fn every_documented_path_is_served() {
    let app = TestApp::start(&["--admin-token", "doc-test-token"]).await;
    for path in openapi_paths() {
        let concrete = path.replace("{article}", "doc-check");
        let r = app.client.send(Method::OPTIONS, &concrete, &[], "").await;
        let r = if r.status == StatusCode::NOT_FOUND {
            app.client.get(&concrete).await
        } else {
            r
        };
        assert_ne!(r.status, StatusCode::NOT_FOUND, "{path} is documented but not served");
    }
}
