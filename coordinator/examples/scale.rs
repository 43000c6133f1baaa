//! Scale benchmark (not a test): the coordinator on loopback with many simulated workers whose
//! runner returns at once. Prints unit completions per second and lease latency percentiles.
//!
//! `cargo run --release -p compsafe-coordinator --example scale -- [WORKERS] [UNITS] [MODE]`
//! (`scripts/scale-bench.sh` runs it with mimalloc and with the system allocator, alternately)
//!
//! MODE `stream` (default): workers deliver each result with `lease_next` on their Pull stream,
//! as `compsafe worker` does (one message each way per unit); `next`: the same as unary Complete
//! calls; `separate`: a unary Lease call and a unary Complete call per unit.

use std::time::{Duration, Instant};

// The allocator the `compsafe` binary uses (the system's with `--features system-alloc`).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/common/mod.rs"]
mod common;

use compsafe_proto::pb::{CompleteRequest, LeaseRequest, RegisterRequest, WorkUnit};
use compsafe_proto::{connect, work_client, BearerToken, PROTOCOL_VERSION};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let workers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let n_units: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let mode = args.next().unwrap_or_else(|| "stream".into());
    let (separate, stream) = match mode.as_str() {
        "stream" => (false, true),
        "next" => (false, false),
        "separate" => (true, false),
        other => panic!("MODE {other:?}: expected stream, next or separate"),
    };
    let tmp = std::env::temp_dir().join(format!("compsafe-scale-{}.db", std::process::id()));
    // Every unit is a reference unit of its own suite, so none waits for another.
    let (url, _server) = common::serve_sweep(&tmp, "t", n_units, std::future::pending()).await;
    let result = common::empty_result();
    let token = BearerToken::new("t").unwrap();
    // The clock starts once every worker is connected and registered.
    let ready = std::sync::Arc::new(tokio::sync::Barrier::new(workers + 1));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (url, token, result) = (url.clone(), token.clone(), result.clone());
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            // A thousand connections at once can overflow the accept queue: retry, as
            // `compsafe worker` does.
            let mut tries = 0;
            let (mut w, id) = loop {
                tries += 1;
                let attempt = async {
                    let mut w = work_client(connect(&url, &token).await?);
                    let r = w
                        .register(RegisterRequest {
                            protocol: PROTOCOL_VERSION,
                            ..Default::default()
                        })
                        .await
                        .map_err(|s| s.to_string())?;
                    Ok::<_, String>((w, r.into_inner().worker_id))
                };
                match attempt.await {
                    Ok(x) => break x,
                    Err(e) if tries < 20 => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                    }
                    Err(e) => panic!("register: {e}"),
                }
            };
            ready.wait().await;
            let mut latencies = Vec::new();
            let lease = LeaseRequest {
                protocol: PROTOCOL_VERSION,
                worker_id: id.clone(),
                loaded_models: vec![],
            };
            let complete = |u: WorkUnit| CompleteRequest {
                protocol: PROTOCOL_VERSION,
                worker_id: id.clone(),
                unit_id: u.unit_id,
                lease_id: u.lease_id,
                result_json: result.clone(),
                lease_next: !separate,
                loaded_models: vec![],
            };
            if stream {
                let mut s = common::Stream::open(&mut w).await;
                let t = Instant::now();
                let mut unit = s.lease(&id).await;
                latencies.push(t.elapsed());
                while let Some(u) = unit {
                    let t = Instant::now();
                    let r = s.complete(complete(u)).await.unwrap();
                    unit = r.next;
                    latencies.push(t.elapsed());
                }
                return latencies;
            }
            let t = Instant::now();
            let mut unit = w.lease(lease.clone()).await.unwrap().into_inner().unit;
            latencies.push(t.elapsed());
            while let Some(u) = unit {
                let t = Instant::now();
                let r = w.complete(complete(u)).await.unwrap().into_inner();
                unit = if separate {
                    let t = Instant::now();
                    let next = w.lease(lease.clone()).await.unwrap().into_inner().unit;
                    latencies.push(t.elapsed());
                    next
                } else {
                    latencies.push(t.elapsed());
                    r.next
                };
            }
            latencies
        }));
    }
    ready.wait().await;
    let started = Instant::now();
    let mut lat: Vec<Duration> = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
    println!(
        "{workers} workers, {n_units} units, {}: {:.0} completions/s, lease latency p50 {:?} p99 {:?} ({:.2?} total)",
        match (separate, stream) {
            (true, _) => "lease + complete",
            (_, true) => "complete with lease_next on a Pull stream",
            _ => "complete with lease_next",
        },
        f64::from(n_units) / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        elapsed
    );
    let _ = std::fs::remove_file(&tmp);
}
