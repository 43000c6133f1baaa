//! `compsafe health`: asks a coordinator's grpc.health.v1 service whether it is serving.

use std::path::PathBuf;
use std::time::Duration;

use crate::args::{read_pem, runtime};
use crate::exit::{Failure, Outcome};

/// Arguments of `compsafe health`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Coordinator URL, e.g. http://10.0.0.5:7070.
    #[arg(
        long,
        env = "COMPSAFE_COORDINATOR",
        default_value = "http://127.0.0.1:7070"
    )]
    pub coordinator: String,
    /// CA certificate (PEM) that the coordinator's TLS certificate chains to (https:// URLs).
    #[arg(long, env = "COMPSAFE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Service to ask about: "" (the server as a whole), compsafe.v1.Sweeps or
    /// compsafe.v1.Work.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Give up after this many milliseconds (connecting included).
    #[arg(long, default_value_t = 5_000)]
    pub timeout_ms: u64,
}

/// `compsafe health`: grpc.health.v1 Check against the coordinator.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let ca = args
        .tls_ca
        .as_deref()
        .map(|p| read_pem("--tls-ca", p))
        .transpose()?;
    let limit = Duration::from_millis(args.timeout_ms.max(1));
    let status = runtime()?.block_on(async {
        let ask = async {
            let ch = compsafe_proto::channel(&args.coordinator, ca.as_deref())
                .await
                .map_err(Failure::infra)?;
            HealthClient::new(ch)
                .check(HealthCheckRequest {
                    service: args.service.clone(),
                })
                .await
                .map(|r| r.into_inner().status)
                .map_err(|s| match s.code() {
                    tonic::Code::NotFound => Failure::input(format!(
                        "--service = {:?}: the coordinator at {} serves no such service",
                        args.service, args.coordinator
                    )),
                    _ => Failure::infra(format!(
                        "health check of {} failed: {}",
                        args.coordinator,
                        s.message()
                    )),
                })
        };
        tokio::time::timeout(limit, ask).await.map_err(|_| {
            Failure::infra(format!(
                "no health answer from {} within {} ms",
                args.coordinator, args.timeout_ms
            ))
        })?
    })?;
    let name = ServingStatus::try_from(status)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN");
    println!("{}: {name}", args.coordinator);
    Ok(Outcome::failed_if(status != ServingStatus::Serving as i32))
}
