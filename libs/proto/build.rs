//! Generates the gRPC code and the reflection descriptor set from `proto/`.
//!
//! protoc comes from `protoc-bin-vendored`, so a fresh machine needs nothing but
//! the Rust toolchain.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "billing/common/v1/amount.proto",
    "billing/ledger/v1/ledger.proto",
    "billing/meter/v1/meter.proto",
    "billing/invoicing/v1/invoicing.proto",
    "billing/invoicing/v1/test_clock.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    let files: Vec<PathBuf> = PROTOS.iter().map(|p| proto_root.join(p)).collect();
    // BTreeMap keeps map encoding deterministic, so request fingerprints
    // (idempotency) do not depend on hash order.
    tonic_prost_build::configure()
        .btree_map(".")
        // Undecodable requests are the caller's INVALID_ARGUMENT (src/codec.rs).
        .codec_path("crate::codec::StrictCodec")
        .file_descriptor_set_path(out_dir.join("billing_descriptor.bin"))
        .compile_with_config(config, &files, std::slice::from_ref(&proto_root))?;

    println!("cargo:rerun-if-changed={}", proto_root.display());
    Ok(())
}
