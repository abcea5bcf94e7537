#![allow(clippy::unwrap_used)]
use super::*;
use crate::listings::{COMPLETED, Outcome};
use crate::page::{Memory, PageLoad};
use serde_json::json;

fn sample(at_s: f64, accepted: u64, rate_limited: u64, retry_after: &[(u32, u64)]) -> FakeSample {
    FakeSample {
        at_s,
        accepted,
        answered: accepted + rate_limited,
        rate_limited,
        retry_after: retry_after.iter().copied().collect(),
    }
}

fn listings(
    budget: u32,
    wall_s: f64,
    results: &[&str],
    samples: Vec<FakeSample>,
) -> ListingsReport {
    ListingsReport {
        kind: "listings".into(),
        targets: vec!["a".into(), "b".into(), "c".into()],
        listings: results.len(),
        expect_count: Some(5_000),
        budget_per_minute: Some(budget),
        wall_s,
        outcomes: results
            .iter()
            .enumerate()
            .map(|(i, r)| Outcome {
                replica: i % 3,
                ended_s: wall_s,
                result: (*r).into(),
                retry_after_s: None,
            })
            .collect(),
        samples,
        first_error: None,
    }
}

fn page(auth_kib: u64, projects_kib: u64) -> PageReport {
    PageReport {
        kind: "install-page".into(),
        install_id: "i".into(),
        loads: vec![PageLoad {
            status: 200,
            seconds: 1.5,
            bytes: 2 * 1024 * 1024,
            orgs: 40,
            listed: 40,
            unavailable: 0,
        }],
        memory: vec![
            Memory {
                process: "auth-service".into(),
                before_loads_hwm_kib: 10_240,
                hwm_kib: auth_kib,
            },
            Memory {
                process: "projects-service".into(),
                before_loads_hwm_kib: 8_192,
                hwm_kib: projects_kib,
            },
        ],
    }
}

#[test]
fn a_sample_reads_the_fakes_counters() {
    let stats = json!({
        "rest_calls": {"200": 1200, "429": 3, "401": 1},
        "rate_limited": 3,
        "rate_limited_retry_after": {"58": 2, "1": 1},
        "token_calls": {"refresh_token": 1}
    });
    let s = FakeSample::read(2.5, &stats).unwrap();
    assert_eq!(
        s,
        sample(2.5, 1200, 3, &[(1, 1), (58, 2)]).with_answered(1204)
    );
    // A fake that predates the Retry-After tally, or has served nothing yet.
    let empty = FakeSample::read(0.0, &json!({"token_calls": {}})).unwrap();
    assert_eq!(empty, sample(0.0, 0, 0, &[]));
    assert!(FakeSample::read(0.0, &json!({"rate_limited": "x"})).is_err());
}

impl FakeSample {
    fn with_answered(mut self, answered: u64) -> Self {
        self.answered = answered;
        self
    }
}

#[test]
fn the_rate_while_outstanding_runs_from_the_release_to_the_last_answer() {
    // 100 requests before the release (the install), then 550 a minute for two minutes; the
    // last listing answered at 119.5 s, the sample after it was taken at 120 s.
    let samples: Vec<FakeSample> = (0..=120_u32)
        .map(|t| sample(f64::from(t), 100 + u64::from(t) * 550 / 60, 0, &[]))
        .collect();
    let span = Span::of(&samples, 119.5).unwrap();
    assert_eq!(span.seconds(), 120.0);
    assert_eq!(span.accepted(), 1_100);
    assert!((span.accepted_per_minute() - 550.0).abs() < 1e-9);
    assert_eq!(span.rate_limited(), 0);
    // A run that ended after the last sample is measured to the last one.
    let short = Span::of(&samples[..11], 60.0).unwrap();
    assert_eq!(short.seconds(), 10.0);
    assert_eq!(short.accepted(), 91);
    // One sample: an empty span, no rate; no sample: no span.
    assert_eq!(
        Span::of(&samples[..1], 5.0).unwrap().accepted_per_minute(),
        0.0
    );
    assert!(Span::of(&[], 5.0).is_none());
}

#[test]
fn windows_are_the_time_covered_over_the_mean_retry_after_sent() {
    // Before the run the fake had sent one 58 s; during it two more of 58 s and two of 2 s.
    let samples = vec![
        sample(0.0, 0, 1, &[(58, 1)]),
        sample(75.0, 500, 3, &[(58, 3)]),
        sample(150.0, 1_500, 5, &[(2, 2), (58, 3)]),
    ];
    let span = Span::of(&samples, 149.0).unwrap();
    assert_eq!(span.rate_limited(), 4);
    assert_eq!(span.retry_after_sent(), BTreeMap::from([(2, 2), (58, 2)]));
    assert_eq!(span.mean_retry_after_s(), Some(30.0));
    assert_eq!(span.windows(), Some(5.0));
    // One per replica per window: 3 replicas × 5 windows.
    assert_eq!(span.allowed_rate_limited(3), 15);
    // A window begun counts whole, and a span shorter than one window allows one per replica.
    let partial = Span::of(&samples[..2], 75.0).unwrap();
    assert_eq!(partial.windows(), Some(75.0 / 58.0));
    assert_eq!(partial.allowed_rate_limited(3), 6);
    let brief = vec![sample(0.0, 0, 0, &[]), sample(10.0, 10, 1, &[(58, 1)])];
    assert_eq!(Span::of(&brief, 10.0).unwrap().allowed_rate_limited(3), 3);
    // No 429, no window: nothing to allow (and nothing sent).
    let clean = vec![sample(0.0, 0, 0, &[]), sample(60.0, 550, 0, &[])];
    let clean = Span::of(&clean, 60.0).unwrap();
    assert_eq!(clean.windows(), None);
    assert_eq!(clean.allowed_rate_limited(3), 0);
}

fn results(
    g1: ListingsReport,
    g2: ListingsReport,
    pages: [(usize, PageReport); 2],
) -> BudgetResults {
    BudgetResults {
        g1: Some(g1),
        g2: Some(g2),
        pages: BTreeMap::from(pages),
        settings: BTreeMap::from([
            ("fake_limit_per_minute".into(), 600.0),
            ("deadline_seconds".into(), 600.0),
            ("projects_per_org".into(), 500.0),
            ("permit_granted".into(), 1.0),
        ]),
    }
}

#[test]
fn goals_met_after_the_budget() {
    let g1 = listings(
        550,
        163.0,
        &[COMPLETED; 30],
        vec![sample(0.0, 10, 0, &[]), sample(163.0, 1_510, 0, &[])],
    );
    let g2 = listings(
        900,
        150.0,
        &[COMPLETED; 30],
        vec![sample(0.0, 0, 0, &[]), sample(150.0, 1_500, 3, &[(50, 3)])],
    );
    let r = render_budget(&results(
        g1,
        g2,
        [(40, page(40_960, 30_720)), (80, page(51_200, 30_720))],
    ));
    assert!(r.missed.is_empty(), "{:?}", r.missed);
    let md = &r.goals;
    assert!(
        md.contains("| G1: listings completed | 30 of 30 | all | ✅ met |"),
        "{md}"
    );
    assert!(
        md.contains("| G1: 429s sent by the fake | 0 | 0 | ✅ met |"),
        "{md}"
    );
    // 1,500 accepted over 163 s: 552/min, 100% of 550.
    assert!(
        md.contains("| 552/min (100% of 550) | ≥ 85% of the budget | ✅ met |"),
        "{md}"
    );
    // 3 replicas × ceil(150 / 50) windows.
    assert!(
        md.contains("| G2: 429s sent by the fake | 3 (3.0 windows, 3 replicas: at most 9) |"),
        "{md}"
    );
    // The page's own memory: the peak after the loads over the peak before them.
    assert!(md.contains("| G3: the install page's own memory in auth-service as its orgs double | 30.0 MiB → 40.0 MiB (1.33×, 40 → 80 orgs; peak RSS 40.0 MiB → 50.0 MiB) | < 1.5× | ✅ met |"), "{md}");
    assert!(md.contains("| 22.0 MiB → 22.0 MiB (1.00×, 40 → 80 orgs; peak RSS 30.0 MiB → 30.0 MiB) | < 1.5× | ✅ met |"), "{md}");
    let details = &r.details;
    assert!(details.contains("| `SNYK_RATE_LIMIT_PER_MINUTE` / the fake's limit (per token, a minute) | 550 / 600 | 900 / 600 |"), "{details}");
    assert!(
        details.contains("| their `Retry-After` | none | 3 × 50 s |"),
        "{details}"
    );
    assert!(
        details.contains(
            "| `Retry-After` windows (time covered / mean `Retry-After`) | no 429 | 3.0 (150 s) |"
        ),
        "{details}"
    );
    assert!(
        details.contains("| 40 orgs × 500 | 80 orgs × 500 |"),
        "{details}"
    );
    assert!(
        details
            .contains("| auth-service: peak RSS (`VmHWM`) after the loads | 40.0 MiB | 50.0 MiB |"),
        "{details}"
    );
    assert!(
        details.contains("| auth-service: the page's own (after − before) | 30.0 MiB | 40.0 MiB |"),
        "{details}"
    );
    assert!(
        details.contains("token-service granted projects-service `AcquireSnykPermit`."),
        "{details}"
    );
}

#[test]
fn goals_missed_before_the_budget() {
    let mut failed = vec!["503 unavailable"; 28];
    failed.extend([COMPLETED, "200 count_mismatch"]);
    let g1 = listings(
        550,
        12.0,
        &failed,
        vec![
            sample(0.0, 0, 0, &[]),
            sample(12.0, 600, 30, &[(50, 28), (49, 2)]),
        ],
    );
    let g2 = listings(
        900,
        12.0,
        &failed,
        vec![sample(0.0, 0, 0, &[]), sample(12.0, 600, 30, &[(50, 30)])],
    );
    let r = render_budget(&results(
        g1,
        g2,
        [(40, page(40_960, 30_720)), (80, page(71_680, 53_248))],
    ));
    assert_eq!(r.missed.len(), 7, "{:?}", r.missed);
    let md = &r.goals;
    assert!(
        md.contains("| G1: listings completed | 1 of 30 | all | ❌ missed |"),
        "{md}"
    );
    assert!(
        md.contains("| G1: 429s sent by the fake | 30 | 0 | ❌ missed |"),
        "{md}"
    );
    // 600 in 12 s is 3,000/min, but the listings failed rather than waited: not a measure of
    // the budget's use.
    assert!(md.contains("| 3,000/min (545% of 550), but listings failed: nothing queued | ≥ 85% of the budget | not measured |"), "{md}");
    assert!(
        md.contains("| 30 (0.2 windows, 3 replicas: at most 3) |"),
        "{md}"
    );
    // Twice the orgs, twice the page's own memory, though the totals grew 1.75× and 1.73×.
    assert!(md.contains("| 30.0 MiB → 60.0 MiB (2.00×, 40 → 80 orgs; peak RSS 40.0 MiB → 70.0 MiB) | < 1.5× | ❌ missed |"), "{md}");
    assert!(md.contains("| 22.0 MiB → 44.0 MiB (2.00×, 40 → 80 orgs; peak RSS 30.0 MiB → 52.0 MiB) | < 1.5× | ❌ missed |"), "{md}");
    assert!(
        r.details.contains("| failed, by HTTP status and error code | 1 × 200 count_mismatch, 28 × 503 unavailable |"),
        "{}",
        r.details
    );
    assert!(
        r.details
            .contains("| completed / failed | 1 / 29 | 1 / 29 |"),
        "{}",
        r.details
    );
}

#[test]
fn missing_runs_are_not_measured() {
    let r = render_budget(&BudgetResults::default());
    assert_eq!(r.missed.len(), 7, "{:?}", r.missed);
    assert!(
        r.goals
            .contains("| G1: listings completed | n/a | all | not measured |"),
        "{}",
        r.goals
    );
    assert!(
        r.details
            .contains("| completed / failed | not run | not run |"),
        "{}",
        r.details
    );
}
