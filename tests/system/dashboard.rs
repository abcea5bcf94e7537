//! The Grafana dashboard (deploy/grafana/) against what the services really export: every metric
//! a panel queries must be in some service's `/metrics`, scraped from the real binaries after a
//! little of each kind of traffic; and every service carries the standard process series.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use fake_snyk::Fault;
use serde_json::Value;
use system_tests::{process::Process, *};
use tonic::Code;

const DASHBOARD: &str = "deploy/grafana/dashboards/snykapps.json";
/// token-service's `TOKEN_MIN_REFRESH_INTERVAL_SECONDS` here.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
const DATASOURCES: &str = "deploy/grafana/provisioning/datasources/prometheus.yml";

/// The series every Prometheus client exports for its process (service-runtime's
/// `process_metrics`).
const PROCESS_SERIES: [&str; 6] = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
];

fn repo_file(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---- PromQL: which metrics does an expression read? -------------------------------------------

/// Modifiers followed by a parenthesised list of label names (not metrics).
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The other words of PromQL that are not metric names (binary operators and modifiers;
/// `inf`/`nan` literals). Aggregations and functions are recognised by the `(` that follows them.
const KEYWORDS: [&str; 8] = [
    "bool", "and", "or", "unless", "offset", "atan2", "inf", "nan",
];

/// The metric names `expr` (PromQL, with Grafana variables) reads: identifiers that are not
/// keywords, not functions or aggregations (followed by `(`, or by `by`/`without`), not inside a label matcher `{…}`,
/// a range `[…]`, a string or a `by (…)`-style label list, and not Grafana variables (`$x`).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let is_ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    // The index just past the bracket that closes the one at `open`, skipping strings.
    let close = |open: usize, closing: char| -> usize {
        let opening = chars[open];
        let mut depth = 0;
        let mut i = open;
        while i < chars.len() {
            match chars[i] {
                q @ ('"' | '\'' | '`') => i = skip_string(&chars, i, q) - 1,
                c if c == opening => depth += 1,
                c if c == closing => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        panic!("unbalanced {opening} in {expr:?}");
    };
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i, c);
        } else if c == '{' {
            i = close(i, '}');
        } else if c == '[' {
            i = close(i, ']');
        } else if c == '$' {
            // A Grafana variable: `$name`, `${name}` or `${name:format}`.
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = close(i, '}');
            } else {
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration (0.95, 1e3, 5m, 0x1f).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            // `sum by (…) (…)`: an aggregation may have its label list before its operand.
            let word_after: String = chars[next..]
                .iter()
                .take_while(|c| is_ident(**c))
                .collect::<String>()
                .to_ascii_lowercase();
            let called =
                chars.get(next) == Some(&'(') || word_after == "by" || word_after == "without";
            let lower = word.to_ascii_lowercase();
            if LABEL_LISTS.contains(&lower.as_str()) {
                if called {
                    i = close(next, ')');
                }
            } else if !KEYWORDS.contains(&lower.as_str()) && !called {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The index just past the string that starts with quote `q` at `start` (backslash escapes,
/// except in raw `` ` `` strings).
fn skip_string(chars: &[char], start: usize, q: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == '\\' && q != '`' {
            i += 2;
            continue;
        }
        if chars[i] == q {
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

/// The metric names a Grafana Prometheus variable query reads: `label_values(metric, label)`
/// reads `metric` (`label_values(label)` none), `query_result(expr)` what `expr` reads.
fn variable_metric_names(query: &str) -> BTreeSet<String> {
    let query = query.trim();
    if let Some(args) = query
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return match args.rsplit_once(',') {
            Some((metric, _label)) => metric_names(metric),
            None => BTreeSet::new(),
        };
    }
    if let Some(expr) = query
        .strip_prefix("query_result(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return metric_names(expr);
    }
    BTreeSet::new()
}

#[test]
fn promql_metric_names_are_extracted_without_functions_labels_or_variables() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum by (outcome, served) (rate(snykapps_token_requests_total{job!="otel-collector"}[$__rate_interval]))"#
        ),
        ["snykapps_token_requests_total"]
    );
    assert_eq!(
        names(
            "histogram_quantile(0.95, sum by (le, rpc_method) (rate(rpc_server_duration_bucket[5m])))"
        ),
        ["rpc_server_duration_bucket"]
    );
    assert_eq!(
        names(r#"time() - process_start_time_seconds{job="$job"}"#),
        ["process_start_time_seconds"]
    );
    // Label lists after the operand, vector matching, offsets, `bool`, numbers.
    assert_eq!(
        names(
            "sum(a_total) without (le) / on (instance) group_left (version) b offset 5m > bool 1e3"
        ),
        ["a_total", "b"]
    );
    // Strings and matchers never leak names, even when they look like PromQL; `${var}` neither.
    assert_eq!(
        names(r#"sum(rate(x_total{l="sum(y) z", m=~'a\'b'}[${interval}])) or nan_gauge and inf"#),
        ["nan_gauge", "x_total"]
    );
    assert_eq!(
        names("min(snykapps_installs_refresh_token_min_remaining) unless up"),
        ["snykapps_installs_refresh_token_min_remaining", "up"]
    );
    assert!(names("vector(1) + time()").is_empty());
    assert_eq!(
        variable_metric_names("label_values(process_start_time_seconds, job)"),
        BTreeSet::from(["process_start_time_seconds".to_owned()])
    );
    assert!(variable_metric_names("label_values(job)").is_empty());
}

// ---- The dashboard ----------------------------------------------------------------------------

/// Every query of the dashboard: (where, PromQL) — panels (rows' nested panels too) and
/// template variables.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String, BTreeSet<String>)> {
    fn panels<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(nested) = p.get("panels") {
                panels(nested, out);
            }
        }
    }
    let mut all = Vec::new();
    panels(&dashboard["panels"], &mut all);
    let mut queries = Vec::new();
    for p in all {
        let title = p["title"].as_str().unwrap_or("(untitled)");
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without `expr`: {t}"));
            queries.push((
                format!("panel {title:?}"),
                expr.to_owned(),
                metric_names(expr),
            ));
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let query = match &v["query"] {
            Value::String(s) => s.clone(),
            q => q["query"].as_str().unwrap_or_default().to_owned(),
        };
        let name = v["name"].as_str().unwrap_or_default();
        queries.push((
            format!("variable ${name}"),
            query.clone(),
            variable_metric_names(&query),
        ));
    }
    queries
}

/// Every `datasource` object in the dashboard (panels, targets, variables).
fn datasource_uids(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(m) => {
            if let Some(uid) = m
                .get("datasource")
                .and_then(|d| d.get("uid"))
                .and_then(Value::as_str)
            {
                out.insert(uid.to_owned());
            }
            for v in m.values() {
                datasource_uids(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| datasource_uids(v, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_uses_the_provisioned_prometheus_by_uid() {
    let dashboard: Value = serde_json::from_str(&repo_file(DASHBOARD)).expect("dashboard JSON");
    let provisioning: serde_norway::Value =
        serde_norway::from_str(&repo_file(DATASOURCES)).expect("datasource YAML");
    let prometheus = provisioning["datasources"]
        .as_sequence()
        .expect("datasources")
        .iter()
        .find(|d| d["type"].as_str() == Some("prometheus"))
        .expect("a prometheus data source");
    let uid = prometheus["uid"].as_str().expect("a fixed uid");
    assert_eq!(prometheus["url"].as_str(), Some("http://prometheus:9090"));
    let mut uids = BTreeSet::new();
    datasource_uids(&dashboard["panels"], &mut uids);
    datasource_uids(&dashboard["templating"], &mut uids);
    assert_eq!(
        uids,
        BTreeSet::from([uid.to_owned()]),
        "every query uses the provisioned data source"
    );
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 39));
    assert_eq!(dashboard["uid"].as_str(), Some("snykapps"));
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    for (place, expr, names) in &queries {
        assert!(!names.is_empty(), "{place}: no metric in {expr:?}");
    }
}

/// Grafana stacks panels that claim the same grid cells: every panel has a place of its own.
#[test]
fn no_two_panels_share_a_place_on_the_grid() {
    let dashboard: Value = serde_json::from_str(&repo_file(DASHBOARD)).expect("dashboard JSON");
    let places: Vec<(String, [u64; 4])> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .map(|p| {
            let g = &p["gridPos"];
            let n = |k: &str| g[k].as_u64().unwrap_or_else(|| panic!("gridPos.{k}: {p}"));
            (p["title"].to_string(), [n("x"), n("y"), n("w"), n("h")])
        })
        .collect();
    for (i, (a, [ax, ay, aw, ah])) in places.iter().enumerate() {
        assert!(ax + aw <= 24, "{a} is wider than the grid");
        for (b, [bx, by, bw, bh]) in &places[i + 1..] {
            let apart = ax + aw <= *bx || bx + bw <= *ax || ay + ah <= *by || by + bh <= *ay;
            assert!(apart, "{a} and {b} overlap");
        }
    }
}

/// The label matchers written right after each use of `name` in `expr` (`""` for a bare use).
fn matchers_of<'e>(expr: &'e str, name: &str) -> Vec<&'e str> {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut found = Vec::new();
    for (at, _) in expr.match_indices(name) {
        let before = expr[..at].chars().next_back();
        let rest = &expr[at + name.len()..];
        if before.is_some_and(is_name_char) || rest.starts_with(is_name_char) {
            continue; // part of a longer name
        }
        found.push(
            rest.strip_prefix('{')
                .and_then(|r| r.split_once('}'))
                .map_or("", |(m, _)| m),
        );
    }
    found
}

/// docs/operations.md's promise ("Dashboard"): no query counts a series twice when OTLP export is
/// on, because every selector leaves out what the collector re-exports, directly or through
/// `$job`, whose own query leaves it out.
#[test]
fn every_query_leaves_out_what_the_collector_re_exports() {
    const NOT_COLLECTOR: &str = r#"job!="otel-collector""#;
    assert_eq!(
        matchers_of(r#"a_total{x="1"} + a{y="2"} / a"#, "a"),
        [r#"y="2""#, ""]
    );
    let dashboard: Value = serde_json::from_str(&repo_file(DASHBOARD)).expect("dashboard JSON");
    let queries = dashboard_queries(&dashboard);
    let mut by_job_variable = 0;
    for (place, expr, names) in &queries {
        for name in names {
            for m in matchers_of(expr, name) {
                let through_variable = m.contains(r#"job="$job""#);
                by_job_variable += usize::from(through_variable);
                assert!(
                    m.contains(NOT_COLLECTOR) || through_variable,
                    "{place}: {name} counts the collector's copies too: {expr}"
                );
            }
        }
    }
    assert!(by_job_variable > 0, "the process row picks its job by $job");
    let job = queries
        .iter()
        .find(|(place, ..)| place == "variable $job")
        .expect("a $job variable");
    assert!(job.1.contains(NOT_COLLECTOR), "{}", job.1);
}

// ---- The services, for real -------------------------------------------------------------------

/// The three services as processes (the real binaries), each with its own `/metrics`.
struct Services {
    _token: Process,
    token_addr: SocketAddr,
    _projects: Process,
    _auth: Process,
    _auth_redis: test_support::RedisServer,
    auth_url: String,
    /// service name → its `/metrics` URL.
    metrics: BTreeMap<&'static str, String>,
}

fn loopback(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

async fn start_services(stack: &Stack, auth_port: u16) -> Services {
    let token_addr: SocketAddr = ([127, 0, 0, 1], test_support::free_port().unwrap()).into();
    let token_metrics = loopback(test_support::free_port().unwrap());
    let env: Vec<(String, String)> = stack.token_env(&[
        ("TOKEN_SERVICE_ADDR", &token_addr.to_string()),
        ("TOKEN_SERVICE_METRICS_ADDR", &token_metrics),
        // A sweep a second: the shortest-remaining-life gauge is set soon after an install.
        ("TOKEN_KEEPALIVE_INTERVAL_SECONDS", "1"),
        // The shortest: the forced refreshes below wait out at most a second each.
        (
            "TOKEN_MIN_REFRESH_INTERVAL_SECONDS",
            &MIN_REFRESH_INTERVAL.as_secs().to_string(),
        ),
    ]);
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let mut token = Process::spawn("token-service", &env);
    process::wait_grpc_serving(&mut token, token_addr, "snykapps.token.v1.TokenService").await;

    let projects_addr = loopback(test_support::free_port().unwrap());
    let projects_url = format!("http://{projects_addr}");
    let env: Vec<(&str, String)> = vec![
        ("PROJECTS_SERVICE_ADDR", projects_addr),
        ("SNYK_API_URL", stack.fake.url()),
        ("TOKEN_SERVICE_URL", format!("http://{token_addr}")),
        ("TOKEN_SERVICE_API_KEY", PROJECTS_TOKEN_KEY.to_owned()),
        (
            "PROJECTS_SERVICE_CLIENT_KEYS",
            format!("auth-service={PROJECTS_KEY}"),
        ),
        ("PROJECTS_SERVICE_ORG_ROUTE_CALLERS", String::new()),
    ];
    let mut projects = Process::spawn("projects-service", &env);
    process::wait_http_ok(&mut projects, &format!("{projects_url}/readyz")).await;

    let auth_url = format!("http://{}", loopback(auth_port));
    let auth_metrics = loopback(test_support::free_port().unwrap());
    let auth_redis = auth_redis();
    let env: Vec<(&str, String)> = vec![
        ("AUTH_SERVICE_ADDR", loopback(auth_port)),
        ("AUTH_SERVICE_METRICS_ADDR", auth_metrics.clone()),
        ("SNYK_APP_URL", stack.fake.url()),
        ("SNYK_CLIENT_ID", CLIENT_ID.into()),
        ("SNYK_REDIRECT_URI", format!("{auth_url}/callback")),
        ("TOKEN_SERVICE_URL", format!("http://{token_addr}")),
        ("TOKEN_SERVICE_API_KEY", AUTH_TOKEN_KEY.into()),
        ("PROJECTS_SERVICE_URL", projects_url.clone()),
        ("PROJECTS_SERVICE_API_KEY", PROJECTS_KEY.into()),
        ("AUTH_REDIS_URL", auth_redis.url_as(AUTH_SERVICE_USER)),
        ("AUTH_COOKIE_KEY", AUTH_COOKIE_KEY.into()),
    ];
    let mut auth = Process::spawn("auth-service", &env);
    process::wait_http_ok(&mut auth, &format!("{auth_url}/readyz")).await;

    Services {
        _token: token,
        token_addr,
        _projects: projects,
        _auth: auth,
        _auth_redis: auth_redis,
        auth_url,
        metrics: BTreeMap::from([
            ("token-service", format!("http://{token_metrics}/metrics")),
            ("projects-service", format!("{projects_url}/metrics")),
            ("auth-service", format!("http://{auth_metrics}/metrics")),
        ]),
    }
}

/// The series names of a Prometheus text scrape (`name{labels} value` → `name`).
fn series_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

async fn scrape(url: &str) -> String {
    let res = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(res.status(), 200, "{url}");
    res.text().await.unwrap()
}

impl Services {
    async fn scrapes(&self) -> BTreeMap<&'static str, BTreeSet<String>> {
        let mut out = BTreeMap::new();
        for (service, url) in &self.metrics {
            out.insert(*service, series_names(&scrape(url).await));
        }
        out
    }

    /// Until token-service's `/metrics` has `series`; fails after 20 s naming it. Returns the
    /// series of the scrape that had it.
    async fn until_token_service_exports(&self, series: &str) -> BTreeSet<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let names = series_names(&scrape(&self.metrics["token-service"]).await);
            if names.contains(series) {
                return names;
            }
            assert!(
                Instant::now() < deadline,
                "token-service never exported {series}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported_by_a_service() {
    let dashboard: Value = serde_json::from_str(&repo_file(DASHBOARD)).expect("dashboard JSON");
    let auth_port = test_support::free_port().unwrap();
    let mut fake = hour_long_tokens();
    fake.redirect_uris
        .push(format!("http://127.0.0.1:{auth_port}/callback"));
    let stack = Stack::start(fake).await;
    let services = start_services(&stack, auth_port).await;

    // Before anything happened, the counters of known outcomes are already there (at 0), so the
    // dashboard's rates read 0 and not "no data".
    let idle = series_names(&scrape(&services.metrics["token-service"]).await);
    for counter in [
        "snykapps_token_refreshes_total",
        "snykapps_token_refresh_in_doubt_total",
        "snykapps_installs_needs_reauth_total",
        "snykapps_keepalive_refreshes_total",
        "snykapps_snyk_client_secret_rejected_total",
        "snykapps_snyk_permits_total",
        "snykapps_snyk_pauses_total",
    ] {
        assert!(
            idle.contains(counter),
            "token-service exports {counter} only after its first event: {idle:?}"
        );
    }

    // An install through the browser, and its page (a projects listing through projects-service,
    // which fetches a token as `projects-service`).
    let browser = Browser::new();
    let install = install_over_http(&browser, &services.auth_url).await;
    let page = browser
        .get(&format!("{}/installs/{install}", services.auth_url))
        .await;
    assert_eq!(page.status(), 200, "the install's page shows");
    // The keep-alive sweeper reports the shortest remaining refresh-token life while an install
    // is ACTIVE (this one needs re-authorization at the end, and the gauge then has no value).
    let while_active = services
        .until_token_service_exports("snykapps_installs_refresh_token_min_remaining")
        .await;

    // A token fetch and a forced refresh by an operator (of a token that new: held until it is
    // an interval old, a refused spin).
    let mut c = client_with_key(services.token_addr, CALLER_KEY).await;
    let t0 = access_token(&mut c, &install).await;
    let t1 = c
        .force_refresh(force(&install, &t0))
        .await
        .expect("forced refresh")
        .into_inner()
        .access_token;

    let spins = scrape(&services.metrics["token-service"]).await;
    assert!(
        spins.lines().any(|l| {
            l.starts_with("snykapps_token_refresh_spins_refused_total{")
                && l.contains(r#"caller="ops""#)
                && l.contains(r#"rpc="ForceRefresh""#)
                && l.ends_with(" 1")
        }),
        "the held forced refresh is counted for its caller and RPC:\n{spins}"
    );

    // A lease wait: another "replica" holds the install's refresh lease for a moment, so the
    // next forced refresh waits for it. The hold must outlast the call's way to its first try;
    // on a machine slow enough to miss that, a longer hold is tried. The rejected token is first
    // let grow an interval old, so the call is not held before it meets the lease.
    let store = stack.store(&[]).await;
    let id = token_service::grant::InstallId::parse(&install).unwrap();
    let mut rejected = t1;
    for hold in [1, 3, 8].map(Duration::from_secs) {
        tokio::time::sleep(MIN_REFRESH_INTERVAL).await;
        assert!(
            store.try_lease(&id, "dashboard-test", hold).await.unwrap(),
            "the lease is free"
        );
        rejected = c
            .force_refresh(force(&install, &rejected))
            .await
            .expect("a forced refresh after the wait")
            .into_inner()
            .access_token;
        if series_names(&scrape(&services.metrics["token-service"]).await)
            .contains("snykapps_token_refresh_lease_wait_count")
        {
            break;
        }
    }

    // A lost refresh answer: the refresh is in doubt and the install needs re-authorization.
    stack.fake.inject(Fault::LoseRefreshResponses(1));
    let err = c
        .force_refresh(force(&install, &rejected))
        .await
        .expect_err("an in-doubt refresh fails");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        install_status(&mut c, &install).await.needs_reauth_reason,
        "refresh_in_doubt"
    );

    // Arrange is over: now every queried metric must be somewhere.
    let scrapes = services.scrapes().await;
    let exported: BTreeSet<&String> = scrapes.values().flatten().chain(&while_active).collect();
    let mut missing = Vec::new();
    for (place, _expr, names) in dashboard_queries(&dashboard) {
        for name in names {
            if !exported.contains(&name) {
                missing.push(format!("{name} ({place})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics no service exports:\n  {}\nexported: {exported:?}",
        missing.join("\n  ")
    );

    // And every service has the process series.
    for (service, names) in &scrapes {
        let lacking: Vec<_> = PROCESS_SERIES
            .iter()
            .filter(|s| !names.contains(**s))
            .collect();
        assert!(
            lacking.is_empty(),
            "{service}'s /metrics lacks the process series {lacking:?}"
        );
    }
}
