//! Wire contract between coordinator, workers and clients: the generated gRPC services, the
//! JSON payloads that travel inside them, and the confinement of model paths to a root.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use compsafe_core::report::{ModelInfo, Record, VariantInfo};
use serde::{Deserialize, Serialize};

/// Generated messages and service stubs of `compsafe.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("compsafe.v1");
}

/// The protocol version every request carries; a mismatch is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest gRPC message either side accepts (a unit's records, a report).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Refuses a request from a peer speaking another protocol version.
pub fn check_protocol(got: u32) -> Result<(), tonic::Status> {
    if got == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(tonic::Status::failed_precondition(format!(
            "protocol version {got} is not supported (this side speaks {PROTOCOL_VERSION})"
        )))
    }
}

/// Adds `authorization: Bearer <token>` to every outgoing call.
#[derive(Clone)]
pub struct BearerToken(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    /// A token as read from a token file or `COMPSAFE_TOKEN` (surrounding whitespace ignored).
    pub fn new(token: &str) -> Result<BearerToken, String> {
        format!("Bearer {}", token.trim())
            .parse()
            .map(BearerToken)
            .map_err(|_| "the token must be printable ASCII".to_string())
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// A channel to the service at `url` with a bearer token.
pub type AuthChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, BearerToken>;

/// Connects to a coordinator at `url` (`http://host:port`).
pub async fn connect(url: &str, token: &BearerToken) -> Result<AuthChannel, String> {
    connect_with(url, token, None).await
}

/// Like [`connect`]; for an `https://` URL the coordinator's certificate must chain to
/// `ca_pem` (PEM), which is required there.
pub async fn connect_with(
    url: &str,
    token: &BearerToken,
    ca_pem: Option<&[u8]>,
) -> Result<AuthChannel, String> {
    Ok(tonic::service::interceptor::InterceptedService::new(
        channel(url, ca_pem).await?,
        token.clone(),
    ))
}

/// A channel to the coordinator at `url` without credentials (for grpc.health.v1, which
/// needs none); `https://` URLs need the CA certificate `ca_pem`.
pub async fn channel(
    url: &str,
    ca_pem: Option<&[u8]>,
) -> Result<tonic::transport::Channel, String> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("coordinator URL {url:?}: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(10));
    if url.starts_with("https://") {
        let ca = ca_pem.ok_or_else(|| {
            format!("coordinator URL {url}: https needs the CA certificate (--tls-ca FILE)")
        })?;
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca));
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| format!("coordinator URL {url}: TLS: {e}"))?;
    } else if ca_pem.is_some() {
        return Err(format!(
            "coordinator URL {url}: a CA certificate was given, so the URL must be https://"
        ));
    }
    endpoint.connect().await.map_err(|e| {
        format!(
            "cannot reach the coordinator at {url}: {}",
            source_chain(&e)
        )
    })
}

/// An error with its causes, `a: b: c`.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

pub fn sweeps_client(ch: AuthChannel) -> pb::sweeps_client::SweepsClient<AuthChannel> {
    pb::sweeps_client::SweepsClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A work client with bounded message sizes.
pub fn work_client(ch: AuthChannel) -> pb::work_client::WorkClient<AuthChannel> {
    pb::work_client::WorkClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The reference's outputs on a suite, which variant units of that suite are compared with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReferenceWire {
    /// Per prompt id: the prompt's tokens and the reference's response tokens.
    pub tokens: BTreeMap<String, (Vec<u32>, Vec<u32>)>,
    /// Typical (median) mean per-token log-likelihood of the reference's own responses.
    pub typical_logprob: Option<f64>,
}

/// What a worker is asked to do: one variant on a range of one suite's prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitSpec {
    /// The sweep this unit belongs to.
    pub sweep_id: String,
    /// The unit's id.
    pub unit_id: String,
    /// The sweep's spec text.
    pub spec_text: String,
    /// The spec file's path (relative paths in the spec resolve against its directory).
    pub spec_path: String,
    /// Index of the variant in the spec (0 is the reference).
    pub variant: usize,
    /// Index of the suite in the spec.
    pub suite: usize,
    /// First prompt of the range.
    pub start: usize,
    /// One past the last prompt of the range.
    pub end: usize,
    /// The reference's outputs on this suite (variant units of generation suites).
    pub reference: Option<ReferenceWire>,
}

/// What a worker returns for a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitResult {
    /// One record per prompt of the range.
    pub records: Vec<Record>,
    /// The evaluated variant.
    pub variant: VariantInfo,
    /// The model and its file integrity (reference units).
    pub model: Option<ModelInfo>,
    /// The reference's outputs (reference units of generation suites).
    pub reference: Option<ReferenceWire>,
}

/// A model path outside the configured model root, or one that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathEscape {
    /// The offending path.
    pub path: PathBuf,
    /// Why it is refused.
    pub reason: String,
}

impl std::fmt::Display for PathEscape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for PathEscape {}

/// Resolves `path` inside `root`: no `..` component, and after following symlinks the path
/// must still lie under the (resolved) root. Returns the resolved path.
pub fn confine(path: &Path, root: &Path) -> Result<PathBuf, PathEscape> {
    let escape = |reason: String| PathEscape {
        path: path.to_path_buf(),
        reason,
    };
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(escape("model paths may not contain `..`".into()));
    }
    let root = root.canonicalize().map_err(|e| {
        escape(format!(
            "model root {} cannot be resolved: {e}",
            root.display()
        ))
    })?;
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    };
    let real = joined
        .canonicalize()
        .map_err(|e| escape(format!("cannot be resolved: {e}")))?;
    if real.starts_with(&root) {
        Ok(real)
    } else {
        Err(escape(format!(
            "resolves to {}, outside the model root {}",
            real.display(),
            root.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confine_accepts_inside_and_refuses_escapes() {
        let tmp = std::env::temp_dir().join(format!("compsafe-confine-{}", std::process::id()));
        let root = tmp.join("root");
        std::fs::create_dir_all(root.join("m")).unwrap();
        std::fs::create_dir_all(tmp.join("outside")).unwrap();
        assert!(confine(&root.join("m"), &root).is_ok());
        assert!(confine(Path::new("m"), &root).is_ok());
        let e = confine(&root.join("m/../m"), &root).unwrap_err();
        assert!(e.reason.contains(".."), "{e}");
        assert!(confine(&tmp.join("outside"), &root).is_err());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(tmp.join("outside"), root.join("link")).unwrap();
            let e = confine(&root.join("link"), &root).unwrap_err();
            assert!(e.reason.contains("outside the model root"), "{e}");
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn protocol_mismatch_is_refused() {
        assert!(check_protocol(PROTOCOL_VERSION).is_ok());
        assert_eq!(
            check_protocol(99).unwrap_err().code(),
            tonic::Code::FailedPrecondition
        );
    }
}
