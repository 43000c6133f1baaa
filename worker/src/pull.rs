//! The worker's pull loop: register, lease, run (renewing the lease meanwhile), complete or
//! fail; one unit at a time per device, the loaded model kept across units.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use compsafe_proto::pb::{
    CompleteRequest, FailRequest, LeaseRequest, RegisterRequest, RenewRequest,
};
use compsafe_proto::{connect_with, work_client, BearerToken, UnitSpec, PROTOCOL_VERSION};
use tokio::sync::watch;

use crate::unit::{Runner, UnitError};

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
    // A unit leased together with the last result.
    let mut next: Option<compsafe_proto::pb::WorkUnit> = None;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let leased = match next.take() {
            Some(unit) => Some(unit),
            None => {
                let loaded = lock(runner).loaded_models();
                client
                    .lease(LeaseRequest {
                        protocol: PROTOCOL_VERSION,
                        worker_id: worker_id.clone(),
                        loaded_models: loaded,
                    })
                    .await
                    .map_err(|s| format!("lease: {}", s.message()))?
                    .into_inner()
                    .unit
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
            Err(e) => Err(UnitError {
                reason: format!("unit {}: malformed description: {e}", unit.unit_id),
                retryable: false,
            }),
            Ok(spec) => {
                tracing::info!(unit = %unit.unit_id, variant = spec.variant, suite = spec.suite, "running");
                let r = runner.clone();
                let job = tokio::task::spawn_blocking(move || lock(&r).run(&spec));
                tokio::pin!(job);
                let mut ticker = tokio::time::interval(renew_every);
                ticker.tick().await;
                loop {
                    tokio::select! {
                        out = &mut job => break out.unwrap_or_else(|e| Err(UnitError { reason: format!("unit panicked: {e}"), retryable: true })),
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
                    let r = client.complete(req.clone()).await;
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
                    Ok(r) => next = r.into_inner().next,
                    Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                        tracing::warn!(unit = %unit.unit_id, "result refused: {}", s.message());
                    }
                    Err(s) => return Err(format!("complete: {}", s.message())),
                }
            }
            Err(e) => {
                tracing::warn!(unit = %unit.unit_id, retryable = e.retryable, "unit failed: {}", e.reason);
                match client
                    .fail(FailRequest {
                        protocol: PROTOCOL_VERSION,
                        worker_id: worker_id.clone(),
                        unit_id: unit.unit_id.clone(),
                        lease_id: unit.lease_id,
                        reason: e.reason,
                        retryable: e.retryable,
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
