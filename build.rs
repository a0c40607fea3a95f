//! Compiles our own `proto/` files with protox (pure Rust, no system `protoc`) and generates
//! prost messages plus tonic clients into `OUT_DIR`. The encoded descriptor set is written there
//! too, so the wire log can decode exactly the bytes that crossed the wire.

use std::{env, error::Error, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "etcd/api/mvccpb/kv.proto",
    "etcd/api/authpb/auth.proto",
    "etcd/api/etcdserverpb/rpc.proto",
    "etcd/server/v3lock/v3lockpb/v3lock.proto",
    "etcd/server/v3election/v3electionpb/v3election.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files: Vec<String> = PROTOS.iter().map(|p| format!("proto/{p}")).collect();
    let descriptors = protox::compile(&files, ["proto"])?;

    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("etcd_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;

    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        // No `connect` constructors on tonic's transport: the clients run on our own channel.
        .build_transport(false)
        // Our codec wraps prost's: it hands the received message bytes to the wire log (only
        // while a sink is listening) before prost decodes them. See `src/wire/codec.rs`.
        .codec_path("crate::wire::codec::WireCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
