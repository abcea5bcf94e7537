//! The operator tools: `token-service installs list|show|delete` and `token-service events tail`.
//!
//! They are a gRPC client of a running token-service like any other caller, never a second way
//! into Redis: they present a key, TOKEN_SERVICE_CALLER_RPCS decides what they may do, and a
//! delete takes the install's refresh lease like every DeleteInstall. So they need none of the
//! service's secrets and start neither telemetry nor a Redis connection; `connect` says where
//! the URL and the key come from, `render` how answers are printed. Exit codes (`error`): 0 done,
//! 1 failed (stderr says what), 2 the command cannot run as given (bad arguments, no key, a
//! delete nobody confirmed).

mod connect;
mod error;
mod render;

use std::{
    io::{BufRead as _, IsTerminal as _, Write as _},
    process::ExitCode,
    time::SystemTime,
};

use service_runtime::config::Env;
use snykapps_ids::InstallId;
use snykapps_proto::token_v1 as pb;
use tonic::{Code, Status};

pub use connect::{CALL_TIMEOUT, ConnectArgs, DEFAULT_CALLER};
pub use error::OpsError;

use connect::{Client, Key, Target};
use render::State;

use crate::events::Start;

/// `token-service installs …`.
#[derive(Debug, clap::Args)]
#[command(arg_required_else_help = true)]
pub struct InstallsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: InstallsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum InstallsCommand {
    /// Every install (all pages of ListInstalls): id, status, orgs, created, access token expiry.
    List {
        /// Only installs with this status.
        #[arg(long, value_enum)]
        status: Option<StatusFilter>,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Installs asked for per ListInstalls call.
        #[arg(long, value_name = "N", default_value_t = 500,
              value_parser = clap::value_parser!(u32).range(1..=500))]
        page_size: u32,
    },
    /// One install (GetInstall).
    Show {
        /// The install id (a UUID).
        #[arg(value_name = "ID", value_parser = install_id)]
        id: InstallId,
        /// One JSON object instead of a block of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete an install (DeleteInstall): its refresh token is revoked at Snyk, then its record
    /// is removed. Asks first, on a terminal.
    Delete {
        /// The install id (a UUID).
        #[arg(value_name = "ID", value_parser = install_id)]
        id: InstallId,
        /// Do not ask (required when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// `--status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StatusFilter {
    Active,
    #[value(alias = "needs_reauth")]
    NeedsReauth,
}

impl StatusFilter {
    fn admits(self, install: &pb::Install) -> bool {
        match self {
            StatusFilter::Active => State::of(install) == State::Active,
            StatusFilter::NeedsReauth => State::of(install) == State::NeedsReauth,
        }
    }

    fn name(self) -> &'static str {
        match self {
            StatusFilter::Active => "active",
            StatusFilter::NeedsReauth => "needs-reauth",
        }
    }
}

/// `token-service events …`.
#[derive(Debug, clap::Args)]
#[command(arg_required_else_help = true)]
pub struct EventsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum EventsCommand {
    /// Print the installs' lifecycle events as they happen (WatchInstallEvents), oldest first.
    Tail {
        /// Start after this event id (`0`: every retained event); without it, only events
        /// appended from now on.
        #[arg(long, value_name = "ID", value_parser = event_start)]
        from: Option<Start>,
        /// Stop after this many events.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `--from`: `0` or an event id, parsed by the rule the server applies to `after_event_id`
/// ([`Start::parse`]); "" (from now on) is what leaving `--from` out means.
fn event_start(raw: &str) -> Result<Start, String> {
    match Start::parse(raw) {
        Ok(Start::Now) | Err(_) => Err(
            "an event id is `0` (every retained event) or the event_id of an event, like 1764585322000-0"
                .into(),
        ),
        Ok(start) => Ok(start),
    }
}

fn install_id(raw: &str) -> Result<InstallId, String> {
    InstallId::parse(raw)
        .map_err(|_| "an install id is a UUID like 123e4567-e89b-12d3-a456-426614174000".into())
}

/// Runs `token-service installs …`; prints any error on stderr and returns the exit code.
pub async fn installs(args: InstallsArgs, env: &Env<'_>) -> ExitCode {
    let what = match &args.command {
        InstallsCommand::List { .. } => "installs list",
        InstallsCommand::Show { .. } => "installs show",
        InstallsCommand::Delete { .. } => "installs delete",
    };
    finish(what, run_installs(args, env).await)
}

/// Runs `token-service events …`; prints any error on stderr and returns the exit code.
pub async fn events(args: EventsArgs, env: &Env<'_>) -> ExitCode {
    finish("events tail", run_events(args, env).await)
}

fn finish(what: &str, result: Result<(), OpsError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !matches!(e, OpsError::OutputClosed) {
                eprintln!("token-service {what}: {e}");
            }
            e.exit_code()
        }
    }
}

async fn run_installs(args: InstallsArgs, env: &Env<'_>) -> Result<(), OpsError> {
    // Refused before anything is read or sent: nobody can confirm, and nobody said --yes.
    if let InstallsCommand::Delete { id, yes: false } = &args.command
        && !std::io::stdin().is_terminal()
    {
        return Err(OpsError::Usage(format!(
            "refusing to delete install {id} without confirmation: stdin is not a terminal; pass --yes to delete it"
        )));
    }
    let ops = Ops::connect(&args.connect, env)?;
    match args.command {
        InstallsCommand::List {
            status,
            json,
            page_size,
        } => ops.list(status, json, page_size).await,
        InstallsCommand::Show { id, json } => ops.show(id, json).await,
        InstallsCommand::Delete { id, yes } => ops.delete(id, yes).await,
    }
}

async fn run_events(args: EventsArgs, env: &Env<'_>) -> Result<(), OpsError> {
    let ops = Ops::connect(&args.connect, env)?;
    match args.command {
        EventsCommand::Tail { from, count, json } => ops.tail(from, count, json).await,
    }
}

/// A connected operator: the client, and what errors say about where it went.
#[derive(Debug)]
struct Ops {
    client: Client,
    target: Target,
    key: Key,
}

impl Ops {
    fn connect(args: &ConnectArgs, env: &Env<'_>) -> Result<Ops, OpsError> {
        let target = Target::resolve(args, env)?;
        let key = Key::resolve(args, env)?;
        let client = connect::client(&target, &key)?;
        Ok(Ops {
            client,
            target,
            key,
        })
    }

    /// `msg` with the per-call deadline.
    fn request<T>(msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(CALL_TIMEOUT);
        req
    }

    /// Every install, page by page.
    async fn all_installs(&self, page_size: u32) -> Result<Vec<pb::Install>, OpsError> {
        let mut installs = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .client
                .clone()
                .list_installs(Self::request(pb::ListInstallsRequest {
                    page_size,
                    page_token: page_token.clone(),
                }))
                .await
                .map_err(|s| self.failure("ListInstalls", &s))?
                .into_inner();
            installs.extend(page.installs);
            if page.next_page_token.is_empty() {
                return Ok(installs);
            }
            page_token = page.next_page_token;
        }
    }

    async fn get(&self, id: InstallId) -> Result<pb::Install, OpsError> {
        self.client
            .clone()
            .get_install(Self::request(pb::GetInstallRequest {
                install_id: id.to_string(),
            }))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.failure("GetInstall", &s))
    }

    async fn list(
        &self,
        status: Option<StatusFilter>,
        json: bool,
        page_size: u32,
    ) -> Result<(), OpsError> {
        let mut installs = self.all_installs(page_size).await?;
        if let Some(filter) = status {
            installs.retain(|i| filter.admits(i));
        }
        let text = if json {
            let views: Vec<_> = installs.iter().map(render::InstallView::from).collect();
            to_json(&views)? + "\n"
        } else if installs.is_empty() {
            match status {
                Some(filter) => format!("No installs with status {}.\n", filter.name()),
                None => "No installs.\n".into(),
            }
        } else {
            render::table(&installs, SystemTime::now())
        };
        write_stdout(&text)
    }

    async fn show(&self, id: InstallId, json: bool) -> Result<(), OpsError> {
        let install = self.get(id).await?;
        let text = if json {
            to_json(&render::InstallView::from(&install))? + "\n"
        } else {
            render::block(&install, SystemTime::now())
        };
        write_stdout(&text)
    }

    async fn delete(&self, id: InstallId, yes: bool) -> Result<(), OpsError> {
        let install = self.get(id).await.map_err(|e| match e {
            OpsError::Failed(m) => OpsError::Failed(format!("{m}; nothing was deleted")),
            other => other,
        })?;
        let orgs = render::orgs_with_ids(&install);
        if !yes {
            let question = format!(
                "Delete install {id} (orgs {orgs})? This revokes its refresh token at Snyk. [y/N] "
            );
            if !confirm(question).await? {
                return Err(OpsError::Failed(format!(
                    "not confirmed: install {id} was not deleted"
                )));
            }
        }
        self.client
            .clone()
            .delete_install(Self::request(pb::DeleteInstallRequest {
                install_id: id.to_string(),
            }))
            .await
            .map_err(|s| self.failure("DeleteInstall", &s))?;
        write_stdout(&format!(
            "Deleted install {id} (orgs {orgs}); its refresh token was revoked at Snyk.\n"
        ))
    }

    async fn tail(
        &self,
        from: Option<Start>,
        count: Option<u64>,
        json: bool,
    ) -> Result<(), OpsError> {
        let after_event_id = from.unwrap_or(Start::Now).to_request();
        let mut stream = self
            .client
            .clone()
            // No deadline on the stream: it follows live events for as long as it runs. Only
            // its start is bounded (the channel's timeout covers the answer's headers).
            .watch_install_events(tonic::Request::new(pb::WatchInstallEventsRequest {
                after_event_id: after_event_id.clone(),
            }))
            .await
            .map_err(|s| self.failure("WatchInstallEvents", &s))?
            .into_inner();
        let mut seen = 0u64;
        let mut last = after_event_id;
        while count.is_none_or(|n| seen < n) {
            let resume = if last.is_empty() {
                String::new()
            } else {
                format!("; resume with --from {}", render::for_terminal(&last))
            };
            let event = match stream.message().await {
                Ok(Some(event)) => event,
                Ok(None) => {
                    return Err(OpsError::Failed(format!(
                        "token-service at {} ended the event stream{resume}",
                        self.target.url
                    )));
                }
                Err(s) => {
                    let m = self.explain("WatchInstallEvents", &s);
                    return Err(OpsError::Failed(format!("{m}{resume}")));
                }
            };
            let line = if json {
                to_json(&render::EventView::from(&event))?
            } else {
                render::event_line(&event)
            };
            write_stdout(&(line + "\n"))?;
            seen += 1;
            last = event.event_id;
        }
        Ok(())
    }

    fn failure(&self, rpc: &str, status: &Status) -> OpsError {
        OpsError::Failed(self.explain(rpc, status))
    }

    /// What an RPC's failure means, said so that the reader knows what to do. The key is named
    /// by where it came from. token-service's messages never carry a key; a message that does
    /// anyway (`--url` at something else that echoes the request's headers) has it hidden.
    fn explain(&self, rpc: &str, status: &Status) -> String {
        let url = &self.target.url;
        let hidden = self.key.hidden_in(status.message());
        // Whatever answers at --url chose this message: no control character reaches stderr.
        let msg = render::for_terminal(&hidden);
        let detail = match status.code() {
            Code::Unauthenticated => format!(
                "token-service refused {} ({msg}): use a key listed in its TOKEN_SERVICE_CLIENT_KEYS",
                self.key.source
            ),
            Code::PermissionDenied => format!(
                "{msg}: add {rpc} to this caller's entry in TOKEN_SERVICE_CALLER_RPCS of token-service"
            ),
            Code::Unimplemented => format!(
                "token-service does not offer {rpc} ({msg}): it is older than this tool; upgrade it"
            ),
            Code::OutOfRange => format!(
                "{msg}: the events after that id were trimmed (TOKEN_EVENTS_MAXLEN); start again with --from 0 (every retained event)"
            ),
            Code::FailedPrecondition | Code::NotFound | Code::InvalidArgument => msg.into_owned(),
            Code::Unavailable if service_runtime::grpc::never_sent(status) => format!(
                "cannot reach token-service ({msg}): is it running there? (--url, TOKEN_SERVICE_URL or TOKEN_SERVICE_ADDR)"
            ),
            Code::DeadlineExceeded => format!(
                "no answer within {} s ({msg}); try again",
                CALL_TIMEOUT.as_secs()
            ),
            code => format!("{code:?}: {msg}"),
        };
        format!("{rpc} at {url} failed: {detail}")
    }
}

/// Asks `question` on stderr and reads the answer from stdin (a terminal): yes or no.
async fn confirm(question: String) -> Result<bool, OpsError> {
    let answer = tokio::task::spawn_blocking(move || {
        let mut err = std::io::stderr().lock();
        write!(err, "{question}")?;
        err.flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok::<_, std::io::Error>(line)
    })
    .await
    .map_err(|e| OpsError::Failed(format!("cannot ask for confirmation: {e}")))?
    .map_err(|e| OpsError::Failed(format!("cannot read the answer: {e}")))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn to_json(value: &impl serde::Serialize) -> Result<String, OpsError> {
    serde_json::to_string(value).map_err(|e| OpsError::Failed(format!("cannot write JSON: {e}")))
}

/// Writes and flushes (a tail's reader sees each event as it arrives).
fn write_stdout(text: &str) -> Result<(), OpsError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(OpsError::OutputClosed),
        Err(e) => Err(OpsError::Failed(format!("cannot write to stdout: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser as _;

    /// The command line as main.rs nests it.
    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        Installs(InstallsArgs),
        Events(EventsArgs),
    }

    fn parse(args: &[&str]) -> Result<Top, clap::Error> {
        Cli::try_parse_from(std::iter::once("token-service").chain(args.iter().copied()))
            .map(|c| c.command)
    }

    #[test]
    fn the_connection_options_go_before_or_after_the_command() {
        let Top::Installs(a) = parse(&[
            "installs",
            "--url",
            "http://x:1",
            "list",
            "--status",
            "needs-reauth",
            "--caller",
            "tests",
        ])
        .unwrap() else {
            panic!("installs")
        };
        assert_eq!(a.connect.url.as_deref(), Some("http://x:1"));
        assert_eq!(a.connect.caller.as_deref(), Some("tests"));
        assert!(matches!(
            a.command,
            InstallsCommand::List {
                status: Some(StatusFilter::NeedsReauth),
                json: false,
                page_size: 500,
            }
        ));
    }

    #[test]
    fn malformed_ids_and_counts_are_usage_errors() {
        for args in [
            &["installs", "show", "not-a-uuid"][..],
            &[
                "installs",
                "delete",
                "123E4567E89B12D3A456426614174000",
                "--yes",
            ],
            &["events", "tail", "--from", "yesterday"],
            &["events", "tail", "--from", "1-2-3"],
            &["events", "tail", "--count", "0"],
            &["installs", "list", "--status", "broken"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
        let err = parse(&["installs", "show", "nope"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("UUID"), "{err}");
        for ok in ["0", "1764585322000-7"] {
            assert_eq!(event_start(ok).map(Start::to_request).as_deref(), Ok(ok));
        }
        // What the server refuses, the CLI refuses as a usage error (exit 2), not after a call.
        for bad in ["", "1764585322000", "-1", "1-", "x-1", "1-2-3"] {
            assert!(Start::parse(bad).is_err() || bad.is_empty(), "{bad:?}");
            let err = parse(&["events", "tail", "--from", bad]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
    }

    #[tokio::test]
    async fn each_refusal_says_what_to_do_and_never_shows_the_key() {
        let key = "api-key-0123456789abcdef-SECRET";
        let pairs = [
            ("TOKEN_SERVICE_URL", "http://127.0.0.1:1"),
            ("TOKEN_SERVICE_API_KEY", key),
        ];
        let env = Env::new(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        });
        let ops = Ops::connect(&ConnectArgs::default(), &env).unwrap();
        assert!(!format!("{ops:?}").contains(key), "{ops:?}");
        let rpc = "WatchInstallEvents";
        for (status, expected) in [
            (
                Status::unimplemented("no such method"),
                "WatchInstallEvents at http://127.0.0.1:1/ failed: token-service does not offer WatchInstallEvents (no such method): it is older than this tool; upgrade it",
            ),
            (
                Status::permission_denied(
                    "caller ops may not call WatchInstallEvents (TOKEN_SERVICE_CALLER_RPCS)",
                ),
                "failed: caller ops may not call WatchInstallEvents (TOKEN_SERVICE_CALLER_RPCS): add WatchInstallEvents to this caller's entry in TOKEN_SERVICE_CALLER_RPCS of token-service",
            ),
            (
                Status::out_of_range("events after 5-0 were trimmed"),
                "failed: events after 5-0 were trimmed: the events after that id were trimmed (TOKEN_EVENTS_MAXLEN); start again with --from 0 (every retained event)",
            ),
            (
                Status::failed_precondition("events are off"),
                "failed: events are off",
            ),
            (
                Status::unauthenticated("unknown key"),
                "failed: token-service refused the key in TOKEN_SERVICE_API_KEY (unknown key): use a key listed in its TOKEN_SERVICE_CLIENT_KEYS",
            ),
            (
                Status::not_found("install \u{1b}[2J\u{1b}]0;owned\u{7} not found\nforged"),
                "failed: install \\u{1b}[2J\\u{1b}]0;owned\\u{7} not found\\nforged",
            ),
            (
                Status::unknown(format!("proxy: bad header `authorization: Bearer {key}`")),
                "failed: Unknown: proxy: bad header `authorization: Bearer (the key in TOKEN_SERVICE_API_KEY)`",
            ),
        ] {
            let message = ops.explain(rpc, &status);
            assert!(message.ends_with(expected), "{message}");
            assert!(!message.contains(key), "{message}");
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            OpsError::Usage(String::new()).exit_code(),
            ExitCode::from(2)
        );
        assert_eq!(
            OpsError::Failed(String::new()).exit_code(),
            ExitCode::FAILURE
        );
    }
}
