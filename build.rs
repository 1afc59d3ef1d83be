//! Compiles the public API in `proto/` with protox (a pure-Rust protobuf compiler, so no system
//! `protoc` is needed) and writes both the tonic code and the encoded descriptor set that server
//! reflection serves.

use std::{env, path::PathBuf};

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/adminportal/v1/organization.proto",
        "proto/adminportal/v1/portal.proto",
        "proto/adminportal/v1/access.proto",
        "proto/adminportal/v1/setup.proto",
        "proto/adminportal/v1/invitation.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("adminportal_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        // A portal link is a bearer credential: its Debug is written by hand to redact it.
        .skip_debug(["adminportal.v1.PortalLink"])
        .compile_fds(descriptors)?;
    Ok(())
}
