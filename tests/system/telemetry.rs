//! Telemetry across processes: the real binaries export OTLP to an in-process receiver, and one
//! user action must come back as one trace spanning every service it touched.

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
};
use system_tests::{process::Process, *};
use tokio_stream::wrappers::TcpListenerStream;

/// One exported span.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub service: String,
    pub trace_id: Vec<u8>,
    pub name: String,
    /// The trace ids of the spans it links to.
    pub linked_traces: Vec<Vec<u8>>,
}

/// An OTLP/gRPC trace receiver that keeps everything it is sent.
#[derive(Clone, Default)]
pub struct Receiver {
    spans: Arc<Mutex<Vec<SpanRecord>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(SpanRecord {
                        service: service.clone(),
                        trace_id: span.trace_id,
                        name: span.name,
                        linked_traces: span.links.into_iter().map(|l| l.trace_id).collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// Starts the receiver on a free port; returns its endpoint URL.
    pub async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }

    /// The services seen in the trace with this id.
    pub fn services_in(&self, trace_id: &[u8]) -> BTreeSet<String> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .map(|s| s.service.clone())
            .collect()
    }

    /// The spans of the trace with this id.
    pub fn spans_in(&self, trace_id: &[u8]) -> Vec<SpanRecord> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }

    /// Waits until some trace contains spans of every one of `services`; returns its id.
    pub async fn trace_spanning(&self, services: &[&str], root_span_hint: &str) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            {
                let spans = self.spans.lock().unwrap();
                let mut by_trace: HashMap<&Vec<u8>, BTreeSet<&str>> = HashMap::new();
                for s in spans.iter() {
                    by_trace
                        .entry(&s.trace_id)
                        .or_default()
                        .insert(s.service.as_str());
                }
                let hinted = spans
                    .iter()
                    .filter(|s| s.name.contains(root_span_hint))
                    .map(|s| &s.trace_id);
                for t in hinted {
                    if services
                        .iter()
                        .all(|s| by_trace.get(t).is_some_and(|set| set.contains(s)))
                    {
                        return t.clone();
                    }
                }
                if Instant::now() > deadline {
                    let summary: Vec<_> =
                        by_trace.iter().map(|(t, s)| (hex(t), s.clone())).collect();
                    panic!(
                        "no trace spans {services:?} (hint {root_span_hint}); traces seen: {summary:?}"
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The telemetry environment every process gets.
pub fn otel_env(endpoint: &str, service: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_SERVICE_NAME", service.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "600000".to_owned()),
    ]
}

/// token-service and projects-service as processes exporting to `endpoint`.
pub async fn traced_backends(
    stack: &Stack,
    endpoint: &str,
    token_overrides: &[(&str, &str)],
) -> (Process, SocketAddr, Process, String, String) {
    let token_port = test_support::free_port().unwrap();
    let token_addr: SocketAddr = ([127, 0, 0, 1], token_port).into();
    let mut env: Vec<(&str, String)> = stack
        .token_env(token_overrides)
        .into_iter()
        .filter(|(k, _)| k != "TOKEN_SERVICE_ADDR" && k != "TOKEN_SERVICE_METRICS_ADDR")
        .map(|(k, v)| (leak(k), v))
        .collect();
    env.push(("TOKEN_SERVICE_ADDR", token_addr.to_string()));
    let metrics_port = test_support::free_port().unwrap();
    env.push((
        "TOKEN_SERVICE_METRICS_ADDR",
        format!("127.0.0.1:{metrics_port}"),
    ));
    env.extend(otel_env(endpoint, "token-service"));
    let mut token = Process::spawn("token-service", &env);
    system_tests::process::wait_grpc_serving(
        &mut token,
        token_addr,
        "snykapps.token.v1.TokenService",
    )
    .await;

    let projects_port = test_support::free_port().unwrap();
    let projects_url = format!("http://127.0.0.1:{projects_port}");
    let mut env: Vec<(&str, String)> = vec![
        (
            "PROJECTS_SERVICE_ADDR",
            format!("127.0.0.1:{projects_port}"),
        ),
        ("SNYK_API_URL", stack.fake.url()),
        ("TOKEN_SERVICE_URL", format!("http://{token_addr}")),
        ("TOKEN_SERVICE_API_KEY", PROJECTS_TOKEN_KEY.to_owned()),
        (
            "PROJECTS_SERVICE_CLIENT_KEYS",
            format!("auth-service={PROJECTS_KEY}"),
        ),
        // This test lists by org as auth-service.
        (
            "PROJECTS_SERVICE_ORG_ROUTE_CALLERS",
            "auth-service".to_owned(),
        ),
    ];
    env.extend(otel_env(endpoint, "projects-service"));
    let mut projects = Process::spawn("projects-service", &env);
    system_tests::process::wait_http_ok(&mut projects, &format!("{projects_url}/readyz")).await;
    (
        token,
        token_addr,
        projects,
        projects_url,
        format!("http://127.0.0.1:{metrics_port}/metrics"),
    )
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[tokio::test]
async fn a_projects_listing_is_one_trace_across_projects_and_token_service() {
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let stack = Stack::start(fake_config()).await;
    let (_token, token_addr, _projects, projects_url, token_metrics) =
        traced_backends(&stack, &endpoint, &[]).await;
    let mut c = client_with_key(token_addr, CALLER_KEY).await;
    let install = stack.install(&mut c).await;
    let org = &install.orgs[0].id;

    // The caller starts the trace; every hop must continue it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = reqwest::Client::new()
        .get(format!("{projects_url}/v1/orgs/{org}/projects"))
        .bearer_auth(PROJECTS_KEY)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let found = receiver
        .trace_spanning(&["projects-service", "token-service"], "")
        .await;
    assert_eq!(
        hex(&found),
        trace_id,
        "the caller's trace was continued, not replaced"
    );
    assert_eq!(
        receiver.services_in(&found),
        BTreeSet::from(["projects-service".into(), "token-service".into()])
    );

    // The same work shows up in each service's Prometheus endpoint.
    let token = reqwest::get(&token_metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        // By caller: projects-service's hand-outs, under its configured name.
        "snykapps_token_requests_total{caller=\"projects-service\",outcome=\"ok\",served=\"stored\"}",
        "snykapps_snyk_calls_total{endpoint=\"oauth2/token\",status=\"200\"}",
        // Exported at 0 from start-up.
        "snykapps_snyk_body_capped_total{endpoint=\"oauth2/token\"} 0",
        "rpc_server_duration_bucket",
    ] {
        assert!(
            token.contains(series),
            "token-service /metrics lacks {series}:\n{token}"
        );
    }
    let projects = reqwest::get(format!("{projects_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "snykapps_snyk_calls_total{endpoint=\"rest/projects\",status=\"200\"}",
        // Exported at 0 from start-up.
        "snykapps_snyk_body_capped_total{endpoint=\"rest/projects\"} 0",
        "snykapps_listings_capped_total 0",
        "http_server_duration_bucket",
    ] {
        assert!(
            projects.contains(series),
            "projects-service /metrics lacks {series}:\n{projects}"
        );
    }
}

#[tokio::test]
async fn an_install_is_one_trace_across_auth_service_and_token_service() {
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let auth_port = test_support::free_port().unwrap();
    let auth_url = format!("http://127.0.0.1:{auth_port}");
    let mut fake = fake_config();
    fake.redirect_uris.push(format!("{auth_url}/callback"));
    let stack = Stack::start(fake).await;
    // `Stack::token_env` has auth-service's key and real grant.
    let (_token, token_addr, _projects, projects_url, _) =
        traced_backends(&stack, &endpoint, &[]).await;
    let auth_redis = auth_redis();
    let mut env: Vec<(&str, String)> = vec![
        ("AUTH_SERVICE_ADDR", format!("127.0.0.1:{auth_port}")),
        ("SNYK_APP_URL", stack.fake.url()),
        ("SNYK_CLIENT_ID", CLIENT_ID.into()),
        ("SNYK_REDIRECT_URI", format!("{auth_url}/callback")),
        ("TOKEN_SERVICE_URL", format!("http://{token_addr}")),
        ("TOKEN_SERVICE_API_KEY", AUTH_TOKEN_KEY.into()),
        ("PROJECTS_SERVICE_URL", projects_url),
        ("PROJECTS_SERVICE_API_KEY", PROJECTS_KEY.into()),
        ("AUTH_REDIS_URL", auth_redis.url_as(AUTH_SERVICE_USER)),
        ("AUTH_COOKIE_KEY", AUTH_COOKIE_KEY.into()),
    ];
    env.extend(otel_env(&endpoint, "auth-service"));
    let mut auth = Process::spawn("auth-service", &env);
    system_tests::process::wait_http_ok(&mut auth, &format!("{auth_url}/readyz")).await;

    // The browser's install: /auth, Approve on the fake's consent page, /callback; the browser
    // sends a trace context of its own choosing with every request.
    let browser_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "traceparent",
        format!("00-{browser_trace}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    headers.insert(
        "tracestate",
        "vendor=chosen-by-the-browser".parse().unwrap(),
    );
    let browser = Browser::with_client(reqwest::Client::builder().default_headers(headers));
    let res = browser.get(&format!("{auth_url}/auth")).await;
    let consent = reqwest::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    let page = browser.get(consent.as_str()).await.text().await.unwrap();
    let res = browser.press(&consent, &page, "approve").await;
    let callback = res.headers()["location"].to_str().unwrap().to_owned();
    let res = browser.get(&callback).await;
    assert_eq!(res.status(), 303, "install completed");

    let found = receiver
        .trace_spanning(&["auth-service", "token-service"], "CompleteInstall")
        .await;
    assert_eq!(
        receiver.services_in(&found),
        BTreeSet::from(["auth-service".into(), "token-service".into()])
    );

    // auth-service started that trace itself; the browser's is only linked from its root span,
    // and no service continued it.
    assert_ne!(
        hex(&found),
        browser_trace,
        "the browser's trace was adopted"
    );
    let linked: Vec<SpanRecord> = receiver
        .spans_in(&found)
        .into_iter()
        .filter(|s| s.linked_traces.iter().any(|t| hex(t) == browser_trace))
        .collect();
    assert!(
        linked.len() == 1 && linked[0].service == "auth-service",
        "one auth-service span links the browser's trace: {linked:?}"
    );
    let browser_trace_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&browser_trace[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert!(
        receiver.services_in(&browser_trace_bytes).is_empty(),
        "{:?}",
        receiver.spans_in(&browser_trace_bytes)
    );
}
