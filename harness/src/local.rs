//! `compsafe run`: an in-process cluster. The coordinator (state in `DIR/sweep.db`) and N
//! workers run in this process and talk real gRPC over loopback, so a local run exercises the
//! same code as a fleet and an interrupted run resumes with `--resume`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use compsafe_coordinator::store::SweepState;
use compsafe_coordinator::{Config, Coordinator, SqliteStore};
use compsafe_core::aggregate::SweepOutputs;
use compsafe_core::spec::Validated;
use compsafe_proto::pb::SubmitRequest;
use compsafe_proto::{connect, sweeps_client, BearerToken, PROTOCOL_VERSION};

use crate::args::{runtime, status_error};
use crate::commands::report::fetch_report;
use crate::exit::Failure;
use crate::progress::{finished, follow, Sink};

/// The state database of a run writing into `out`.
pub fn state_db(out: &Path) -> PathBuf {
    out.join("sweep.db")
}

/// Removes a state database and its WAL files.
pub fn remove_state(db: &Path) -> Result<(), Failure> {
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Failure::infra(format!(
                    "{}: cannot remove: {e}",
                    p.display()
                )))
            }
        }
    }
    Ok(())
}

/// How a sweep runs in this process.
#[derive(Debug, Clone)]
pub struct Local {
    /// The spec file.
    pub spec: PathBuf,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Worker slots.
    pub workers: usize,
    /// JSON lines instead of a progress bar.
    pub json: bool,
    /// Continue the interrupted run whose state is in the output directory.
    pub resume: bool,
    /// Prompts per evaluate unit (0: a whole suite).
    pub prompts_per_unit: usize,
    /// Where distilled students are kept.
    pub cache_dir: PathBuf,
}

/// Runs the sweep of `v` (read from `args.spec`) on an in-process cluster writing its state
/// into `out`; returns its outputs.
pub fn execute(args: &Local, v: &Validated, out: &Path) -> Result<SweepOutputs, Failure> {
    let device = compsafe_engine::device::parse_device(&args.device)?;
    let spec_path = args
        .spec
        .canonicalize()
        .map_err(|e| Failure::input(format!("{}: {e}", args.spec.display())))?;
    let spec_text = std::fs::read_to_string(&spec_path)
        .map_err(|e| Failure::input(format!("{}: {e}", spec_path.display())))?;
    std::fs::create_dir_all(out).map_err(|e| {
        Failure::infra(format!(
            "{}: cannot create output directory: {e}",
            out.display()
        ))
    })?;
    let db = state_db(out);
    if args.resume {
        if !db.exists() {
            return Err(Failure::input(format!(
                "--resume: {} does not exist, so there is no interrupted run in {} to continue",
                db.display(),
                out.display()
            )));
        }
    } else {
        remove_state(&db)?;
    }
    let store =
        SqliteStore::open(&db).map_err(|e| Failure::infra(format!("{}: {e}", db.display())))?;
    let token = format!("{:032x}", rand::random::<u128>());
    let mut cfg = Config::with_token(token.clone());
    cfg.prompts_per_unit = args.prompts_per_unit;
    let json = args.json;
    let workers = args.workers.max(1);
    let device_name = args.device.clone();
    let spec_path_text = spec_path.display().to_string();
    let spec_sha = v.spec.sha256.clone();
    let rt = runtime()?;
    let result = rt.block_on(async move {
        let coordinator =
            Coordinator::start(store, cfg).map_err(|e| Failure::infra(format!("{}: {e}", db.display())))?;
        let resumed = if args.resume {
            let found = coordinator
                .handle()
                .resume(spec_text.clone(), spec_path_text.clone())
                .await
                .map_err(|e| Failure::infra(e.to_string()))?;
            let Some(row) = found else {
                return Err(Failure::input(format!(
                    "--resume: {} holds no run of {} as it is now (spec sha256 {}); run without --resume to start afresh",
                    db.display(),
                    spec_path_text,
                    &spec_sha[..12.min(spec_sha.len())]
                )));
            };
            if matches!(row.state, SweepState::Failed | SweepState::Cancelled) {
                return Err(Failure::infra(format!(
                    "--resume: the run in {} {}{}; run without --resume to start afresh",
                    db.display(),
                    row.state.as_str(),
                    row.error.map(|e| format!(": {e}")).unwrap_or_default()
                )));
            }
            Some(row.id)
        } else {
            None
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Failure::infra(format!("cannot listen on loopback: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::infra(format!("loopback listener: {e}")))?;
        let url = format!("http://{addr}");
        let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(compsafe_coordinator::serve(
            coordinator,
            listener,
            async move {
                let _ = server_stopped.await;
            },
        ));
        let (stop_workers, stop) = tokio::sync::watch::channel(false);
        let mut pool = Vec::new();
        for _ in 0..workers {
            let runner =
                compsafe_worker::Runner::new(device.clone(), None).with_cache_dir(args.cache_dir.clone());
            let cfg = compsafe_worker::PullConfig {
                coordinator: url.clone(),
                token: token.clone(),
                device: device_name.clone(),
                idle_poll: Duration::from_millis(50),
                ca_pem: None,
            };
            pool.push(tokio::spawn(compsafe_worker::pull_loop(
                cfg,
                runner,
                stop.clone(),
            )));
        }
        let outcome = async {
            let token = BearerToken::new(&token).map_err(Failure::infra)?;
            let mut client = sweeps_client(connect(&url, &token).await.map_err(Failure::infra)?);
            let id = match resumed {
                Some(id) => id,
                None => {
                    client
                        .submit(SubmitRequest {
                            protocol: PROTOCOL_VERSION,
                            spec_text,
                            spec_path: spec_path_text,
                        })
                        .await
                        .map_err(status_error)?
                        .into_inner()
                        .sweep_id
                }
            };
            let last = follow(&mut client, &id, json, Sink::Stderr).await?;
            finished(&last)?;
            fetch_report(&mut client, &id).await
        }
        .await;
        let _ = stop_workers.send(true);
        for w in pool {
            if let Ok(Err(e)) = w.await {
                tracing::warn!("worker: {e}");
            }
        }
        let _ = stop_server.send(());
        let _ = server.await;
        outcome
    });
    rt.shutdown_background();
    result
}
