//! `compsafe report ID --out DIR`: writes the reports of a finished sweep.

use std::path::PathBuf;

use compsafe_core::aggregate::SweepOutputs;
use compsafe_core::report::Record;
use compsafe_core::Report;
use compsafe_proto::pb::GetRequest;
use compsafe_proto::PROTOCOL_VERSION;

use crate::args::{runtime, status_error, ClientArgs, SweepsClient};
use crate::exit::{Failure, Outcome};

/// Arguments of `compsafe report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sweep id printed by `compsafe submit`.
    pub id: String,
    /// The coordinator.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

/// The outputs of finished sweep `id`: report, records, analysis files and failed checks.
pub async fn fetch_report(c: &mut SweepsClient, id: &str) -> Result<SweepOutputs, Failure> {
    let resp = c
        .report(GetRequest {
            protocol: PROTOCOL_VERSION,
            sweep_id: id.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let report: Report = serde_json::from_str(&resp.report_json)
        .map_err(|e| Failure::infra(format!("report from the coordinator: {e}")))?;
    let records: Vec<Record> = resp
        .records_json
        .iter()
        .map(|r| serde_json::from_str(r))
        .collect::<Result<_, _>>()
        .map_err(|e| Failure::infra(format!("records from the coordinator: {e}")))?;
    Ok(SweepOutputs {
        report,
        records,
        files: resp.files.into_iter().map(|f| (f.name, f.text)).collect(),
        flags: resp.flags,
    })
}

/// Writes the finished sweep's outputs; exit 1 as `compsafe run` would (a variant that
/// failed before evaluation, an analysis check that failed).
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    let out = runtime()?.block_on(async {
        let mut c = args.client.sweeps().await?;
        fetch_report(&mut c, &args.id).await
    })?;
    crate::output::finish(&args.out, &out, false)
}
