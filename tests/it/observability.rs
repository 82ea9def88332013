//! Observability: the metrics move as the traffic does, the exposition passes
//! `promtool check metrics`, and every PromQL expression of the dashboards and
//! alert rules parses and names only metrics a running instance exports.
//! promtool is installed by `scripts/validate-deploy` (run by `scripts/test`).

use crate::support as common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestApp;
use http::StatusCode;
use serde_json::Value;

const INVALID_EVENTS: [&str; 3] = [
    r#"{"type":"like","article":"a1"}"#,
    r#"{"type":"view","article":"bad id with spaces"}"#,
    r#"{"type":"share","article":"a1","network":"myspace"}"#,
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One parsed scrape: sample values by `name{labels}` as written, and family types by name.
struct Scrape {
    samples: HashMap<String, f64>,
    types: HashMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples = HashMap::new();
        let mut types = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line has a name and a type");
                types.insert(name.to_string(), kind.to_string());
            } else if !line.starts_with('#') && !line.is_empty() {
                let (key, value) = line.rsplit_once(' ').expect("sample line has a value");
                samples.insert(key.to_string(), value.parse().expect("sample value parses"));
            }
        }
        Scrape { samples, types }
    }

    fn value(&self, sample: &str) -> f64 {
        self.samples.get(sample).copied().unwrap_or(0.0)
    }

    /// The sum over every series of `name` (all label values).
    fn family_sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum()
    }

    /// Whether `name` is exported: a family, or a histogram's `_bucket`/`_sum`/`_count`.
    fn exports(&self, name: &str) -> bool {
        if self.types.contains_key(name) {
            return true;
        }
        ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .and_then(|base| self.types.get(base))
                .is_some_and(|t| t == "histogram" || (t == "summary" && *suffix != "_bucket"))
        })
    }
}

async fn scrape(app: &TestApp) -> (String, Scrape) {
    let reply = app.client.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.text();
    let parsed = Scrape::parse(&text);
    (text, parsed)
}

/// An app that has seen a view, a share and an invalid event: every family has a series.
async fn app_with_traffic() -> TestApp {
    let app = TestApp::start(&[]).await;
    app.client.view("warmup").await;
    app.client.share("warmup", "telegram").await;
    let r = app.client.post_events(INVALID_EVENTS[0]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    app
}

/// `promtool` with `args`; panics (never skips) when it is not installed.
fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("promtool not runnable ({e}): run scripts/validate-deploy to install promtool"))
}

fn assert_success(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn counters_grow_by_exactly_the_events_posted() {
    let app = TestApp::start(&[]).await;
    let (_, before) = scrape(&app).await;

    let (views, shares) = (7, 5);
    for i in 0..views {
        app.client.view(&format!("article-{}", i % 3)).await;
    }
    for i in 0..shares {
        app.client.share(&format!("article-{i}"), "telegram").await;
    }
    let batch = r#"[{"type":"view","article":"b1"},{"type":"view","article":"b2"},{"type":"share","article":"b1","network":"x"}]"#;
    let r = app.client.post_events(batch).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    for bad in INVALID_EVENTS {
        let r = app.client.post_events(bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
    }
    let (_, after) = scrape(&app).await;

    let delta = |sample: &str| after.value(sample) - before.value(sample);
    assert_eq!(delta(r#"viewcounter_events_total{type="view"}"#), f64::from(views + 2));
    assert_eq!(
        delta(r#"viewcounter_events_total{type="share"}"#),
        f64::from(shares + 1)
    );
    let rejected =
        after.family_sum("viewcounter_events_rejected_total") - before.family_sum("viewcounter_events_rejected_total");
    assert_eq!(rejected, INVALID_EVENTS.len() as f64);
    let accepted_requests = f64::from(views + shares + 1);
    assert_eq!(
        delta(r#"viewcounter_http_requests_total{route="/v1/events",status="202"}"#),
        accepted_requests
    );
    assert_eq!(
        delta(r#"viewcounter_http_requests_total{route="/v1/events",status="400"}"#),
        INVALID_EVENTS.len() as f64
    );
    assert_eq!(
        delta(r#"viewcounter_http_request_duration_seconds_count{route="/v1/events"}"#),
        accepted_requests + INVALID_EVENTS.len() as f64
    );
}

#[tokio::test]
async fn the_exposition_passes_promtool_check_metrics() {
    let app = app_with_traffic().await;
    let (text, _) = scrape(&app).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("scrape.prom");
    std::fs::write(&file, &text).expect("scrape written");

    promtool(&["--version"]);
    let out = Command::new("sh")
        .arg("-c")
        .arg("promtool check metrics < \"$0\"")
        .arg(&file)
        .output()
        .expect("sh runs");
    assert_success("promtool check metrics", &out);
    let lint = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lint.trim().is_empty(), "promtool check metrics complained:\n{lint}");
}

/// Every PromQL expression of a dashboard: the `expr` of targets whose data source
/// (the target's, else the panel's) is Prometheus, in panels and rows' panels.
fn dashboard_exprs(dashboard: &Value, out: &mut Vec<String>) {
    fn is_prometheus(ds: Option<&Value>) -> bool {
        ds.and_then(|d| d.get("type")).and_then(Value::as_str) == Some("prometheus")
    }
    fn walk(panels: &[Value], out: &mut Vec<String>) {
        for panel in panels {
            for target in panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let ds = target.get("datasource").or(panel.get("datasource"));
                if let (true, Some(expr)) = (is_prometheus(ds), target["expr"].as_str()) {
                    out.push(expr.to_string());
                }
            }
            walk(panel["panels"].as_array().map(Vec::as_slice).unwrap_or_default(), out);
        }
    }
    walk(
        dashboard["panels"].as_array().map(Vec::as_slice).unwrap_or_default(),
        out,
    );
}

/// Grafana's variables replaced by what Prometheus would see.
fn without_grafana_variables(expr: &str) -> String {
    let mut e = expr.to_string();
    for (var, value) in [
        ("__rate_interval", "1m"),
        ("__interval", "1m"),
        ("__range", "1h"),
        ("instance", ".*"),
    ] {
        e = e
            .replace(&format!("${{{var}}}"), value)
            .replace(&format!("${var}"), value);
    }
    assert!(!e.contains('$'), "unreplaced Grafana variable in {expr:?}");
    e
}

/// Metric names in `text` (viewcounter_* and process_*), outside quoted strings.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut unquoted = String::new();
    let mut in_string = false;
    for c in text.chars() {
        match c {
            '"' => in_string = !in_string,
            _ if in_string => {}
            _ => unquoted.push(c),
        }
    }
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    for word in unquoted.split(|c: char| !is_ident(c)) {
        if word.starts_with("viewcounter_") || word.starts_with("process_") {
            names.insert(word.to_string());
        }
    }
    names
}

fn assert_all_exported(source: &str, names: &BTreeSet<String>, scrape: &Scrape) {
    let missing: Vec<&String> = names.iter().filter(|n| !scrape.exports(n)).collect();
    assert!(
        missing.is_empty(),
        "{source} uses metrics the service does not export: {missing:?}"
    );
}

fn dashboard_files() -> Vec<PathBuf> {
    let dir = repo_root().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "expected the operations and editorial dashboards in {}",
        dir.display()
    );
    files
}

fn load_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn every_dashboard_query_parses_and_names_exported_metrics() {
    let app = app_with_traffic().await;
    let (_, live) = scrape(&app).await;

    let mut rules = Vec::new();
    for file in dashboard_files() {
        let dashboard = load_json(&file);
        let mut exprs = Vec::new();
        dashboard_exprs(&dashboard, &mut exprs);
        let source = file.display().to_string();
        assert!(!exprs.is_empty(), "{source} has no Prometheus query");
        let mut names = BTreeSet::new();
        for expr in &exprs {
            names.extend(metric_names(expr));
            rules.push(without_grafana_variables(expr));
        }
        for var in dashboard["templating"]["list"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            names.extend(metric_names(var["definition"].as_str().unwrap_or_default()));
        }
        assert!(!names.is_empty(), "{source} names no viewcounter or process metric");
        assert_all_exported(&source, &names, &live);
    }

    // JSON is YAML: one recording rule per expression, for promtool's parser.
    let rules_file = serde_json::json!({
        "groups": [{
            "name": "dashboards",
            "rules": rules.iter().enumerate()
                .map(|(i, expr)| serde_json::json!({ "record": format!("dashboard:expr_{i}"), "expr": expr }))
                .collect::<Vec<_>>(),
        }]
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dashboard_rules.yml");
    std::fs::write(&path, serde_json::to_string_pretty(&rules_file).unwrap()).expect("rules written");
    let out = promtool(&["check", "rules", path.to_str().expect("utf-8 path")]);
    assert_success("promtool check rules (dashboard expressions)", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "{stdout}"
    );
}

#[tokio::test]
async fn every_alert_rule_names_exported_metrics() {
    let app = app_with_traffic().await;
    let (_, live) = scrape(&app).await;
    let path = repo_root().join("deploy/prometheus/alerts.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let names = metric_names(&code);
    assert!(
        names.len() >= 5,
        "expected the alert rules to use the service's metrics, found {names:?}"
    );
    assert_all_exported(&path.display().to_string(), &names, &live);
}

/// The operations board's error-ratio panels (titles with "ratio"), their Prometheus
/// expressions with the Grafana variables filled in.
fn ratio_panel_exprs() -> Vec<(String, String)> {
    let board = load_json(&repo_root().join("dashboards/operations.json"));
    let mut out = Vec::new();
    for panel in board["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default();
        if !title.to_lowercase().split_whitespace().any(|w| w == "ratio") {
            continue;
        }
        for target in panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.to_string(), without_grafana_variables(expr)));
            }
        }
    }
    out
}

#[test]
fn error_ratio_panels_read_zero_not_no_data_on_a_healthy_service() {
    let exprs = ratio_panel_exprs();
    assert!(!exprs.is_empty(), "the operations board has an error-ratio panel");
    let rules = serde_json::json!({
        "groups": [{
            "name": "ratios",
            "rules": exprs.iter().enumerate()
                .map(|(i, (_, e))| serde_json::json!({ "record": format!("ratio_{i}"), "expr": e }))
                .collect::<Vec<_>>(),
        }]
    });
    // Healthy: only 2xx on /v1 routes (and, in the second case, no /v1 traffic at all).
    let healthy = |series: serde_json::Value| {
        serde_json::json!({
            "rule_files": ["rules.yml"],
            "evaluation_interval": "1m",
            "tests": [{
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": exprs.iter().enumerate().map(|(i, _)| serde_json::json!({
                    "expr": format!("ratio_{i}"),
                    "eval_time": "10m",
                    "exp_samples": [{ "labels": format!("ratio_{i}"), "value": 0 }],
                })).collect::<Vec<_>>(),
            }],
        })
    };
    let ok_traffic = serde_json::json!([{
        "series": r#"viewcounter_http_requests_total{instance="a:8080", route="/v1/events", status="202"}"#,
        "values": "0+60x20",
    }]);
    let no_traffic = serde_json::json!([{
        "series": r#"viewcounter_http_requests_total{instance="a:8080", route="/healthz", status="200"}"#,
        "values": "0+6x20",
    }]);
    for (case, series) in [("2xx only", ok_traffic), ("no /v1 traffic", no_traffic)] {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("rules.yml"),
            serde_json::to_string_pretty(&rules).unwrap(),
        )
        .unwrap();
        let mut test = healthy(series);
        // A ratio of a labelled sum keeps the instance label; match either shape.
        if case == "2xx only" {
            for t in test["tests"][0]["promql_expr_test"].as_array_mut().unwrap() {
                let name = t["expr"].as_str().unwrap().to_string();
                t["exp_samples"][0]["labels"] = serde_json::json!(format!(r#"{name}{{instance="a:8080"}}"#));
            }
        }
        let path = dir.path().join("test.yml");
        std::fs::write(&path, serde_json::to_string_pretty(&test).unwrap()).unwrap();
        let out = promtool(&["test", "rules", path.to_str().expect("utf-8 path")]);
        assert_success(
            &format!("error-ratio panels on a healthy service ({case}): {exprs:?}"),
            &out,
        );
    }
}
