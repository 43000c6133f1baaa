//! The worker's pull loop: register, lease, run (renewing the lease meanwhile), complete or
//! fail; one unit at a time per device, the loaded model kept across units.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use compsafe_proto::pb::work_client::WorkClient;
use compsafe_proto::pb::{
    pull_request, pull_response, CompleteRequest, CompleteResponse, FailRequest, Fault,
    LeaseRequest, PullRequest, PullResponse, RegisterRequest, RenewRequest, WorkUnit,
};
use compsafe_proto::{
    connect_with, work_client, AuthChannel, BearerToken, UnitSpec, PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, watch};
use tonic::{Code, Status};

use compsafe_eval::{Runner, UnitError};

/// How a worker is run.
#[derive(Debug, Clone)]
pub struct PullConfig {
    /// `http://host:port` of the coordinator.
    pub coordinator: String,
    /// Bearer token.
    pub token: String,
    /// Device name reported at registration.
    pub device: String,
    /// Wait between lease requests when there is no work.
    pub idle_poll: Duration,
    /// CA certificate (PEM) for an `https://` coordinator.
    pub ca_pem: Option<Vec<u8>>,
}

/// Runs units from the coordinator until `shutdown` becomes true; a unit in progress then is
/// released (given back unfinished, without counting an attempt) so another worker takes it
/// at once. Connection failures are retried.
pub async fn pull_loop(
    cfg: PullConfig,
    runner: Runner,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let token = BearerToken::new(&cfg.token)?;
    let device = runner.advertised_device(&cfg.device);
    let runner = Arc::new(Mutex::new(runner));
    let mut backoff = Duration::from_millis(100);
    while !*shutdown.borrow() {
        match session(&cfg, &device, &token, &runner, &mut shutdown).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!("coordinator session ended: {e}; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    Ok(())
}

/// The wire form of a unit's failure kind.
fn fault(e: &UnitError) -> Fault {
    match e.fault {
        compsafe_eval::Fault::Input => Fault::Input,
        compsafe_eval::Fault::Transient => Fault::Transient,
        compsafe_eval::Fault::Internal => Fault::Internal,
    }
}

/// The runner; after a unit panicked while holding it, its caches are dropped (they may be
/// half-built) and it serves the next unit afresh.
fn lock(runner: &Mutex<Runner>) -> std::sync::MutexGuard<'_, Runner> {
    match runner.lock() {
        Ok(g) => g,
        Err(poisoned) => {
            let mut g = poisoned.into_inner();
            g.reset();
            runner.clear_poison();
            g
        }
    }
}

/// The session's Lease and Complete calls, on one Pull stream (opened on first use and again
/// after it breaks), or as unary calls to a coordinator without Pull.
struct Calls {
    client: WorkClient<AuthChannel>,
    stream: Option<(mpsc::Sender<PullRequest>, tonic::Streaming<PullResponse>)>,
    unary: bool,
}

impl Calls {
    fn new(client: WorkClient<AuthChannel>) -> Calls {
        Calls {
            client,
            stream: None,
            unary: false,
        }
    }

    /// One call: on the stream, or as the unary call when the coordinator has no Pull. A
    /// stream that broke while it sat idle (a unit can run for hours; a proxy or a coordinator
    /// restart may close it) is opened again once for the call, which is safe to repeat:
    /// results are idempotent and an unclaimed lease expires.
    async fn call(&mut self, call: pull_request::Call) -> Result<pull_response::Answer, Status> {
        if self.stream.is_some() {
            match self.exchange(call.clone()).await {
                Err(s) if s.code() == Code::Unavailable && self.stream.is_none() => {}
                answer => return answer,
            }
        }
        if !self.open().await? {
            return self.unary(call).await;
        }
        self.exchange(call).await
    }

    /// Opens the stream when there is none; false when the coordinator has no Pull (the calls
    /// are unary from then on).
    async fn open(&mut self) -> Result<bool, Status> {
        if self.unary {
            return Ok(false);
        }
        if self.stream.is_none() {
            let (tx, rx) = mpsc::channel(1);
            match self
                .client
                .pull(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
            {
                Ok(answers) => self.stream = Some((tx, answers.into_inner())),
                Err(s) if s.code() == Code::Unimplemented => {
                    self.unary = true;
                    return Ok(false);
                }
                Err(s) => return Err(s),
            }
        }
        Ok(true)
    }

    /// One call on the open stream. A broken stream is UNAVAILABLE, like a unary call that
    /// could not reach the coordinator; the next call opens a new one.
    async fn exchange(
        &mut self,
        call: pull_request::Call,
    ) -> Result<pull_response::Answer, Status> {
        let Some((tx, answers)) = &mut self.stream else {
            return Err(Status::unavailable("no Pull stream is open"));
        };
        let broken = |why: String| Status::unavailable(format!("the Pull stream broke: {why}"));
        if tx.send(PullRequest { call: Some(call) }).await.is_err() {
            self.stream = None;
            return Err(broken("the coordinator stopped reading it".into()));
        }
        match answers.message().await {
            Ok(Some(PullResponse {
                answer: Some(pull_response::Answer::Error(e)),
            })) => Err(Status::new(Code::from(e.code), e.message)),
            Ok(Some(PullResponse {
                answer: Some(answer),
            })) => Ok(answer),
            Ok(_) => {
                self.stream = None;
                Err(broken("it ended".into()))
            }
            Err(s) => {
                self.stream = None;
                Err(broken(s.message().to_string()))
            }
        }
    }

    /// The unary twin of a call, answered as the stream would answer it.
    async fn unary(&mut self, call: pull_request::Call) -> Result<pull_response::Answer, Status> {
        Ok(match call {
            pull_request::Call::Lease(r) => {
                pull_response::Answer::Lease(self.client.lease(r).await?.into_inner())
            }
            pull_request::Call::Complete(r) => {
                pull_response::Answer::Complete(self.client.complete(r).await?.into_inner())
            }
        })
    }

    async fn lease(&mut self, req: LeaseRequest) -> Result<Option<WorkUnit>, Status> {
        match self.call(pull_request::Call::Lease(req)).await? {
            pull_response::Answer::Lease(r) => Ok(r.unit),
            other => Err(Status::internal(format!("Lease answered {other:?}"))),
        }
    }

    async fn complete(&mut self, req: CompleteRequest) -> Result<CompleteResponse, Status> {
        match self.call(pull_request::Call::Complete(req)).await? {
            pull_response::Answer::Complete(r) => Ok(r),
            other => Err(Status::internal(format!("Complete answered {other:?}"))),
        }
    }
}

async fn session(
    cfg: &PullConfig,
    device: &str,
    token: &BearerToken,
    runner: &Arc<Mutex<Runner>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let mut client =
        work_client(connect_with(&cfg.coordinator, token, cfg.ca_pem.as_deref()).await?);
    let reg = client
        .register(RegisterRequest {
            protocol: PROTOCOL_VERSION,
            hostname: std::env::var("HOSTNAME").unwrap_or_default(),
            device: device.to_string(),
        })
        .await
        .map_err(|s| format!("register: {}", s.message()))?
        .into_inner();
    let worker_id = reg.worker_id;
    let renew_every = Duration::from_millis((reg.lease_ttl_ms / 3).max(50));
    tracing::info!(worker = %worker_id, %device, "registered");
    let mut calls = Calls::new(client.clone());
    // A unit leased together with the last result.
    let mut next: Option<WorkUnit> = None;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let leased = match next.take() {
            Some(unit) => Some(unit),
            None => {
                let loaded = lock(runner).loaded_models();
                calls
                    .lease(LeaseRequest {
                        protocol: PROTOCOL_VERSION,
                        worker_id: worker_id.clone(),
                        loaded_models: loaded,
                    })
                    .await
                    .map_err(|s| format!("lease: {}", s.message()))?
            }
        };
        let Some(unit) = leased else {
            tokio::select! {
                _ = tokio::time::sleep(cfg.idle_poll) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        let spec: Result<UnitSpec, _> = serde_json::from_str(&unit.unit_json);
        let outcome = match spec {
            Err(e) => Err(UnitError::input(format!(
                "unit {}: malformed description: {e}",
                unit.unit_id
            ))),
            Ok(spec) => {
                tracing::info!(unit = %unit.unit_id, kind = %spec.kind, variant = spec.variant, suite = spec.suite, "running");
                let r = runner.clone();
                let job = tokio::task::spawn_blocking(move || lock(&r).run(&spec));
                tokio::pin!(job);
                let mut ticker = tokio::time::interval(renew_every);
                ticker.tick().await;
                loop {
                    tokio::select! {
                        out = &mut job => break out.unwrap_or_else(|e| Err(UnitError::transient(format!("unit panicked: {e}")))),
                        _ = shutdown.changed() => {
                            tracing::info!(unit = %unit.unit_id, "shutting down: releasing the unit");
                            client
                                .fail(FailRequest {
                                    protocol: PROTOCOL_VERSION,
                                    worker_id: worker_id.clone(),
                                    unit_id: unit.unit_id.clone(),
                                    lease_id: unit.lease_id,
                                    reason: "released: its worker shut down".into(),
                                    retryable: true,
                                    released: true,
                                    fault: Fault::Transient as i32,
                                })
                                .await
                                .map_err(|s| format!("release: {}", s.message()))?;
                            return Ok(());
                        }
                        _ = ticker.tick() => {
                            if let Err(s) = client.renew(RenewRequest {
                                protocol: PROTOCOL_VERSION,
                                worker_id: worker_id.clone(),
                                unit_id: unit.unit_id.clone(),
                                lease_id: unit.lease_id,
                            }).await {
                                tracing::warn!(unit = %unit.unit_id, "renew refused: {}", s.message());
                            }
                        }
                    }
                }
            }
        };
        match outcome {
            Ok(result) => {
                let result_json = serde_json::to_string(&result).map_err(|e| e.to_string())?;
                let req = CompleteRequest {
                    protocol: PROTOCOL_VERSION,
                    worker_id: worker_id.clone(),
                    unit_id: unit.unit_id.clone(),
                    lease_id: unit.lease_id,
                    result_json,
                    lease_next: !*shutdown.borrow(),
                    loaded_models: lock(runner).loaded_models(),
                };
                // A coordinator that is restarting gets the result when it is back (while
                // the lease may still be current).
                let mut pause = Duration::from_millis(100);
                let deadline =
                    tokio::time::Instant::now() + Duration::from_millis(reg.lease_ttl_ms);
                let sent = loop {
                    let r = calls.complete(req.clone()).await;
                    match &r {
                        Err(s)
                            if s.code() == tonic::Code::Unavailable
                                && tokio::time::Instant::now() + pause < deadline =>
                        {
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(2));
                        }
                        _ => break r,
                    }
                };
                match sent {
                    Ok(r) => next = r.next,
                    Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                        tracing::warn!(unit = %unit.unit_id, "result refused: {}", s.message());
                    }
                    Err(s) => return Err(format!("complete: {}", s.message())),
                }
            }
            Err(e) => {
                tracing::warn!(unit = %unit.unit_id, fault = ?e.fault, "unit failed: {}", e.reason);
                match client
                    .fail(FailRequest {
                        protocol: PROTOCOL_VERSION,
                        worker_id: worker_id.clone(),
                        unit_id: unit.unit_id.clone(),
                        lease_id: unit.lease_id,
                        retryable: e.retryable(),
                        fault: fault(&e) as i32,
                        reason: e.reason,
                        released: false,
                    })
                    .await
                {
                    Ok(_) => {}
                    Err(s) if s.code() == tonic::Code::FailedPrecondition => {}
                    Err(s) => return Err(format!("fail: {}", s.message())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runner_poisoned_by_a_panicking_unit_is_reset_and_usable() {
        let runner = Arc::new(Mutex::new(Runner::new(candle_core::Device::Cpu, None)));
        let r = runner.clone();
        let panicked = std::thread::spawn(move || {
            let _g = r.lock().unwrap();
            panic!("a unit panicked");
        })
        .join();
        assert!(panicked.is_err());
        assert!(runner.is_poisoned());
        let g = lock(&runner);
        assert!(g.loaded_models().is_empty());
        drop(g);
        assert!(!runner.is_poisoned(), "the poison is cleared");
    }
}
