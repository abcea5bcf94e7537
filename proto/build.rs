//! Compiles the contract with `protox` (pure Rust), so no system `protoc` is needed, and writes the
//! file descriptor set that token-service serves through gRPC reflection.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "snykapps/token/v1/token.proto";
    println!("cargo:rerun-if-changed={proto}");

    let fds = protox::compile([proto], ["."])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("snykapps_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
