//! `compsafe worker`: pulls work units from a coordinator and runs them.

use std::path::PathBuf;
use std::time::Duration;

use crate::args::{runtime, signal, ClientArgs};
use crate::exit::{Failure, Outcome};

/// Arguments of `compsafe worker`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The coordinator.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Device: cpu or cuda:N.
    #[arg(long, env = "COMPSAFE_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Refuse units whose model paths resolve outside this directory.
    #[arg(long, env = "COMPSAFE_MODEL_ROOT")]
    pub model_root: Option<PathBuf>,
    /// Where distilled students are kept; workers sharing it train each student once
    /// (default: $XDG_CACHE_HOME/compsafe or ~/.cache/compsafe).
    #[arg(long, env = "COMPSAFE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Runs units until Ctrl-C or SIGTERM; a unit in progress is given back.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    let token = args.client.token()?;
    let device = compsafe_engine::device::parse_device(&args.device)?;
    let mut runner = compsafe_worker::Runner::new(device, args.model_root.clone());
    if let Some(dir) = &args.cache_dir {
        runner = runner.with_cache_dir(dir.clone());
    }
    let cfg = compsafe_worker::PullConfig {
        coordinator: args.client.coordinator.clone(),
        token,
        device: args.device.clone(),
        idle_poll: Duration::from_millis(200),
        ca_pem: args.client.ca()?,
    };
    let rt = runtime()?;
    let out = rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signal().await;
            let _ = tx.send(true);
        });
        compsafe_worker::pull_loop(cfg, runner, rx)
            .await
            .map_err(Failure::infra)
    });
    // A released unit may still be computing on a blocking thread: do not wait for it.
    rt.shutdown_background();
    out?;
    Ok(Outcome::Ok)
}
