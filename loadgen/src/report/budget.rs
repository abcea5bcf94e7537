//! `loadgen budget-report`: the section of docs/benchmarks.md that `scripts/bench-budget` writes,
//! from the files its run leaves: the request budget under concurrent listings (G1: budget below
//! the fake's limit; G2: above it) and the install page's peak memory as its org count doubles
//! (G3). The arithmetic (requests a minute while listings are outstanding, `Retry-After`
//! windows) lives here, from the fake's counters as `loadgen listings` sampled them.
//!
//! | file | written by |
//! |---|---|
//! | `g1.json`, `g2.json` | `loadgen listings` |
//! | `page-N.json` (any N: the install's org count) | `loadgen install-page` |
//! | `settings.tsv` | the script: `key<TAB>number`: `fake_limit_per_minute`, `deadline_seconds`, `projects_per_org`, `permit_granted` (1 when token-service knows `AcquireSnykPermit`) |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::results::{numbered_files, read_json, tsv_numbers};
use super::tables::mib;
use crate::latency::group_thousands;
use crate::listings::ListingsReport;
use crate::page::{Memory, PageReport};

/// G1: at least this share of the budget is used while listings are outstanding.
pub const BUDGET_USE: f64 = 0.85;
/// G3: with twice the orgs, the install page's own memory (a process's peak after the loads
/// over its peak before them) stays below this multiple of the first: bounded, well under
/// doubling. The totals are not judged: a process's ~12 MiB at rest would let them pass today,
/// when the page's own memory doubles with the orgs.
pub const PAGE_MEMORY_GROWTH: f64 = 1.5;

/// The fake's counters at one moment of a run (from `GET /_fake/stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FakeSample {
    /// Seconds since the listings were released.
    pub at_s: f64,
    /// REST requests answered 200.
    pub accepted: u64,
    /// REST requests answered, whatever the status.
    pub answered: u64,
    /// REST requests refused by the fake's rate limit (429).
    pub rate_limited: u64,
    /// Their `Retry-After` values in seconds, and how many were sent with each.
    #[serde(default)]
    pub retry_after: BTreeMap<u32, u64>,
}

/// The part of `/_fake/stats` a sample reads.
#[derive(Debug, Deserialize)]
struct FakeCounters {
    #[serde(default)]
    rest_calls: BTreeMap<u16, u64>,
    #[serde(default)]
    rate_limited: u64,
    #[serde(default)]
    rate_limited_retry_after: BTreeMap<u32, u64>,
}

impl FakeSample {
    /// The sample of `/_fake/stats` read `at_s` seconds into the run.
    pub fn read(at_s: f64, stats: &Value) -> anyhow::Result<Self> {
        let counters = FakeCounters::deserialize(stats)
            .map_err(|e| anyhow::anyhow!("/_fake/stats does not hold the counters: {e}"))?;
        Ok(Self {
            at_s,
            accepted: counters.rest_calls.get(&200).copied().unwrap_or(0),
            answered: counters.rest_calls.values().sum(),
            rate_limited: counters.rate_limited,
            retry_after: counters.rate_limited_retry_after,
        })
    }
}

/// What the fake did between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span<'a> {
    from: &'a FakeSample,
    to: &'a FakeSample,
}

impl<'a> Span<'a> {
    /// From the sample taken at the release (the first) to the first one taken at or after
    /// `until_s` (the last, if none is that late): the span during which listings were
    /// outstanding, when `until_s` is when the last one answered. `None` without samples.
    pub fn of(samples: &'a [FakeSample], until_s: f64) -> Option<Self> {
        let from = samples.first()?;
        let to = samples
            .iter()
            .find(|s| s.at_s >= until_s)
            .or(samples.last())?;
        Some(Self { from, to })
    }

    /// Seconds between the two samples.
    pub fn seconds(&self) -> f64 {
        (self.to.at_s - self.from.at_s).max(0.0)
    }

    /// REST requests answered 200 in the span.
    pub fn accepted(&self) -> u64 {
        self.to.accepted.saturating_sub(self.from.accepted)
    }

    /// REST requests answered in the span, whatever the status.
    pub fn answered(&self) -> u64 {
        self.to.answered.saturating_sub(self.from.answered)
    }

    /// 429s of the fake's rate limit in the span.
    pub fn rate_limited(&self) -> u64 {
        self.to.rate_limited.saturating_sub(self.from.rate_limited)
    }

    /// Accepted requests a minute over the span (0 for an empty span).
    pub fn accepted_per_minute(&self) -> f64 {
        let seconds = self.seconds();
        if seconds > 0.0 {
            self.accepted() as f64 * 60.0 / seconds
        } else {
            0.0
        }
    }

    /// The `Retry-After` values the fake sent in the span, with how many of each.
    pub fn retry_after_sent(&self) -> BTreeMap<u32, u64> {
        self.to
            .retry_after
            .iter()
            .filter_map(|(&secs, &n)| {
                let before = self.from.retry_after.get(&secs).copied().unwrap_or(0);
                let sent = n.saturating_sub(before);
                (sent > 0).then_some((secs, sent))
            })
            .collect()
    }

    /// The mean `Retry-After` the fake sent in the span, in seconds; `None` without a 429.
    pub fn mean_retry_after_s(&self) -> Option<f64> {
        let sent = self.retry_after_sent();
        let count: u64 = sent.values().sum();
        let total: u64 = sent.iter().map(|(&secs, &n)| u64::from(secs) * n).sum();
        (count > 0).then(|| total as f64 / count as f64)
    }

    /// How many `Retry-After` windows the span covers: its length over the mean `Retry-After`
    /// sent; `None` when none was sent.
    pub fn windows(&self) -> Option<f64> {
        self.mean_retry_after_s()
            .filter(|&mean| mean > 0.0)
            .map(|mean| self.seconds() / mean)
    }

    /// The most 429s the G2 goal allows: one per replica per window begun (none without a 429,
    /// since then there is no window).
    pub fn allowed_rate_limited(&self, replicas: usize) -> u64 {
        self.windows()
            .map_or(0, |w| replicas as u64 * w.ceil().max(1.0) as u64)
    }
}

/// What a `scripts/bench-budget` run left.
#[derive(Debug, Clone, Default)]
pub struct BudgetResults {
    /// G1: the budget below the fake's limit.
    pub g1: Option<ListingsReport>,
    /// G2: the budget above it.
    pub g2: Option<ListingsReport>,
    /// G3: the install page, by the install's org count.
    pub pages: BTreeMap<usize, PageReport>,
    /// `settings.tsv`.
    pub settings: BTreeMap<String, f64>,
}

impl BudgetResults {
    /// Reads whatever the run left in `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            g1: read_json(dir, "g1.json")?,
            g2: read_json(dir, "g2.json")?,
            pages: numbered_files(dir, "page-")?,
            settings: tsv_numbers(dir, "settings.tsv")?,
        })
    }
}

/// The rendered section and the goals it missed.
#[derive(Debug, Clone)]
pub struct BudgetRendered {
    /// The goals table (what the fixed "before" table keeps).
    pub goals: String,
    /// The tables behind them.
    pub details: String,
    /// One line per missed or unmeasured goal.
    pub missed: Vec<String>,
}

/// A `BTreeMap` of counts as `3 × a, 1 × b` (`none` when empty).
fn counts<K: std::fmt::Display>(map: &BTreeMap<K, u64>, unit: &str) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, n)| format!("{n} × {k}{unit}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `x.yz×`, `n/a` when the denominator is 0.
fn times(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

struct Goals {
    out: String,
    missed: Vec<String>,
}

impl Goals {
    fn new() -> Self {
        Self {
            out: "| goal | measured | target | |\n|---|---:|---|---|\n".into(),
            missed: Vec::new(),
        }
    }

    fn row(&mut self, what: &str, measured: String, target: &str, met: Option<bool>) {
        let verdict = match met {
            Some(true) => "✅ met",
            Some(false) => {
                self.missed
                    .push(format!("{what}: {measured}, target {target}"));
                "❌ missed"
            }
            None => {
                self.missed.push(format!("{what}: not measured"));
                "not measured"
            }
        };
        let _ = writeln!(self.out, "| {what} | {measured} | {target} | {verdict} |");
    }

    fn listings(&mut self, goal: &str, run: Option<&ListingsReport>) {
        let what = format!("{goal}: listings completed");
        match run {
            Some(r) => self.row(
                &what,
                format!("{} of {}", r.completed(), r.listings),
                "all",
                Some(r.completed() == r.listings),
            ),
            None => self.row(&what, "n/a".into(), "all", None),
        }
    }
}

/// Renders the section's tables.
pub fn render_budget(results: &BudgetResults) -> BudgetRendered {
    let mut goals = Goals::new();

    goals.listings("G1", results.g1.as_ref());
    match run_span(results.g1.as_ref()) {
        Some((_, s)) => goals.row(
            "G1: 429s sent by the fake",
            s.rate_limited().to_string(),
            "0",
            Some(s.rate_limited() == 0),
        ),
        None => goals.row("G1: 429s sent by the fake", "n/a".into(), "0", None),
    }
    let use_target = format!("≥ {:.0}% of the budget", BUDGET_USE * 100.0);
    match run_span(results.g1.as_ref()) {
        Some((r, s)) if r.budget_per_minute.is_some_and(|b| b > 0) => {
            let budget = f64::from(r.budget_per_minute.unwrap_or(1));
            let share = s.accepted_per_minute() / budget;
            let measured = format!(
                "{}/min ({:.0}% of {budget:.0})",
                per_minute(s.accepted_per_minute()),
                share * 100.0
            );
            // Listings that failed instead of waiting queued nothing: their rate is a burst's.
            let queued = r.completed() == r.listings;
            goals.row(
                "G1: Snyk requests a minute while listings are outstanding",
                if queued {
                    measured
                } else {
                    format!("{measured}, but listings failed: nothing queued")
                },
                &use_target,
                queued.then_some(share >= BUDGET_USE),
            );
        }
        _ => goals.row(
            "G1: Snyk requests a minute while listings are outstanding",
            "n/a".into(),
            &use_target,
            None,
        ),
    }

    goals.listings("G2", results.g2.as_ref());
    let per_window = "≤ 1 per replica per `Retry-After` window";
    match run_span(results.g2.as_ref()) {
        Some((r, s)) => {
            let replicas = r.targets.len();
            let windows = s
                .windows()
                .map_or("no window".into(), |w| format!("{w:.1} windows"));
            goals.row(
                "G2: 429s sent by the fake",
                format!(
                    "{} ({windows}, {replicas} replicas: at most {})",
                    s.rate_limited(),
                    s.allowed_rate_limited(replicas)
                ),
                per_window,
                Some(s.rate_limited() <= s.allowed_rate_limited(replicas)),
            );
        }
        None => goals.row("G2: 429s sent by the fake", "n/a".into(), per_window, None),
    }

    let bounded = format!("< {PAGE_MEMORY_GROWTH:.1}×");
    let sizes: Vec<usize> = results.pages.keys().copied().collect();
    for process in PROCESSES {
        let what = format!("G3: the install page's own memory in {process} as its orgs double");
        let pair = sizes.iter().find_map(|&small| {
            let large = results.pages.get(&(small * 2))?;
            Some((
                small,
                memory(results.pages.get(&small)?, process)?,
                memory(large, process)?,
            ))
        });
        match pair {
            Some((small, a, b)) => {
                let ratio = times(b.growth_kib(), a.growth_kib());
                goals.row(
                    &what,
                    format!(
                        "{} → {} ({}, {small} → {} orgs; peak RSS {} → {})",
                        mib(a.growth_kib() as f64),
                        mib(b.growth_kib() as f64),
                        ratio.map_or("n/a".into(), |r| format!("{r:.2}×")),
                        small * 2,
                        mib(a.hwm_kib as f64),
                        mib(b.hwm_kib as f64),
                    ),
                    &bounded,
                    ratio.map(|r| r < PAGE_MEMORY_GROWTH),
                );
            }
            None => goals.row(&what, "n/a".into(), &bounded, None),
        }
    }

    BudgetRendered {
        goals: goals.out,
        details: details(results),
        missed: goals.missed,
    }
}

/// A listing run with the span during which its listings were outstanding.
fn run_span(run: Option<&ListingsReport>) -> Option<(&ListingsReport, Span<'_>)> {
    run.and_then(|r| Span::of(&r.samples, r.wall_s).map(|s| (r, s)))
}

/// The processes behind the install page whose memory G3 reads.
const PROCESSES: [&str; 2] = ["auth-service", "projects-service"];

/// What a run read of `process`'s memory.
fn memory<'a>(page: &'a PageReport, process: &str) -> Option<&'a Memory> {
    page.memory.iter().find(|m| m.process == process)
}

/// A rate a minute, whole and grouped: `1,234`.
fn per_minute(rate: f64) -> String {
    group_thousands(rate.round() as u64)
}

fn details(results: &BudgetResults) -> String {
    let mut out = String::new();
    let setting = |key: &str| {
        results
            .settings
            .get(key)
            .map_or("n/a".into(), |v| group_thousands(*v as u64))
    };
    let runs = [("G1", results.g1.as_ref()), ("G2", results.g2.as_ref())];
    out.push_str("#### Listings (G1, G2)\n\n| | G1 | G2 |\n|---|---|---|\n");
    let mut row = |label: &str, cell: &dyn Fn(&ListingsReport) -> String| {
        let cells: Vec<String> = runs
            .iter()
            .map(|(_, r)| r.map_or("not run".into(), cell))
            .collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    };
    let fake_limit = setting("fake_limit_per_minute");
    row(
        "`SNYK_RATE_LIMIT_PER_MINUTE` / the fake's limit (per token, a minute)",
        &|r| {
            let budget = r.budget_per_minute.map_or("n/a".into(), |b| b.to_string());
            format!("{budget} / {fake_limit}")
        },
    );
    row("projects-service replicas", &|r| {
        r.targets.len().to_string()
    });
    row("concurrent listings (projects each)", &|r| {
        let each = r.expect_count.map_or("?".into(), group_thousands);
        format!("{} ({each})", r.listings)
    });
    row("completed / failed", &|r| {
        format!("{} / {}", r.completed(), r.listings - r.completed())
    });
    row("failed, by HTTP status and error code", &|r| {
        counts(&r.failures(), "")
    });
    let spans = |r: &ListingsReport, f: &dyn Fn(&Span<'_>) -> String| {
        Span::of(&r.samples, r.wall_s).map_or("n/a".into(), |s| f(&s))
    };
    row("Snyk requests answered (200 / all)", &|r| {
        spans(r, &|s| {
            format!(
                "{} / {}",
                group_thousands(s.accepted()),
                group_thousands(s.answered())
            )
        })
    });
    row("429s sent by the fake", &|r| {
        spans(r, &|s| s.rate_limited().to_string())
    });
    row("their `Retry-After`", &|r| {
        spans(r, &|s| counts(&s.retry_after_sent(), " s"))
    });
    row(
        "`Retry-After` windows (time covered / mean `Retry-After`)",
        &|r| {
            spans(r, &|s| {
                s.windows().map_or("no 429".into(), |w| {
                    format!("{w:.1} ({:.0} s)", s.seconds())
                })
            })
        },
    );
    row(
        "Snyk requests a minute while listings are outstanding (200s)",
        &|r| {
            spans(r, &|s| {
                let share = r
                    .budget_per_minute
                    .filter(|&b| b > 0)
                    .map_or(String::new(), |b| {
                        format!(
                            " ({:.0}% of the budget)",
                            s.accepted_per_minute() * 100.0 / f64::from(b)
                        )
                    });
                format!("{}{share}", per_minute(s.accepted_per_minute()))
            })
        },
    );
    row("wall time (the last listing's answer)", &|r| {
        format!("{:.1} s", r.wall_s)
    });
    let _ = writeln!(
        out,
        "\n`PROJECTS_SERVICE_DEADLINE_SECONDS={}` for both runs, so that the deadline does not cut \
         them short. {}",
        setting("deadline_seconds"),
        match results.settings.get("permit_granted") {
            Some(v) if *v > 0.0 => "token-service granted projects-service `AcquireSnykPermit`.",
            Some(_) => {
                "token-service did not know `AcquireSnykPermit`: nothing was granted, no budget \
                 was asked for."
            }
            None => "Whether token-service granted `AcquireSnykPermit` is not known.",
        }
    );

    out.push_str("\n#### The install page (G3)\n\n");
    let sizes: Vec<usize> = results.pages.keys().copied().collect();
    let projects = setting("projects_per_org");
    let header: Vec<String> = sizes
        .iter()
        .map(|n| format!("{n} orgs × {projects}"))
        .collect();
    let _ = writeln!(out, "| | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(sizes.len()));
    let mut row = |label: &str, cell: &dyn Fn(&PageReport) -> String| {
        let cells: Vec<String> = results.pages.values().map(cell).collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    };
    row("page loads (HTTP status)", &|p| {
        let mut statuses = BTreeMap::new();
        for l in &p.loads {
            *statuses.entry(l.status).or_default() += 1;
        }
        counts(&statuses, "")
    });
    row("orgs on the last page: listed / unavailable", &|p| {
        p.loads.last().map_or("n/a".into(), |l| {
            format!("{} / {}", l.listed, l.unavailable)
        })
    });
    row("load time (each)", &|p| {
        p.loads
            .iter()
            .map(|l| format!("{:.2} s", l.seconds))
            .collect::<Vec<_>>()
            .join(", ")
    });
    row("page size", &|p| {
        p.loads
            .last()
            .map_or("n/a".into(), |l| mib(l.bytes as f64 / 1024.0))
    });
    for process in PROCESSES {
        let kib = |p: &PageReport, f: &dyn Fn(&Memory) -> u64| {
            memory(p, process).map_or("n/a".into(), |m| mib(f(m) as f64))
        };
        row(&format!("{process}: `VmHWM` before the first load"), &|p| {
            kib(p, &|m| m.before_loads_hwm_kib)
        });
        row(
            &format!("{process}: peak RSS (`VmHWM`) after the loads"),
            &|p| kib(p, &|m| m.hwm_kib),
        );
        row(
            &format!("{process}: the page's own (after − before)"),
            &|p| kib(p, &Memory::growth_kib),
        );
    }
    out
}

#[cfg(test)]
mod tests;
