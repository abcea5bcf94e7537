//! How an operator command fails, and the exit code that says so.

use std::process::ExitCode;

/// Why a command did not complete. Never holds a key: messages are built from where a key came
/// from, and from token-service's statuses (which never repeat one).
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The command cannot run as given (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// It ran and failed (exit code 1).
    #[error("{0}")]
    Failed(String),
    /// Whoever read our output went away (`| head`): stop quietly, as a pipe's reader expects.
    #[error("stdout was closed")]
    OutputClosed,
}

impl OpsError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            OpsError::Usage(_) => ExitCode::from(2),
            OpsError::Failed(_) => ExitCode::FAILURE,
            OpsError::OutputClosed => ExitCode::SUCCESS,
        }
    }
}
