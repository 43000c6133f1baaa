//! `compsafe coordinator`: serves sweeps to workers over gRPC, with state in SQLite.

use std::path::PathBuf;

use crate::args::{read_pem, runtime, signal};
use crate::exit::{Failure, Outcome};

/// Arguments of `compsafe coordinator`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on, e.g. 0.0.0.0:7070 (port 0 picks a free port).
    #[arg(long, env = "COMPSAFE_LISTEN")]
    pub listen: String,
    /// SQLite database holding the sweeps (created if missing; reopened to resume).
    #[arg(long, env = "COMPSAFE_DB")]
    pub db: PathBuf,
    /// File holding the bearer token (default: COMPSAFE_TOKEN).
    #[arg(long, env = "COMPSAFE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Refuse specs whose model paths resolve outside this directory.
    #[arg(long, env = "COMPSAFE_MODEL_ROOT")]
    pub model_root: Option<PathBuf>,
    /// Lease duration without renewal, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub lease_ttl_ms: u64,
    /// Leases a unit may have before it fails for good.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    /// Prompts per variant unit (0: a whole suite per unit).
    #[arg(long, default_value_t = 0)]
    pub prompts_per_unit: usize,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "COMPSAFE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "COMPSAFE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 0.0.0.0:9090.
    #[arg(long, env = "COMPSAFE_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Serves until Ctrl-C or SIGTERM.
pub fn exec(args: &Args) -> Result<Outcome, Failure> {
    let token = crate::args::token(args.token_file.as_deref())?;
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
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::infra(e.to_string()))?;
        eprintln!(
            "coordinator listening on {scheme}://{addr}, state in {}",
            args.db.display()
        );
        compsafe_coordinator::run(&args.db, cfg, listener, signal())
            .await
            .map_err(Failure::infra)
    })?;
    Ok(Outcome::Ok)
}
