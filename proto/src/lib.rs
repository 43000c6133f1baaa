//! Wire contract between coordinator, workers and clients: the generated gRPC services, the
//! JSON payloads that travel inside them (core's unit types, re-exported).

pub use compsafe_core::paths::{confine, PathEscape};
pub use compsafe_core::unit::{ReferenceWire, UnitResult, UnitSpec};

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

/// Why a call was refused: the one mapping from the service's errors to gRPC status codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// No such sweep or unit (`NOT_FOUND`).
    NotFound(String),
    /// A lease that is no longer current (`FAILED_PRECONDITION`, "lease refused: ...").
    Fenced(String),
    /// A request the caller must fix (`INVALID_ARGUMENT`).
    Invalid(String),
    /// The request cannot be served now and may be later (`UNAVAILABLE`).
    Unavailable(String),
    /// A fault of the service itself (`INTERNAL`).
    Internal(String),
}

impl From<WireError> for tonic::Status {
    fn from(e: WireError) -> tonic::Status {
        match e {
            WireError::NotFound(m) => tonic::Status::not_found(m),
            WireError::Fenced(m) => {
                tonic::Status::failed_precondition(format!("lease refused: {m}"))
            }
            WireError::Invalid(m) => tonic::Status::invalid_argument(m),
            WireError::Unavailable(m) => tonic::Status::unavailable(m),
            WireError::Internal(m) => tonic::Status::internal(m),
        }
    }
}

/// Whether a refused call was the caller's fault (its input, its token): a client exits 2
/// for those and 3 for the rest.
pub fn is_input_status(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::InvalidArgument
            | tonic::Code::NotFound
            | tonic::Code::FailedPrecondition
            | tonic::Code::Unauthenticated
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_mismatch_is_refused() {
        assert!(check_protocol(PROTOCOL_VERSION).is_ok());
        assert_eq!(
            check_protocol(99).unwrap_err().code(),
            tonic::Code::FailedPrecondition
        );
    }
}
