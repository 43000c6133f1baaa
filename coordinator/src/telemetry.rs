//! Prometheus metrics: units per state, active workers, lease latency, results and failures.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::sched::Scheduler;
use crate::store::Store;

/// Lease latency buckets, seconds.
const LEASE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Serves `/metrics` in the Prometheus text format on `addr`. Must be called inside a tokio
/// runtime; at most once per process.
pub fn install(addr: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full("compsafe_lease_seconds".into()),
            LEASE_BUCKETS,
        )
        .map_err(|e| format!("metrics: {e}"))?
        .install()
        .map_err(|e| format!("metrics on {addr}: {e}"))?;
    metrics::describe_gauge!(
        "compsafe_units",
        "Work units of running sweeps, by state (queued, leased, done, failed)"
    );
    metrics::describe_gauge!(
        "compsafe_workers",
        "Workers that called within one lease duration"
    );
    metrics::describe_histogram!(
        "compsafe_lease_seconds",
        metrics::Unit::Seconds,
        "Time to answer a lease request"
    );
    metrics::describe_counter!("compsafe_leases_total", "Leases handed out");
    metrics::describe_counter!(
        "compsafe_results_total",
        "Results received, by outcome (accepted, duplicate, refused)"
    );
    metrics::describe_counter!(
        "compsafe_unit_failures_total",
        "Unit failures reported by workers, by kind (retryable, final, released)"
    );
    Ok(())
}

/// Sets the gauges from the scheduler's state.
pub fn record<S: Store>(sched: &mut Scheduler<S>, now: u64) {
    let totals = sched.totals();
    for (state, n) in ["queued", "leased", "done", "failed"]
        .into_iter()
        .zip(totals)
    {
        metrics::gauge!("compsafe_units", "state" => state).set(n as f64);
    }
    metrics::gauge!("compsafe_workers").set(sched.active_workers(now) as f64);
}
