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
    Device::new_cuda(ordinal)
        .map_err(|e| EngineError::Invalid(format!("--device = {spec:?}: {}", first_line(&e))))
}

/// The first line of an error (candle appends a backtrace when RUST_BACKTRACE is set).
fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// What a device is, for `compsafe doctor` and for a worker's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `cpu` or `cuda:N`.
    pub id: String,
    /// The GPU's name, or `N threads` for the CPU.
    pub name: String,
    /// Device memory in bytes (GPUs).
    pub total_memory: Option<u64>,
    /// Device memory free when asked, in bytes (GPUs).
    pub free_memory: Option<u64>,
    /// CUDA compute capability `(major, minor)`.
    pub compute_capability: Option<(u32, u32)>,
}

impl DeviceInfo {
    /// One line: `cuda:0: NVIDIA H100 80GB HBM3, 79.1 GiB (78.6 GiB free), compute capability 9.0`.
    pub fn summary(&self) -> String {
        format!("{}: {}", self.id, self.details())
    }

    /// The summary without the id: name, memory and compute capability.
    pub fn details(&self) -> String {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let mut s = self.name.clone();
        if let Some(t) = self.total_memory {
            s.push_str(&format!(", {:.1} GiB", gib(t)));
            if let Some(f) = self.free_memory {
                s.push_str(&format!(" ({:.1} GiB free)", gib(f)));
            }
        }
        if let Some((major, minor)) = self.compute_capability {
            s.push_str(&format!(", compute capability {major}.{minor}"));
        }
        s
    }
}

/// Name, memory and compute capability of a device.
pub fn device_info(device: &Device) -> Result<DeviceInfo> {
    match device {
        Device::Cpu => Ok(DeviceInfo {
            id: "cpu".into(),
            name: format!(
                "{} threads",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ),
            total_memory: None,
            free_memory: None,
            compute_capability: None,
        }),
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => cuda_info(d, device),
        #[allow(unreachable_patterns)]
        other => Ok(DeviceInfo {
            id: format!("{:?}", other.location()),
            name: "unknown".into(),
            total_memory: None,
            free_memory: None,
            compute_capability: None,
        }),
    }
}

#[cfg(feature = "cuda")]
fn cuda_info(d: &candle_core::CudaDevice, device: &Device) -> Result<DeviceInfo> {
    let stream = d.cuda_stream();
    let ctx = stream.context();
    let err = |e: candle_core::cuda::cudarc::driver::DriverError| {
        EngineError::Invalid(format!("querying {:?}: {e}", device.location()))
    };
    let id = match device.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        other => format!("{other:?}"),
    };
    let (free, total) = ctx.mem_get_info().map_err(err)?;
    let (major, minor) = ctx.compute_capability().map_err(err)?;
    Ok(DeviceInfo {
        id,
        name: ctx.name().map_err(err)?,
        total_memory: Some(total as u64),
        free_memory: Some(free as u64),
        compute_capability: Some((major as u32, minor as u32)),
    })
}

/// The number of CUDA devices the driver reports (0 without CUDA support or a driver).
pub fn cuda_device_count() -> usize {
    #[cfg(feature = "cuda")]
    {
        candle_core::cuda::cudarc::driver::CudaContext::device_count()
            .map_or(0, |n| n.max(0) as usize)
    }
    #[cfg(not(feature = "cuda"))]
    {
        0
    }
}

/// One line per usable device: the CPU, then every GPU with its memory and compute
/// capability, or why there is none.
pub fn describe_devices() -> Vec<String> {
    let cpu = device_info(&Device::Cpu).map(|i| i.summary());
    let mut out = vec![format!("device {}", cpu.unwrap_or_else(|e| e.to_string()))];
    if !cfg!(feature = "cuda") {
        return out;
    }
    let count = cuda_device_count();
    if count == 0 {
        match Device::new_cuda(0) {
            Ok(_) => {}
            Err(e) => out.push(format!("cuda: no usable GPU ({})", first_line(&e))),
        }
        return out;
    }
    for i in 0..count {
        let line = Device::new_cuda(i)
            .map_err(EngineError::from)
            .and_then(|d| device_info(&d))
            .map(|info| format!("device {}", info.summary()))
            .unwrap_or_else(|e| format!("device cuda:{i}: unusable ({})", first_line(&e)));
        out.push(line);
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

    #[test]
    fn the_cpu_is_always_described() {
        let lines = describe_devices();
        assert!(lines[0].starts_with("device cpu: "), "{lines:?}");
        let info = device_info(&Device::Cpu).unwrap();
        assert_eq!(info.id, "cpu");
        assert!(info.total_memory.is_none());
        let gpu = DeviceInfo {
            id: "cuda:0".into(),
            name: "GPU".into(),
            total_memory: Some(80 << 30),
            free_memory: Some(40 << 30),
            compute_capability: Some((9, 0)),
        };
        assert_eq!(
            gpu.summary(),
            "cuda:0: GPU, 80.0 GiB (40.0 GiB free), compute capability 9.0"
        );
    }
}
