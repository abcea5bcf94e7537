//! `loadgen install-page`: a browser's install through auth-service (`/auth`, Approve on the
//! fake's consent page, `/callback`, with auth-service's cookies kept and sent back), then the
//! install page (`GET /installs/{id}`) loaded a few times, one after the other, while the peak
//! resident set of the processes named on the command line is read from `/proc`: what the install
//! page's memory is measured by (docs/benchmarks.md, "the install page").

use std::time::Duration;

use anyhow::Context as _;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::args::LocalUrl;
use crate::install::{approve_at, client_builder};

/// A process whose memory is read: `name=pid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// What the report calls it (`auth-service`).
    pub name: String,
    /// Its process id.
    pub pid: u32,
}

impl Watched {
    /// `name=pid`.
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let (name, pid) = raw
            .split_once('=')
            .with_context(|| format!("--watch {raw:?} is not NAME=PID"))?;
        let pid = pid
            .trim()
            .parse()
            .with_context(|| format!("--watch {raw:?}: the pid is not a number"))?;
        Ok(Self {
            name: name.trim().to_owned(),
            pid,
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// auth-service (`http://127.0.0.1:PORT`); its `SNYK_APP_URL` must be the fake on 127.0.0.1.
    pub auth: LocalUrl,
    /// Page loads, one after the other.
    pub loads: usize,
    /// How long one request (a page load included) may take.
    pub timeout: Duration,
    /// The processes whose memory is read before and after the loads.
    pub watch: Vec<Watched>,
}

/// One load of the install page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageLoad {
    /// The HTTP status.
    pub status: u16,
    /// From the request to the last byte.
    pub seconds: f64,
    /// The page's size.
    pub bytes: u64,
    /// Org sections on the page.
    pub orgs: usize,
    /// Orgs whose projects were listed (their count shown).
    pub listed: usize,
    /// Orgs whose list was unavailable or failed.
    pub unavailable: usize,
}

/// A process's memory, in KiB, from `/proc/<pid>/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// The name given with `--watch`.
    pub process: String,
    /// `VmHWM` after the install, before the first load.
    pub before_loads_hwm_kib: u64,
    /// `VmHWM` after the last load: the peak.
    pub hwm_kib: u64,
}

impl Memory {
    /// What the loads added to the peak: the install page's own memory.
    pub fn growth_kib(&self) -> u64 {
        self.hwm_kib.saturating_sub(self.before_loads_hwm_kib)
    }
}

/// What a run did: the JSON line `loadgen install-page` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageReport {
    /// Always `install-page`.
    pub kind: String,
    /// The install made.
    pub install_id: String,
    /// Each load, in order.
    pub loads: Vec<PageLoad>,
    /// The watched processes.
    pub memory: Vec<Memory>,
}

impl PageReport {
    /// One line for people.
    pub fn human(&self) -> String {
        let mut line = format!("install-page: install {}", self.install_id);
        for load in &self.loads {
            line.push_str(&format!(
                " · {} in {:.2} s ({} orgs, {} listed, {} unavailable, {} KiB)",
                load.status,
                load.seconds,
                load.orgs,
                load.listed,
                load.unavailable,
                load.bytes / 1024
            ));
        }
        for m in &self.memory {
            line.push_str(&format!(
                " · {} VmHWM {} KiB ({} KiB before the loads)",
                m.process, m.hwm_kib, m.before_loads_hwm_kib
            ));
        }
        line
    }
}

/// `VmHWM` of `pid`, in KiB.
fn vm_hwm_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status_kib(&status, "VmHWM").with_context(|| format!("{path} has no VmHWM"))
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status`, in KiB.
pub fn status_kib(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What the page shows, counted by the markers of auth-service's template.
fn count_sections(html: &str) -> (usize, usize, usize) {
    (
        html.matches("<section class=\"org\"").count(),
        html.matches("<p class=\"count\">").count(),
        html.matches("<p class=\"unavailable\">").count(),
    )
}

/// The `Location` of a redirect with status `want`, resolved against `base`, checked to stay on
/// 127.0.0.1.
fn redirected(
    response: &reqwest::Response,
    want: StatusCode,
    what: &str,
) -> anyhow::Result<LocalUrl> {
    if response.status() != want {
        anyhow::bail!("{what} answered {}, not {want}", response.status());
    }
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .with_context(|| format!("{what}: the redirect has no Location"))?;
    let url = response
        .url()
        .join(location)
        .with_context(|| format!("{what}: the Location {location:?} is not a URL"))?;
    Ok(LocalUrl::from_url(url)?)
}

/// Runs `loadgen install-page`.
pub async fn run(plan: Plan) -> anyhow::Result<PageReport> {
    // A fresh connection per request, as the system tests' browser: a pooled one that the
    // server closes as idle at the moment it is reused would fail a request no browser would.
    let http = client_builder(plan.timeout)
        .cookie_store(true)
        .pool_max_idle_per_host(0)
        .build()
        .context("cannot build the HTTP client")?;
    let begin = http
        .get(plan.auth.url().join("/auth")?)
        .send()
        .await
        .context("cannot reach auth-service")?;
    let consent = redirected(&begin, StatusCode::FOUND, "GET /auth")?;
    let callback = approve_at(&http, &consent).await?;
    let callback = LocalUrl::parse(&callback)?;
    let completed = http
        .get(callback.url().clone())
        .send()
        .await
        .context("cannot reach auth-service's callback")?;
    let page = redirected(&completed, StatusCode::SEE_OTHER, "the callback")?;
    let install_id = page
        .url()
        .path()
        .strip_prefix("/installs/")
        .context("the callback does not lead to an install page")?
        .to_owned();

    let before: Vec<u64> = plan
        .watch
        .iter()
        .map(|w| vm_hwm_kib(w.pid))
        .collect::<anyhow::Result<_>>()?;
    let mut loads = Vec::with_capacity(plan.loads);
    for _ in 0..plan.loads {
        let sent = Instant::now();
        let response = http
            .get(page.url().clone())
            .send()
            .await
            .context("cannot load the install page")?;
        let status = response.status().as_u16();
        let html = response
            .text()
            .await
            .context("cannot read the install page")?;
        let (orgs, listed, unavailable) = count_sections(&html);
        loads.push(PageLoad {
            status,
            seconds: sent.elapsed().as_secs_f64(),
            bytes: html.len() as u64,
            orgs,
            listed,
            unavailable,
        });
    }
    let memory = plan
        .watch
        .iter()
        .zip(before)
        .map(|(w, before_loads_hwm_kib)| {
            Ok(Memory {
                process: w.name.clone(),
                before_loads_hwm_kib,
                hwm_kib: vm_hwm_kib(w.pid)?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(PageReport {
        kind: "install-page".into(),
        install_id,
        loads,
        memory,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn memory_lines_are_read_in_kib() {
        let status = "Name:\tauth-service\nVmPeak:\t  900 kB\nVmHWM:\t   20480 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(20_480));
        assert_eq!(status_kib(status, "VmRSS"), Some(1));
        assert_eq!(status_kib(status, "VmSwap"), None);
        assert!(vm_hwm_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn watched_processes_are_name_equals_pid() {
        assert_eq!(
            Watched::parse("auth-service=42").unwrap(),
            Watched {
                name: "auth-service".into(),
                pid: 42
            }
        );
        assert!(Watched::parse("auth-service").is_err());
        assert!(Watched::parse("auth-service=x").is_err());
    }

    #[test]
    fn the_page_is_counted_by_org_section() {
        let html = "<section class=\"org\" id=\"org-a\">\n<h2>A</h2>\n<p class=\"count\">500 projects</p>\
                    <section class=\"org\" id=\"org-b\">\n<h2>B</h2>\n<p class=\"unavailable\">The project list is unavailable</p>";
        assert_eq!(count_sections(html), (2, 1, 1));
    }
}
