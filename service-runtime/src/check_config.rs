//! The `check-config` subcommand every service binary has: read the settings exactly as start-up
//! does (environment and files, no network), print them with secrets redacted, and answer with
//! the exit code a deployment tool can act on. Manifests are checked with it (the Kubernetes
//! system test runs it per Deployment), and anyone writing their own can run it the same way.

use std::{fmt::Debug, io::Write as _, process::ExitCode};

/// Exit code when the settings would stop start-up: the same as a usage error, so "the
/// configuration is wrong" is told apart from "the check itself crashed" (1).
pub const INVALID: u8 = 2;

/// Prints the effective settings (their `Debug`, which redacts every secret) on stdout and exits
/// 0, or prints the error start-up would give on stderr and exits [`INVALID`].
pub fn report<S: Debug>(binary: &str, settings: anyhow::Result<S>) -> ExitCode {
    match settings {
        Ok(settings) => {
            // The settings are the answer (stdout, for a script); a failed write is the check's
            // own failure (1), not a configuration error (2).
            let printed = writeln!(std::io::stdout().lock(), "{settings:#?}");
            eprintln!("{binary}: configuration ok");
            if printed.is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Word for word what `main` prints when start-up fails on the same settings.
            eprintln!("{binary}: {e:#}");
            ExitCode::from(INVALID)
        }
    }
}
