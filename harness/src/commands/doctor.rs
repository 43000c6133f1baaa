//! `compsafe doctor`: devices, CUDA, versions.

use crate::exit::{Failure, Outcome};

/// Prints what this build and machine have.
pub fn exec() -> Result<Outcome, Failure> {
    println!("compsafe {}", env!("CARGO_PKG_VERSION"));
    println!("os: {} {}", std::env::consts::OS, std::env::consts::ARCH);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cpu threads: {threads}");
    println!(
        "cuda: {}",
        if cfg!(feature = "cuda") {
            "compiled in"
        } else {
            "not compiled in (build with --features cuda for GPU workers)"
        }
    );
    for line in compsafe_engine::device::describe_devices() {
        println!("{line}");
    }
    Ok(Outcome::Ok)
}
