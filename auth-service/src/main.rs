//! The `auth-service` binary: validates its settings, then stops, because the service is not built
//! yet (issue #4). It must not look like it serves anything.

fn main() -> std::process::ExitCode {
    match auth_service::config::Settings::from_env() {
        Ok(_) => eprintln!("auth-service: settings are valid, but the service is not built yet (issue #4)"),
        Err(e) => eprintln!("auth-service: invalid configuration: {e:#}"),
    }
    std::process::ExitCode::FAILURE
}
