//! The `loadgen` binary: load runs print one JSON line on stdout (for scripts) and one line for
//! people on stderr. Targets are 127.0.0.1 only; keys may come from the environment
//! (`LOADGEN_KEY`, `LOADGEN_BEARER`) so that they stay out of the process list.
//!
//! Reading order: `Command` (every subcommand with its flags; `loadgen help` prints the same) →
//! `try_main` (checks the arguments with `loadgen::args`, then hands each subcommand to its
//! module of the library: `echo-server` to `echo`, `install` to `install`, `get-token` to
//! `get_token`, `lean-get-token` to `lean`, `storm` to `storm`, `http` and `page` to `http`,
//! `report` to `report`; `listings` to `listings`, `install-page` to `page`, `budget-report` to
//! `report::budget`; `fake-stats`, `fake-fault`, `fake-orgs` and `free-ports` are small helpers for
//! `scripts/bench` written here) → `shutdown_signal` (how a long run is stopped). The library's
//! own reading order is in `lib.rs`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use loadgen::args::{
    Budget, LocalUrl, check_concurrency, check_count, parse_local_addr, parse_targets,
};
use loadgen::client::{Bearer, connect};
use loadgen::echo::EchoServer;
use loadgen::http::{BearerHeader, GetPlan, PagePlan};
use loadgen::latency::format_rate;
use loadgen::{get_token, http, install, lean, listings, page, report, storm};
use snykapps_ids::OrgId;
use snykapps_proto::token_v1 as pb;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for token-service and projects-service (127.0.0.1 only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a bare TokenService (constant GetAccessToken answer); prints the bound address first.
    EchoServer {
        /// Listen address, 127.0.0.1:PORT (0 = any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: String,
        /// Set TCP_NODELAY on accepted connections (token-service does not).
        #[arg(long)]
        nodelay: bool,
    },
    /// Install through the fake's consent page and CompleteInstall; prints "INSTALL_ID FIRST_ORG_ID",
    /// or with --count one install id per line (an --installs-file for get-token).
    Install {
        /// The fake Snyk.
        #[arg(long, default_value = "http://127.0.0.1:8090")]
        fake: String,
        /// token-service.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        token_service: String,
        /// token-service caller key.
        #[arg(long, env = "LOADGEN_KEY", hide_env_values = true)]
        key: String,
        /// Redirect URI registered at the fake (never contacted).
        #[arg(long, default_value = "http://localhost:8080/callback")]
        redirect_uri: String,
        /// Client id registered at the fake.
        #[arg(long, default_value = "demo-client-id")]
        client_id: String,
        /// Make this many installs, printing one install id per line as each completes.
        #[arg(long)]
        count: Option<usize>,
        /// Installs in flight at once (with --count).
        #[arg(long, default_value_t = 16, requires = "count")]
        concurrency: usize,
    },
    /// Closed-loop GetAccessToken from N streams over one or more targets.
    GetToken {
        /// Comma-separated http://127.0.0.1:PORT targets; streams round-robin over them.
        #[arg(long)]
        target: String,
        /// token-service caller key.
        #[arg(long, env = "LOADGEN_KEY", hide_env_values = true)]
        key: String,
        /// Install id to ask for.
        #[arg(
            long,
            required_unless_present = "installs_file",
            conflicts_with = "installs_file"
        )]
        install: Option<String>,
        /// A file of install ids (the first word of each line); request n asks for install
        /// n mod count, so --requests COUNT asks for each once.
        #[arg(long)]
        installs_file: Option<PathBuf>,
        /// Concurrent streams.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// HTTP/2 connections per target.
        #[arg(long, default_value_t = 2)]
        connections: usize,
        /// Request bound of the measured run.
        #[arg(long)]
        requests: u64,
        /// Duration bound of the measured run (and of the warm-up).
        #[arg(long)]
        duration_secs: f64,
        /// Unmeasured requests first.
        #[arg(long, default_value_t = 0)]
        warmup: u64,
        /// min_validity_seconds of each request.
        #[arg(long, default_value_t = 0)]
        min_validity_seconds: u32,
    },
    /// The yardstick for get-token: N tasks loop GetAccessToken over C shared channels, counting
    /// answers and nothing else (no latency); prints throughput and its own CPU time.
    LeanGetToken {
        /// Comma-separated http://127.0.0.1:PORT targets; channels alternate over them.
        #[arg(long)]
        target: String,
        /// token-service caller key (the echo server ignores it).
        #[arg(long, env = "LOADGEN_KEY", hide_env_values = true)]
        key: String,
        /// Install id to ask for.
        #[arg(long, default_value = "00000000-0000-4000-8000-000000000000")]
        install: String,
        /// Concurrent tasks.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// HTTP/2 connections per target.
        #[arg(long, default_value_t = 2)]
        connections: usize,
        /// Request bound of the measured run, split evenly over the tasks.
        #[arg(long, default_value_t = u64::MAX)]
        requests: u64,
        /// Duration of the measured run.
        #[arg(long)]
        duration_secs: f64,
        /// Seconds of the same loop, unmeasured, first (0 for none).
        #[arg(long, default_value_t = 1.0)]
        warmup_secs: f64,
    },
    /// N callers released together on one install over the targets.
    Storm {
        /// Comma-separated http://127.0.0.1:PORT targets.
        #[arg(long)]
        target: String,
        /// token-service caller key.
        #[arg(long, env = "LOADGEN_KEY", hide_env_values = true)]
        key: String,
        /// Install id.
        #[arg(long)]
        install: String,
        /// Callers (the request bound).
        #[arg(long, default_value_t = 1000)]
        callers: usize,
        /// How long a caller waits (the duration bound).
        #[arg(long, default_value_t = 30.0)]
        duration_secs: f64,
    },
    /// Timed GETs of one URL with a bearer key (e.g. projects-service's listing).
    Http {
        /// An http://127.0.0.1 URL.
        #[arg(long)]
        url: String,
        /// Sent as `authorization: Bearer …`.
        #[arg(long, env = "LOADGEN_BEARER", hide_env_values = true)]
        bearer: String,
        #[arg(long)]
        requests: u64,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[arg(long, default_value_t = 60.0)]
        duration_secs: f64,
        /// Fail any answer whose JSON `count` differs.
        #[arg(long)]
        expect_count: Option<u64>,
    },
    /// Whole project listings paged straight from the fake, with a token from GetAccessToken.
    Page {
        /// The fake Snyk.
        #[arg(long)]
        fake: String,
        /// The org to list.
        #[arg(long)]
        org: String,
        /// token-service, to get the access token from (once, before timing).
        #[arg(long)]
        token_service: String,
        /// token-service caller key.
        #[arg(long, env = "LOADGEN_KEY", hide_env_values = true)]
        key: String,
        /// Install id.
        #[arg(long)]
        install: String,
        #[arg(long, default_value = "2024-05-31")]
        version: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Listings (the request bound).
        #[arg(long)]
        requests: u64,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[arg(long, default_value_t = 60.0)]
        duration_secs: f64,
        /// Fail any listing with another number of projects.
        #[arg(long)]
        expect_count: Option<u64>,
    },
    /// N whole listings of one org released at once, round-robin over projects-service replicas
    /// (`GET /v1/orgs/{org}/projects`), while the fake's /_fake/stats is sampled.
    Listings {
        /// Comma-separated http://127.0.0.1:PORT projects-service replicas.
        #[arg(long)]
        target: String,
        /// projects-service caller key (a caller of PROJECTS_SERVICE_ORG_ROUTE_CALLERS).
        #[arg(long, env = "LOADGEN_BEARER", hide_env_values = true)]
        bearer: String,
        /// The org to list.
        #[arg(long)]
        org: String,
        /// Listings released at once.
        #[arg(long, default_value_t = 30)]
        listings: usize,
        /// Fail any listing whose JSON `count` differs.
        #[arg(long)]
        expect_count: Option<u64>,
        /// The fake Snyk, whose /_fake/stats is sampled.
        #[arg(long)]
        fake: String,
        /// Sampling interval, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        sample_ms: u64,
        /// How long a listing may take (the duration bound).
        #[arg(long, default_value_t = 900.0)]
        duration_secs: f64,
        /// The services' request budget (requests a minute), to state the rate against.
        #[arg(long)]
        budget_per_minute: Option<u32>,
    },
    /// Install through auth-service as a browser does, then load the install page N times,
    /// reading the peak resident set of the processes named by --watch before and after.
    InstallPage {
        /// auth-service, http://127.0.0.1:PORT.
        #[arg(long)]
        auth: String,
        /// Page loads, one after the other.
        #[arg(long, default_value_t = 3)]
        loads: usize,
        /// How long one request may take.
        #[arg(long, default_value_t = 120.0)]
        duration_secs: f64,
        /// NAME=PID of a process whose VmHWM is read (repeatable).
        #[arg(long)]
        watch: Vec<String>,
    },
    /// Render the budget and install-page tables of a scripts/bench-budget results directory
    /// (the goals, then the details unless --goals-only); goals missed are named on stderr.
    BudgetReport {
        #[arg(long)]
        dir: PathBuf,
        /// Only the goals table (the fixed "before" table of docs/benchmarks.md).
        #[arg(long)]
        goals_only: bool,
    },
    /// Print the fake's /_fake/stats as one JSON line.
    FakeStats {
        #[arg(long, default_value = "http://127.0.0.1:8090")]
        fake: String,
    },
    /// POST a JSON fault to the fake's /_fake/faults, e.g. '{"token_latency":100}'.
    FakeFault {
        #[arg(long, default_value = "http://127.0.0.1:8090")]
        fake: String,
        /// The fault, as JSON.
        fault: String,
    },
    /// POST orgs to the fake's /_fake/orgs, e.g. '{"name":"Page Org","projects":500,"count":40}';
    /// prints its answer (the orgs added).
    FakeOrgs {
        #[arg(long, default_value = "http://127.0.0.1:8090")]
        fake: String,
        /// The orgs, as JSON.
        orgs: String,
    },
    /// Print N distinct free TCP ports on 127.0.0.1 (bound, read back and released).
    FreePorts {
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Render the Markdown tables of a scripts/bench results directory; exit 1 if a check failed.
    Report {
        #[arg(long)]
        dir: PathBuf,
        /// The latency injected at the fake's token endpoint during the storm.
        #[arg(long)]
        token_latency_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the Tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(try_main(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes one line on stdout, the channel scripts read.
fn emit(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

async fn try_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::EchoServer { addr, nodelay } => {
            let server = EchoServer::bind(parse_local_addr(&addr)?)
                .await?
                .nodelay(nodelay);
            emit(&server.local_addr().to_string())?;
            eprintln!("loadgen echo-server listening on {}", server.local_addr());
            server
                .run_until(service_runtime::shutdown_signal()?)
                .await?;
        }
        Command::Install {
            fake,
            token_service,
            key,
            redirect_uri,
            client_id,
            count,
            concurrency,
        } => {
            let plan = install::Plan {
                fake: LocalUrl::parse_target(&fake)?,
                token_service: LocalUrl::parse_target(&token_service)?,
                bearer: Bearer::new(&key)?,
                redirect_uri,
                client_id,
            };
            if let Some(count) = count {
                let count = check_count("--count", count)?;
                let concurrency = check_concurrency("--concurrency", concurrency)?;
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                let batch = install::install_many(plan, count, concurrency, |installed| {
                    writeln!(out, "{}", installed.install_id)?;
                    Ok(())
                })
                .await;
                out.flush()?;
                let batch = batch?;
                eprintln!(
                    "installed {} in {:.2} s ({} installs/s, {concurrency} at once)",
                    batch.installed,
                    batch.elapsed.as_secs_f64(),
                    format_rate(batch.rate())
                );
                return Ok(ExitCode::SUCCESS);
            }
            let installed = install::install(&plan).await?;
            let first = installed
                .orgs
                .first()
                .map(|(id, _)| id.as_str())
                .context("the install has no org")?;
            emit(&format!("{} {first}", installed.install_id))?;
            eprintln!("installed {}", installed.install_id);
            for (id, name) in &installed.orgs {
                eprintln!("  org {id} {name}");
            }
        }
        Command::GetToken {
            target,
            key,
            install,
            installs_file,
            concurrency,
            connections,
            requests,
            duration_secs,
            warmup,
            min_validity_seconds,
        } => {
            let plan = get_token::Plan {
                targets: parse_targets(&target)?,
                bearer: Bearer::new(&key)?,
                install_ids: match (install, installs_file) {
                    (Some(id), _) => vec![id],
                    (None, Some(file)) => get_token::read_installs_file(&file)?,
                    (None, None) => anyhow::bail!("--install or --installs-file is required"),
                },
                min_validity_seconds,
                concurrency: check_concurrency("--concurrency", concurrency)?,
                connections_per_target: check_concurrency("--connections", connections)?,
                budget: Budget::new(requests, duration_secs)?,
                warmup,
            };
            let report = get_token::run(plan).await?;
            emit(&serde_json::to_string(&report)?)?;
            eprintln!("{}", report.human());
        }
        Command::LeanGetToken {
            target,
            key,
            install,
            concurrency,
            connections,
            requests,
            duration_secs,
            warmup_secs,
        } => {
            let plan = lean::Plan {
                targets: parse_targets(&target)?,
                bearer: Bearer::new(&key)?,
                install_id: install,
                concurrency: check_concurrency("--concurrency", concurrency)?,
                connections_per_target: check_concurrency("--connections", connections)?,
                budget: Budget::new(requests, duration_secs)?,
                warmup: if warmup_secs == 0.0 {
                    Duration::ZERO
                } else {
                    Budget::new(1, warmup_secs)
                        .map_err(|_| anyhow::anyhow!("--warmup-secs must be 0 or a duration"))?
                        .duration
                },
            };
            let report = lean::run(plan).await?;
            emit(&serde_json::to_string(&report)?)?;
            eprintln!("{}", report.human());
        }
        Command::Storm {
            target,
            key,
            install,
            callers,
            duration_secs,
        } => {
            let budget = Budget::new(callers as u64, duration_secs)?;
            let plan = storm::Plan {
                targets: parse_targets(&target)?,
                bearer: Bearer::new(&key)?,
                install_id: install,
                callers: check_concurrency("--callers", callers)?,
                timeout: budget.duration,
            };
            let report = storm::run(plan).await?;
            emit(&serde_json::to_string(&report)?)?;
            eprintln!("{}", report.human());
        }
        Command::Http {
            url,
            bearer,
            requests,
            concurrency,
            duration_secs,
            expect_count,
        } => {
            let plan = GetPlan {
                url: LocalUrl::parse(&url)?,
                bearer: BearerHeader::new(&bearer)?,
                concurrency: check_concurrency("--concurrency", concurrency)?,
                budget: Budget::new(requests, duration_secs)?,
                expect_count,
            };
            let report = http::run_get(plan).await?;
            emit(&serde_json::to_string(&report)?)?;
            eprintln!("{}", report.human());
        }
        Command::Page {
            fake,
            org,
            token_service,
            key,
            install,
            version,
            limit,
            requests,
            concurrency,
            duration_secs,
            expect_count,
        } => {
            let fake = LocalUrl::parse_target(&fake)?;
            let budget = Budget::new(requests, duration_secs)?;
            let concurrency = check_concurrency("--concurrency", concurrency)?;
            let mut client = connect(
                &LocalUrl::parse_target(&token_service)?,
                &Bearer::new(&key)?,
            )
            .await?;
            let token = tokio::time::timeout(
                Duration::from_secs(30),
                client.get_access_token(pb::GetAccessTokenRequest {
                    target: Some(pb::get_access_token_request::Target::InstallId(install)),
                    min_validity_seconds: 0,
                }),
            )
            .await
            .context("GetAccessToken timed out")?
            .map_err(|s| anyhow::anyhow!("GetAccessToken failed: {:?}: {}", s.code(), s.message()))?
            .into_inner()
            .access_token;
            let plan = PagePlan {
                fake,
                org_id: org,
                bearer: BearerHeader::new(&token)?,
                version,
                limit,
                concurrency,
                budget,
                expect_count,
            };
            let report = http::run_pages(plan).await?;
            emit(&serde_json::to_string(&report)?)?;
            eprintln!("{}", report.human());
        }
        Command::Listings {
            target,
            bearer,
            org,
            listings,
            expect_count,
            fake,
            sample_ms,
            duration_secs,
            budget_per_minute,
        } => {
            let bound = Budget::new(listings as u64, duration_secs)?;
            let plan = listings::Plan {
                targets: parse_targets(&target)?,
                bearer: BearerHeader::new(&bearer)?,
                org_id: OrgId::parse(&org)
                    .map_err(|_| anyhow::anyhow!("--org {org:?} is not an org id (a UUID)"))?
                    .to_string(),
                listings: check_concurrency("--listings", listings)?,
                expect_count,
                fake: LocalUrl::parse_target(&fake)?,
                sample_every: Budget::new(1, sample_ms as f64 / 1000.0)
                    .map_err(|_| anyhow::anyhow!("--sample-ms must be 1 or more"))?
                    .duration,
                timeout: bound.duration,
                budget_per_minute,
            };
            let report = listings::run(plan).await?;
            emit(&serde_json::to_string(&report)?)?;
            eprintln!("{}", report.human());
        }
        Command::InstallPage {
            auth,
            loads,
            duration_secs,
            watch,
        } => {
            let plan = page::Plan {
                auth: LocalUrl::parse_target(&auth)?,
                loads: check_concurrency("--loads", loads)?,
                timeout: Budget::new(loads as u64, duration_secs)?.duration,
                watch: watch
                    .iter()
                    .map(|w| page::Watched::parse(w))
                    .collect::<anyhow::Result<_>>()?,
            };
            let report = page::run(plan).await?;
            emit(&serde_json::to_string(&report)?)?;
            eprintln!("{}", report.human());
        }
        Command::BudgetReport { dir, goals_only } => {
            let results = report::budget::BudgetResults::load(&dir)?;
            let rendered = report::budget::render_budget(&results);
            if goals_only {
                emit(rendered.goals.trim_end())?;
            } else {
                emit(&format!(
                    "{}\n{}",
                    rendered.goals,
                    rendered.details.trim_end()
                ))?;
            }
            for missed in &rendered.missed {
                eprintln!("loadgen budget-report: goal missed: {missed}");
            }
        }
        Command::FakeStats { fake } => {
            let stats = http::fake_stats(&LocalUrl::parse_target(&fake)?).await?;
            emit(&stats.to_string())?;
        }
        Command::FakeFault { fake, fault } => {
            let fault: serde_json::Value =
                serde_json::from_str(&fault).context("the fault is not JSON")?;
            http::fake_fault(&LocalUrl::parse_target(&fake)?, &fault).await?;
        }
        Command::FakeOrgs { fake, orgs } => {
            let orgs: serde_json::Value =
                serde_json::from_str(&orgs).context("the orgs are not JSON")?;
            emit(&http::fake_orgs(&LocalUrl::parse_target(&fake)?, &orgs).await?)?;
        }
        Command::FreePorts { count } => {
            let count = check_concurrency("--count", count)?;
            // All listeners stay open until every port is read, so the ports are distinct.
            let listeners = (0..count)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
                .collect::<Result<Vec<_>, _>>()
                .context("cannot bind 127.0.0.1:0")?;
            let ports = listeners
                .iter()
                .map(|l| l.local_addr().map(|a| a.port().to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            emit(&ports.join(" "))?;
        }
        Command::Report {
            dir,
            token_latency_ms,
        } => {
            let results = report::Results::load(&dir)?;
            let rendered = report::render(&results, token_latency_ms);
            emit(rendered.markdown.trim_end())?;
            for missed in &rendered.goals_missed {
                eprintln!("loadgen report: goal missed: {missed}");
            }
            if !rendered.failures.is_empty() {
                for failure in &rendered.failures {
                    eprintln!("loadgen report: FAILED: {failure}");
                }
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
