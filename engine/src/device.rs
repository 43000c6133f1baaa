//! Device selection (`cpu`, `cuda:N`) and a description of what is available.

use candle_core::Device;

use crate::error::{EngineError, Result};

/// Parses a device string: `cpu` or `cuda:N` (`cuda` alone means `cuda:0`).
pub fn parse_device(spec: &str) -> Result<Device> {
    let s = spec.trim().to_ascii_lowercase();
    if s == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match s.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                EngineError::Invalid(format!("--device = {spec:?}: expected cpu or cuda:N"))
            })?,
        None => {
            return Err(EngineError::Invalid(format!(
                "--device = {spec:?}: expected cpu or cuda:N"
            )))
        }
    };
    if !cfg!(feature = "cuda") {
        return Err(EngineError::Invalid(format!(
            "--device = {spec:?}: this build has no CUDA support (build with --features cuda)"
        )));
    }
    Device::new_cuda(ordinal).map_err(|e| EngineError::Invalid(format!("--device = {spec:?}: {e}")))
}

/// One line per usable device.
pub fn describe_devices() -> Vec<String> {
    let mut out = vec![format!(
        "device cpu: {} threads",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )];
    if cfg!(feature = "cuda") {
        for i in 0..16 {
            match Device::new_cuda(i) {
                Ok(_) => out.push(format!("device cuda:{i}: available")),
                Err(e) => {
                    if i == 0 {
                        out.push(format!("cuda: no usable GPU ({e})"));
                    }
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_strings() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        let e = parse_device("tpu:0").unwrap_err().to_string();
        assert!(e.contains("tpu:0"), "{e}");
        if !cfg!(feature = "cuda") {
            let e = parse_device("cuda:0").unwrap_err().to_string();
            assert!(e.contains("no CUDA support"), "{e}");
        }
    }
}
