//! Argument groups shared by several commands, and what they resolve to: the coordinator a
//! client talks to (URL, token, CA certificate), the async runtime, signals.

use std::path::{Path, PathBuf};

use compsafe_proto::{connect_with, sweeps_client, BearerToken};

use crate::exit::Failure;

/// How a client reaches the coordinator.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Coordinator URL, e.g. http://10.0.0.5:7070.
    #[arg(
        long,
        env = "COMPSAFE_COORDINATOR",
        default_value = "http://127.0.0.1:7070"
    )]
    pub coordinator: String,
    /// File holding the bearer token (default: COMPSAFE_TOKEN).
    #[arg(long, env = "COMPSAFE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) that the coordinator's TLS certificate chains to (https:// URLs).
    #[arg(long, env = "COMPSAFE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

/// The sweeps client of a coordinator.
pub type SweepsClient =
    compsafe_proto::pb::sweeps_client::SweepsClient<compsafe_proto::AuthChannel>;

impl ClientArgs {
    /// The token from `--token-file`, else `COMPSAFE_TOKEN`.
    pub fn token(&self) -> Result<String, Failure> {
        token(self.token_file.as_deref())
    }

    /// The CA certificate of `--tls-ca`, if given.
    pub fn ca(&self) -> Result<Option<Vec<u8>>, Failure> {
        self.tls_ca
            .as_deref()
            .map(|p| read_pem("--tls-ca", p))
            .transpose()
    }

    /// A sweeps client of the coordinator.
    pub async fn sweeps(&self) -> Result<SweepsClient, Failure> {
        let token = BearerToken::new(&self.token()?).map_err(Failure::input)?;
        let ca = self.ca()?;
        Ok(sweeps_client(
            connect_with(&self.coordinator, &token, ca.as_deref())
                .await
                .map_err(Failure::infra)?,
        ))
    }
}

/// Where an analysis command runs and writes: it is a sweep with one `[analysis.*]` section,
/// run on an in-process cluster like `compsafe run`.
#[derive(Debug, clap::Args)]
pub struct AnalysisArgs {
    /// Output directory (default out/<command>-<model>): the analysis's files and the spec it
    /// ran (spec.toml, to rerun or submit to a fleet).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Worker slots of the in-process cluster.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// The token from `--token-file`, else `COMPSAFE_TOKEN`.
pub fn token(file: Option<&Path>) -> Result<String, Failure> {
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

pub fn read_pem(flag: &str, path: &Path) -> Result<Vec<u8>, Failure> {
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

/// A multi-threaded async runtime.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::infra(format!("cannot start the async runtime: {e}")))
}

/// A gRPC status from the coordinator as a failure: refused input is exit 2, the rest 3.
pub fn status_error(s: tonic::Status) -> Failure {
    match s.code() {
        tonic::Code::InvalidArgument | tonic::Code::NotFound | tonic::Code::FailedPrecondition => {
            Failure::input(s.message().to_string())
        }
        tonic::Code::Unauthenticated => Failure::input(format!(
            "the coordinator refused the token: {}",
            s.message()
        )),
        _ => Failure::infra(format!("coordinator: {}", s.message())),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn signal() {
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

/// Arguments of `compsafe status`, `watch` and `cancel`.
#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// The sweep id printed by `compsafe submit`.
    pub id: String,
    /// The coordinator.
    #[command(flatten)]
    pub client: ClientArgs,
    /// JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}
