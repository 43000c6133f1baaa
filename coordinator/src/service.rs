//! The gRPC services (sweeps for users, work for workers), bearer-token auth and health.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use compsafe_proto::pb::sweeps_server::{Sweeps, SweepsServer};
use compsafe_proto::pb::work_server::{Work, WorkServer};
use compsafe_proto::pb::Fault as WireFault;
use compsafe_proto::pb::{
    pull_request, pull_response, CallError, CancelRequest, CompleteRequest, CompleteResponse,
    FailRequest, FailResponse, GetRequest, LeaseRequest, LeaseResponse, ListRequest, ListResponse,
    OutputFile, PullRequest, PullResponse, RegisterRequest, RegisterResponse, RenewRequest,
    RenewResponse, ReportResponse, SubmitRequest, SubmitResponse, SweepStatus, WorkUnit,
};
use compsafe_proto::{check_protocol, MAX_MESSAGE_BYTES};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::actor::Handle;
use crate::plan::{assemble_sweep, check_spec, plan};
use crate::sched::{Fault, Lease, Progress, SchedConfig, SchedError, Scheduler};
use crate::store::{SqliteStore, Store, SweepRow, SweepState};
use compsafe_core::text::{now_ms, rfc3339};
use compsafe_core::unit::SweepId;
use compsafe_proto::WireError;

/// How the coordinator is run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The bearer token every call must carry.
    pub token: String,
    /// When set, model paths of submitted specs must resolve inside it.
    pub model_root: Option<PathBuf>,
    /// Scheduler tunables.
    pub sched: SchedConfig,
    /// Prompts per variant unit (0: a whole suite).
    pub prompts_per_unit: usize,
    /// How often expired leases are looked for.
    pub tick: Duration,
    /// Serve TLS with this certificate chain and private key (PEM).
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
}

impl Config {
    /// Defaults with `token`.
    pub fn with_token(token: impl Into<String>) -> Config {
        Config {
            token: token.into(),
            model_root: None,
            sched: SchedConfig::default(),
            prompts_per_unit: 0,
            tick: Duration::from_millis(250),
            tls: None,
        }
    }
}

/// Checks `authorization: Bearer <token>` in constant time.
#[derive(Clone)]
pub struct Auth {
    token: Arc<[u8]>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth")
    }
}

impl Auth {
    /// Accepts calls carrying `token`.
    pub fn new(token: &str) -> Auth {
        Auth {
            token: token.as_bytes().into(),
        }
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        if bool::from(given.as_bytes().ct_eq(&self.token)) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("invalid token"))
        }
    }
}

struct Inner {
    handle: Handle,
    cfg: Config,
    /// Becomes true when the server starts shutting down: long-lived Pull streams then end, so
    /// the graceful shutdown does not wait on workers that hold one open.
    closing: tokio::sync::watch::Sender<bool>,
}

/// Implements both services on one scheduler.
pub struct Coordinator<S: Store> {
    inner: Arc<Inner>,
    store: std::marker::PhantomData<fn() -> S>,
}

impl<S: Store> Clone for Coordinator<S> {
    fn clone(&self) -> Self {
        Coordinator {
            inner: self.inner.clone(),
            store: std::marker::PhantomData,
        }
    }
}

impl<S: Store> std::fmt::Debug for Coordinator<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").finish_non_exhaustive()
    }
}

fn status_of(p: Progress) -> SweepStatus {
    SweepStatus {
        sweep_id: p.id,
        name: p.name,
        state: p.state.as_str().to_string(),
        queued: p.queued,
        leased: p.leased,
        done: p.done,
        failed: p.failed,
        total: p.total,
        error: p.error.unwrap_or_default(),
    }
}

impl<S: Store> Coordinator<S> {
    /// Starts the scheduler task over `store` (restoring what it holds).
    pub fn start(store: S, cfg: Config) -> Result<Coordinator<S>, SchedError> {
        let sched = Scheduler::open(store, cfg.sched)?;
        let handle = Handle::spawn(sched, cfg.tick)?;
        Ok(Coordinator {
            inner: Arc::new(Inner {
                handle,
                cfg,
                closing: tokio::sync::watch::Sender::new(false),
            }),
            store: std::marker::PhantomData,
        })
    }

    /// The scheduler task.
    pub fn handle(&self) -> &Handle {
        &self.inner.handle
    }
}

fn work_unit(l: Lease) -> Result<WorkUnit, Status> {
    Ok(WorkUnit {
        unit_id: l.unit_id,
        lease_id: l.lease_id,
        deadline_unix_ms: l.deadline_ms,
        unit_json: serde_json::to_string(&l.spec)
            .map_err(|e| Status::from(WireError::Internal(format!("encoding a unit: {e}"))))?,
    })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<SweepStatus, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<S: Store> Sweeps for Coordinator<S> {
    async fn submit(
        &self,
        req: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let req = req.into_inner();
        check_protocol(req.protocol)?;
        let root = self.inner.cfg.model_root.clone();
        let per_unit = self.inner.cfg.prompts_per_unit;
        let text = req.spec_text;
        let path = req.spec_path;
        let (row, units) = tokio::task::spawn_blocking(move || {
            let v = check_spec(&text, std::path::Path::new(&path), root.as_deref())?;
            let now = now_ms();
            let salt = u64::from(std::process::id());
            let id = SweepId::new(&v.spec.sha256, now, salt).0;
            let units = plan(&id, &v, per_unit);
            let row = SweepRow {
                id,
                name: v.spec.sweep.name.clone(),
                spec_text: text,
                spec_path: path,
                state: SweepState::Running,
                created_ms: now,
                started_at: rfc3339(now),
                finished_at: None,
                error: None,
            };
            Ok::<_, String>((row, units))
        })
        .await
        .map_err(|e| Status::from(WireError::Internal(e.to_string())))?
        .map_err(|e| Status::from(WireError::Invalid(e)))?;
        let n = units.len() as u32;
        let id = row.id.clone();
        tracing::info!(sweep = %id, units = n, "submitted");
        self.inner.handle.submit(row, units).await?;
        Ok(Response::new(SubmitResponse {
            sweep_id: id,
            units: n,
        }))
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<SweepStatus>, Status> {
        let req = req.into_inner();
        check_protocol(req.protocol)?;
        let p = self.inner.handle.progress(req.sweep_id).await?;
        Ok(Response::new(status_of(p)))
    }

    async fn list(&self, req: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        check_protocol(req.into_inner().protocol)?;
        let all = self.inner.handle.list().await?;
        Ok(Response::new(ListResponse {
            sweeps: all.into_iter().map(status_of).collect(),
        }))
    }

    async fn cancel(&self, req: Request<CancelRequest>) -> Result<Response<SweepStatus>, Status> {
        let req = req.into_inner();
        check_protocol(req.protocol)?;
        let p = self.inner.handle.cancel(req.sweep_id).await?;
        Ok(Response::new(status_of(p)))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<GetRequest>) -> Result<Response<WatchStream>, Status> {
        let req = req.into_inner();
        check_protocol(req.protocol)?;
        let mut rx = self.inner.handle.subscribe();
        let handle = self.inner.handle.clone();
        let id = req.sweep_id;
        let first = handle.progress(id.clone()).await?;
        let (tx, out) = tokio::sync::mpsc::channel(16);
        let mut closing = self.inner.closing.subscribe();
        tokio::spawn(async move {
            let closed = async move {
                let _ = closing.wait_for(|c| *c).await;
            };
            tokio::pin!(closed);
            let mut last = first;
            loop {
                let done = last.state.is_final();
                if tx.send(Ok(status_of(last))).await.is_err() || done {
                    return;
                }
                last = loop {
                    // A shutdown ends the stream with UNAVAILABLE: the sweep goes on without
                    // this coordinator, and the graceful shutdown does not wait on watchers.
                    let next = tokio::select! {
                        r = rx.recv() => r,
                        () = &mut closed => {
                            let _ = tx
                                .send(Err(Status::unavailable(
                                    "the coordinator is shutting down",
                                )))
                                .await;
                            return;
                        }
                    };
                    match next {
                        Ok(p) if p.id == id => break p,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            match handle.progress(id.clone()).await {
                                Ok(p) => break p,
                                Err(_) => return,
                            }
                        }
                        Err(_) => return,
                    }
                };
            }
        });
        let stream: WatchStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(out));
        Ok(Response::new(stream))
    }

    async fn report(&self, req: Request<GetRequest>) -> Result<Response<ReportResponse>, Status> {
        let req = req.into_inner();
        check_protocol(req.protocol)?;
        let id = req.sweep_id;
        let (row, units, results) = self.inner.handle.results(id).await?;
        if row.state != SweepState::Done {
            return Err(Status::failed_precondition(format!(
                "sweep {} is {}{}",
                row.id,
                row.state.as_str(),
                row.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )));
        }
        let root = self.inner.cfg.model_root.clone();
        let internal = |e: String| Status::from(WireError::Internal(e));
        let out = tokio::task::spawn_blocking(move || {
            assemble_sweep(&row, &units, &results, root.as_deref())
        })
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(internal)?;
        let report_json =
            serde_json::to_string(&out.report).map_err(|e| internal(e.to_string()))?;
        let records_json = out
            .records
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| internal(e.to_string()))?;
        Ok(Response::new(ReportResponse {
            report_json,
            records_json,
            files: out
                .files
                .into_iter()
                .map(|(name, text)| OutputFile { name, text })
                .collect(),
            flags: out.flags,
        }))
    }
}

type PullStream = Pin<Box<dyn Stream<Item = Result<PullResponse, Status>> + Send + 'static>>;

/// A stream that ends once `closing` completes (the server is shutting down).
struct UntilClosed<T> {
    inner: Pin<Box<dyn Stream<Item = T> + Send>>,
    closing: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl<T> Stream for UntilClosed<T> {
    type Item = T;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        if self.closing.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(None);
        }
        self.inner.as_mut().poll_next(cx)
    }
}

impl<S: Store> Coordinator<S> {
    /// A Lease call, unary or on a Pull stream.
    async fn lease_call(&self, req: LeaseRequest) -> Result<LeaseResponse, Status> {
        let started = std::time::Instant::now();
        check_protocol(req.protocol)?;
        let lease = self
            .inner
            .handle
            .lease(req.worker_id, req.loaded_models)
            .await?;
        let unit = lease.map(work_unit).transpose()?;
        metrics::histogram!("compsafe_lease_seconds").record(started.elapsed().as_secs_f64());
        Ok(LeaseResponse { unit })
    }

    /// A Complete call, unary or on a Pull stream.
    async fn complete_call(&self, req: CompleteRequest) -> Result<CompleteResponse, Status> {
        check_protocol(req.protocol)?;
        let started = std::time::Instant::now();
        let next = req.lease_next.then_some(req.loaded_models);
        let outcome = self
            .inner
            .handle
            .complete(
                req.worker_id,
                req.unit_id,
                req.lease_id,
                req.result_json,
                next,
            )
            .await;
        let kind = match &outcome {
            Ok((true, _)) => "accepted",
            Ok((false, _)) => "duplicate",
            Err(_) => "refused",
        };
        metrics::counter!("compsafe_results_total", "outcome" => kind).increment(1);
        let (accepted, next) = outcome?;
        let next = next.map(work_unit).transpose()?;
        if next.is_some() {
            metrics::histogram!("compsafe_lease_seconds").record(started.elapsed().as_secs_f64());
        }
        Ok(CompleteResponse { accepted, next })
    }
}

#[tonic::async_trait]
impl<S: Store> Work for Coordinator<S> {
    async fn register(
        &self,
        req: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let req = req.into_inner();
        check_protocol(req.protocol)?;
        let id = self.inner.handle.register().await?;
        tracing::info!(worker = %id, host = %req.hostname, device = %req.device, "registered");
        Ok(Response::new(RegisterResponse {
            worker_id: id,
            lease_ttl_ms: self.inner.cfg.sched.lease_ttl_ms,
        }))
    }

    async fn lease(&self, req: Request<LeaseRequest>) -> Result<Response<LeaseResponse>, Status> {
        self.lease_call(req.into_inner()).await.map(Response::new)
    }

    async fn renew(&self, req: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        let req = req.into_inner();
        check_protocol(req.protocol)?;
        let deadline = self
            .inner
            .handle
            .renew(req.worker_id, req.unit_id, req.lease_id)
            .await?;
        Ok(Response::new(RenewResponse {
            deadline_unix_ms: deadline,
        }))
    }

    async fn complete(
        &self,
        req: Request<CompleteRequest>,
    ) -> Result<Response<CompleteResponse>, Status> {
        self.complete_call(req.into_inner())
            .await
            .map(Response::new)
    }

    type PullStream = PullStream;

    async fn pull(
        &self,
        req: Request<tonic::Streaming<PullRequest>>,
    ) -> Result<Response<PullStream>, Status> {
        let this = self.clone();
        let answers = req.into_inner().then(move |msg| {
            let this = this.clone();
            async move {
                let answer = match msg?.call {
                    Some(pull_request::Call::Lease(r)) => {
                        this.lease_call(r).await.map(pull_response::Answer::Lease)
                    }
                    Some(pull_request::Call::Complete(r)) => this
                        .complete_call(r)
                        .await
                        .map(pull_response::Answer::Complete),
                    None => Err(Status::invalid_argument("a PullRequest without a call")),
                };
                // A refused call is answered on the stream, which stays open.
                let answer = answer.unwrap_or_else(|s| {
                    pull_response::Answer::Error(CallError {
                        code: s.code() as i32,
                        message: s.message().to_string(),
                    })
                });
                Ok(PullResponse {
                    answer: Some(answer),
                })
            }
        });
        let mut closing = self.inner.closing.subscribe();
        let stream: PullStream = Box::pin(UntilClosed {
            inner: Box::pin(answers),
            closing: Box::pin(async move {
                let _ = closing.wait_for(|c| *c).await;
            }),
        });
        Ok(Response::new(stream))
    }

    async fn fail(&self, req: Request<FailRequest>) -> Result<Response<FailResponse>, Status> {
        let req = req.into_inner();
        check_protocol(req.protocol)?;
        let kind = if req.released {
            tracing::info!(unit = %req.unit_id, worker = %req.worker_id, "unit released: {}", req.reason);
            "released"
        } else {
            tracing::warn!(unit = %req.unit_id, worker = %req.worker_id, retryable = req.retryable, "unit failed: {}", req.reason);
            if req.retryable {
                "retryable"
            } else {
                "final"
            }
        };
        metrics::counter!("compsafe_unit_failures_total", "kind" => kind).increment(1);
        let fault = match WireFault::try_from(req.fault).unwrap_or(WireFault::Unspecified) {
            WireFault::Input => Fault::Input,
            WireFault::Transient => Fault::Transient,
            WireFault::Internal => Fault::Internal,
            WireFault::Unspecified if req.retryable => Fault::Transient,
            WireFault::Unspecified => Fault::Input,
        };
        self.inner
            .handle
            .fail(
                req.worker_id,
                req.unit_id,
                req.lease_id,
                req.reason,
                fault,
                req.released,
            )
            .await?;
        Ok(Response::new(FailResponse {}))
    }
}

/// Serves both services, with auth, bounded messages and grpc.health.v1, on `listener` until
/// `shutdown` resolves.
pub async fn serve<S: Store>(
    coordinator: Coordinator<S>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let inner = coordinator.inner.clone();
    let shutdown = async move {
        shutdown.await;
        inner.closing.send_replace(true);
    };
    let auth = Auth::new(&coordinator.inner.cfg.token);
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = &coordinator.inner.cfg.tls {
        builder = builder.tls_config(
            tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(cert, key)),
        )?;
    }
    let sweeps = SweepsServer::new(coordinator.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let work = WorkServer::new(coordinator)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<SweepsServer<Coordinator<S>>>().await;
    reporter.set_serving::<WorkServer<Coordinator<S>>>().await;
    builder
        .add_service(health)
        .add_service(InterceptedService::new(sweeps, auth.clone()))
        .add_service(InterceptedService::new(work, auth))
        .serve_with_incoming_shutdown(
            // Small replies must not wait for the peer's delayed ACK (Nagle).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

/// Opens the SQLite store at `db` and serves on `listener` until `shutdown`.
pub async fn run(
    db: &std::path::Path,
    cfg: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let store = SqliteStore::open(db).map_err(|e| format!("{}: {e}", db.display()))?;
    let c = Coordinator::start(store, cfg).map_err(|e| e.to_string())?;
    serve(c, listener, shutdown)
        .await
        .map_err(|e| e.to_string())
}
