//! `compsafe submit`: submits a sweep spec to a coordinator and prints the sweep id.

use std::path::PathBuf;

use compsafe_proto::pb::SubmitRequest;
use compsafe_proto::PROTOCOL_VERSION;

use crate::args::{runtime, status_error, ClientArgs};
use crate::exit::{Failure, Outcome};

/// Arguments of `compsafe submit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sweep spec (TOML).
    pub spec: PathBuf,
    /// The coordinator.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Prints the sweep id.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    let path: PathBuf = args
        .spec
        .canonicalize()
        .map_err(|e| Failure::input(format!("{}: {e}", args.spec.display())))?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
    // The spec's syntax and fields are checked here; its files (model, manifest, suites) are
    // checked by the coordinator, on the filesystem the workers see, which the submitting
    // machine may not have (a CI runner submitting to a cluster).
    compsafe_core::spec::parse_spec(&text, &path).map_err(|e| Failure::input(e.to_string()))?;
    let resp = runtime()?.block_on(async {
        let mut c = args.client.sweeps().await?;
        c.submit(SubmitRequest {
            protocol: PROTOCOL_VERSION,
            spec_text: text,
            spec_path: path.display().to_string(),
        })
        .await
        .map_err(status_error)
    })?;
    println!("{}", resp.into_inner().sweep_id);
    Ok(Outcome::Ok)
}
