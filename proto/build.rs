fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=compsafe.proto");
    tonic_prost_build::configure().compile_protos(&["compsafe.proto"], &["."])?;
    Ok(())
}
