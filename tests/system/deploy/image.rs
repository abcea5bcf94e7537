//! The image: the Dockerfile builds every workspace binary locked, with cached dependencies, and
//! ships them in a slim non-root image, each with its `healthcheck` subcommand.

use super::*;

#[test]
fn the_image_builds_and_ships_every_workspace_binary() {
    let workspace: BTreeSet<String> = workspace_binaries()
        .into_keys()
        .filter(|b| !NOT_IN_IMAGE.contains(&b.as_str()))
        .collect();
    for expected in [
        "auth-service",
        "token-service",
        "projects-service",
        "fake-snyk",
    ] {
        assert!(
            workspace.contains(expected),
            "cargo metadata lists no binary {expected}: {workspace:?}"
        );
    }
    let (built, copied) = dockerfile_binaries();
    assert_eq!(
        built, workspace,
        "the Dockerfile's `cargo build --bin …` list must name exactly the workspace's binaries"
    );
    assert_eq!(
        copied, workspace,
        "the Dockerfile must copy every built binary out of target/release/"
    );
    // The `prebuilt` target (engines without BuildKit) ships the same binaries.
    let prebuilt: BTreeSet<String> = stage("prebuilt")
        .iter()
        .filter(|i| i.starts_with("COPY "))
        .flat_map(|i| i.split_whitespace())
        .filter_map(|w| w.strip_prefix("bin/"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        prebuilt, workspace,
        "the prebuilt target must copy every binary from bin/"
    );
}

#[test]
fn the_dockerfile_builds_locked_with_cached_dependencies_and_ships_a_slim_non_root_image() {
    let instructions = dockerfile_instructions();
    let build = instructions
        .iter()
        .find(|i| i.contains("cargo build"))
        .expect("a cargo build");
    for needed in [
        "--release",
        "--locked",
        "--mount=type=cache,target=/usr/local/cargo/registry",
        "--mount=type=cache,target=/usr/local/cargo/git",
        "--mount=type=cache,target=/app/target",
    ] {
        assert!(build.contains(needed), "`{needed}` missing from: {build}");
    }

    // The last stage is what ships by default; it and `prebuilt` (for engines without
    // BuildKit) differ only in where the binaries come from: both are `base` plus the binaries,
    // as uid 10001. `base` must come before `builder`: the legacy builder runs every stage before
    // its target.
    let stages = dockerfile_stages();
    let names: Vec<&str> = stages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["base", "prebuilt", "builder", "runtime"], "stages");
    for name in ["runtime", "prebuilt"] {
        let body = stage(name);
        assert_eq!(body[0], format!("FROM base AS {name}"));
        assert_eq!(
            body.last().map(String::as_str),
            Some("USER 10001:10001"),
            "{name}: {body:#?}"
        );
        assert!(
            body[1..body.len() - 1]
                .iter()
                .all(|i| i.starts_with("COPY ")),
            "{name} only adds the binaries to base: {body:#?}"
        );
    }
    let base = &stage("base");
    assert!(
        base[0].starts_with("FROM debian:bookworm-slim"),
        "{}",
        base[0]
    );
    let installed: Vec<&str> = base
        .iter()
        .filter(|i| i.starts_with("RUN "))
        .flat_map(|i| i.split("&&"))
        .filter_map(|cmd| cmd.trim().strip_prefix("apt-get install"))
        .flat_map(str::split_whitespace)
        .filter(|w| !w.starts_with('-'))
        .collect();
    assert_eq!(installed, ["ca-certificates"], "shipped packages");
    for instruction in base {
        for tool in ["curl", "wget"] {
            assert!(
                !instruction.split_whitespace().any(|w| w.contains(tool)),
                "the runtime image must not get {tool}: {instruction}"
            );
        }
    }
    assert!(
        !instructions.iter().any(|i| i.contains("protoc")),
        "the build must not need protoc (the proto crate uses protox)"
    );
}

#[test]
fn every_binary_in_the_image_has_a_healthcheck_subcommand() {
    let (in_image, _) = dockerfile_binaries();
    let sources = workspace_binaries();
    for binary in in_image {
        let main = sources
            .get(&binary)
            .unwrap_or_else(|| panic!("no source for {binary}"));
        let text = std::fs::read_to_string(main).expect("main.rs");
        assert!(
            text.contains("Some(\"healthcheck\")") && text.contains("healthcheck::"),
            "{}: `{binary} healthcheck` (service_runtime::healthcheck) is what compose runs; \
             the binary must handle it before it loads its settings",
            main.display()
        );
    }
}
