//! `compsafe coordinator`, `worker`, `submit`, `status`, `watch`, `cancel`, `report` and
//! `health`: a sweep on a cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use compsafe_core::report::Record;
use compsafe_core::Report;
use compsafe_proto::pb::{CancelRequest, GetRequest, SubmitRequest, SweepStatus};
use compsafe_proto::{connect_with, sweeps_client, BearerToken, PROTOCOL_VERSION};

use crate::cli::{
    ClientArgs, CoordinatorArgs, HealthArgs, IdArgs, ReportArgs, SubmitArgs, WorkerArgs,
};
use crate::exit::{Failure, Outcome};

pub(crate) fn infra(message: impl Into<String>) -> Failure {
    Failure {
        code: 3,
        message: message.into(),
    }
}

/// The token from `--token-file`, else `COMPSAFE_TOKEN`.
fn token(file: Option<&Path>) -> Result<String, Failure> {
    let t = match file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| Failure::input(format!("{}: cannot read token file: {e}", f.display())))?,
        None => std::env::var("COMPSAFE_TOKEN").map_err(|_| {
            Failure::input("no token: pass --token-file FILE or set COMPSAFE_TOKEN")
        })?,
    };
    let t = t.trim().to_string();
    if t.is_empty() {
        return Err(Failure::input("the token is empty"));
    }
    Ok(t)
}

fn read_pem(flag: &str, path: &Path) -> Result<Vec<u8>, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::input(format!("{flag} {}: {e}", path.display())))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(Failure::input(format!(
            "{flag} {}: not a PEM file (no -----BEGIN line)",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The CA certificate of `--tls-ca`, if given.
pub(crate) fn tls_ca(path: Option<&Path>) -> Result<Option<Vec<u8>>, Failure> {
    path.map(|p| read_pem("--tls-ca", p)).transpose()
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| infra(format!("cannot start the async runtime: {e}")))
}

pub(crate) fn status_error(s: tonic::Status) -> Failure {
    match s.code() {
        tonic::Code::InvalidArgument | tonic::Code::NotFound | tonic::Code::FailedPrecondition => {
            Failure::input(s.message().to_string())
        }
        tonic::Code::Unauthenticated => Failure::input(format!(
            "the coordinator refused the token: {}",
            s.message()
        )),
        _ => infra(format!("coordinator: {}", s.message())),
    }
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

pub fn coordinator_cmd(args: &CoordinatorArgs) -> Result<Outcome, Failure> {
    let token = token(args.token_file.as_deref())?;
    let mut cfg = compsafe_coordinator::Config::with_token(token);
    cfg.model_root = args.model_root.clone();
    cfg.sched.lease_ttl_ms = args.lease_ttl_ms;
    cfg.sched.max_attempts = args.max_attempts;
    cfg.prompts_per_unit = args.prompts_per_unit;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        cfg.tls = Some((read_pem("--tls-cert", cert)?, read_pem("--tls-key", key)?));
    }
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    runtime()?.block_on(async {
        if let Some(addr) = args.metrics_listen {
            compsafe_coordinator::telemetry::install(addr).map_err(Failure::input)?;
            eprintln!("metrics on http://{addr}/metrics");
        }
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| Failure::input(format!("--listen {}: {e}", args.listen)))?;
        let addr = listener.local_addr().map_err(|e| infra(e.to_string()))?;
        eprintln!(
            "coordinator listening on {scheme}://{addr}, state in {}",
            args.db.display()
        );
        compsafe_coordinator::run(&args.db, cfg, listener, signal())
            .await
            .map_err(infra)
    })?;
    Ok(Outcome::Ok)
}

pub fn worker_cmd(args: &WorkerArgs) -> Result<Outcome, Failure> {
    let token = token(args.token_file.as_deref())?;
    let device = compsafe_engine::device::parse_device(&args.device)?;
    let mut runner = compsafe_worker::Runner::new(device, args.model_root.clone());
    if let Some(dir) = &args.cache_dir {
        runner = runner.with_cache_dir(dir.clone());
    }
    let cfg = compsafe_worker::PullConfig {
        coordinator: args.coordinator.clone(),
        token,
        device: args.device.clone(),
        idle_poll: Duration::from_millis(200),
        ca_pem: tls_ca(args.tls_ca.as_deref())?,
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
            .map_err(infra)
    });
    // A released unit may still be computing on a blocking thread: do not wait for it.
    rt.shutdown_background();
    out?;
    Ok(Outcome::Ok)
}

async fn client(
    args: &ClientArgs,
) -> Result<compsafe_proto::pb::sweeps_client::SweepsClient<compsafe_proto::AuthChannel>, Failure> {
    let token = BearerToken::new(&token(args.token_file.as_deref())?).map_err(Failure::input)?;
    let ca = tls_ca(args.tls_ca.as_deref())?;
    Ok(sweeps_client(
        connect_with(&args.coordinator, &token, ca.as_deref())
            .await
            .map_err(infra)?,
    ))
}

pub fn submit_cmd(args: &SubmitArgs) -> Result<Outcome, Failure> {
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
        let mut c = client(&args.client).await?;
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

fn print_status(s: &SweepStatus, json: bool) {
    if json {
        println!("{}", crate::progress::status_json(s));
    } else {
        println!("{}", crate::progress::status_line(s));
    }
}

pub fn status_cmd(args: &IdArgs) -> Result<Outcome, Failure> {
    let s = runtime()?.block_on(async {
        let mut c = client(&args.client).await?;
        c.get(GetRequest {
            protocol: PROTOCOL_VERSION,
            sweep_id: args.id.clone(),
        })
        .await
        .map_err(status_error)
    })?;
    print_status(&s.into_inner(), args.json);
    Ok(Outcome::Ok)
}

pub fn watch_cmd(args: &IdArgs) -> Result<Outcome, Failure> {
    let json = args.json || !std::io::IsTerminal::is_terminal(&std::io::stdout());
    let last = runtime()?.block_on(async {
        let mut c = client(&args.client).await?;
        crate::progress::follow(&mut c, &args.id, json, crate::progress::Sink::Stdout).await
    })?;
    crate::progress::finished(&last)?;
    Ok(Outcome::Ok)
}

pub fn cancel_cmd(args: &IdArgs) -> Result<Outcome, Failure> {
    let s = runtime()?.block_on(async {
        let mut c = client(&args.client).await?;
        c.cancel(CancelRequest {
            protocol: PROTOCOL_VERSION,
            sweep_id: args.id.clone(),
        })
        .await
        .map_err(status_error)
    })?;
    print_status(&s.into_inner(), args.json);
    Ok(Outcome::Ok)
}

/// The report and records of finished sweep `id`.
pub(crate) async fn fetch_report(
    c: &mut compsafe_proto::pb::sweeps_client::SweepsClient<compsafe_proto::AuthChannel>,
    id: &str,
) -> Result<(Report, Vec<Record>), Failure> {
    let resp = c
        .report(GetRequest {
            protocol: PROTOCOL_VERSION,
            sweep_id: id.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let report: Report = serde_json::from_str(&resp.report_json)
        .map_err(|e| infra(format!("report from the coordinator: {e}")))?;
    let records: Vec<Record> = resp
        .records_json
        .iter()
        .map(|r| serde_json::from_str(r))
        .collect::<Result<_, _>>()
        .map_err(|e| infra(format!("records from the coordinator: {e}")))?;
    Ok((report, records))
}

pub fn report_cmd(args: &ReportArgs) -> Result<Outcome, Failure> {
    let (report, records) = runtime()?.block_on(async {
        let mut c = client(&args.client).await?;
        fetch_report(&mut c, &args.id).await
    })?;
    for p in crate::run::write_outputs(&args.out, &report, &records)? {
        println!("wrote {}", p.display());
    }
    // As `compsafe run`: a variant that failed before evaluation (integrity) fails the run.
    let failed: Vec<&str> = report
        .variants
        .iter()
        .filter(|v| v.failed())
        .map(|v| v.name.as_str())
        .collect();
    if failed.is_empty() {
        Ok(Outcome::Ok)
    } else {
        eprintln!("failed variants (not evaluated): {}", failed.join(", "));
        Ok(Outcome::CheckFailed)
    }
}

/// `compsafe health`: grpc.health.v1 Check against the coordinator.
pub fn health_cmd(args: &HealthArgs) -> Result<Outcome, Failure> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let ca = tls_ca(args.tls_ca.as_deref())?;
    let limit = Duration::from_millis(args.timeout_ms.max(1));
    let status = runtime()?.block_on(async {
        let ask = async {
            let ch = compsafe_proto::channel(&args.coordinator, ca.as_deref())
                .await
                .map_err(infra)?;
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
                    _ => infra(format!(
                        "health check of {} failed: {}",
                        args.coordinator,
                        s.message()
                    )),
                })
        };
        tokio::time::timeout(limit, ask).await.map_err(|_| {
            infra(format!(
                "no health answer from {} within {} ms",
                args.coordinator, args.timeout_ms
            ))
        })?
    })?;
    let name = ServingStatus::try_from(status)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN");
    println!("{}: {name}", args.coordinator);
    Ok(if status == ServingStatus::Serving as i32 {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}
