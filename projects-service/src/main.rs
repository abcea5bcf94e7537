//! The `projects-service` binary: validates its settings, then stops, because the service is not
//! built yet (issue #5). It must not look like it serves anything.

fn main() -> std::process::ExitCode {
    match projects_service::config::Settings::from_env() {
        Ok(_) => eprintln!("projects-service: settings are valid, but the service is not built yet (issue #5)"),
        Err(e) => eprintln!("projects-service: invalid configuration: {e:#}"),
    }
    std::process::ExitCode::FAILURE
}
