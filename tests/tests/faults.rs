//! Fault injection: a sweep on the fixture model with one coordinator process and several
//! worker processes while the harness kills workers with SIGKILL at random moments, kills the
//! coordinator with SIGKILL and restarts it on the same database, pauses workers with SIGSTOP
//! beyond their lease deadline (their late results arrive after SIGCONT), and, where the
//! machine allows it, cuts a worker in its own network namespace off the network. Every round
//! ends with a report compared field by field to the fault-free one, and with its records
//! checked for lost and duplicated results.
//!
//! `COMPSAFE_FAULTS=full` runs until at least 100 worker kills and 10 coordinator restarts;
//! the default (CI) mode runs one smaller round that still kills, restarts, pauses and cuts.
//! Figures go to target/reliability/faults-<mode>.json.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use compsafe_tests::*;
use rand::{Rng, SeedableRng};

const TTL_MS: u64 = 1_000;

fn write_spec(dir: &Path, limit: usize) -> PathBuf {
    let spec = dir.join("faults.toml");
    std::fs::write(
        &spec,
        format!(
            r#"variants = ["int4:g32", "prune:0.5"]
[sweep]
name = "faults"
seed = 7
[model]
path = "{}"
[[suites]]
name = "advbench"
limit = {limit}
[[suites]]
name = "xstest-safe"
limit = {limit}
[generation]
max_new_tokens = 24
[stats]
bootstrap_resamples = 100
"#,
            root().join("engine/tests/fixtures/hf/llama-gqa").display()
        ),
    )
    .unwrap();
    spec
}

/// A network namespace with a veth pair to the host; removed on drop.
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
}

impl Netns {
    fn create() -> Option<Netns> {
        let id = std::process::id() % 10_000;
        let name = format!("csf{id}");
        let (host_if, ns_if) = (format!("csh{id}"), format!("csn{id}"));
        let octet = id % 250 + 1;
        let host_ip = format!("10.231.{octet}.1");
        let ns_ip = format!("10.231.{octet}.2");
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let ns = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
        };
        let ok = ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]) && ip(&["link", "set", &ns_if, "netns", &name])
            && ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if])
            && ip(&["link", "set", &host_if, "up"])
            && ip(&[
                "netns",
                "exec",
                &name,
                "ip",
                "addr",
                "add",
                &format!("{ns_ip}/30"),
                "dev",
                &ns_if,
            ])
            && ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"])
            && ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        ok.then_some(ns)
    }

    fn link(&self, up: bool) {
        let st = Command::new("ip")
            .args(["link", "set", &self.host_if, if up { "up" } else { "down" }])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
struct Tally {
    rounds: u32,
    worker_kills: u32,
    coordinator_restarts: u32,
    pauses: u32,
    partitions: u32,
    units: u64,
    results_lost: u64,
    results_duplicated: u64,
    reports_equal: u32,
}

/// (variant, suite, prompt id) of every record of a run.
fn record_keys(dir: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(dir.join("records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (f("variant"), f("suite"), f("prompt_id"))
        })
        .collect()
}

struct Quota {
    kills: u32,
    restarts: u32,
    pauses: u32,
    partitions: u32,
}

#[allow(clippy::too_many_arguments)]
fn round(
    seed: u64,
    spec: &Path,
    dir: &Path,
    clean: &Path,
    quota: &Quota,
    netns: Option<&Netns>,
    tally: &mut Tally,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let db = dir.join("coordinator.db");
    let ttl = TTL_MS.to_string();
    let flags = [
        "--lease-ttl-ms",
        ttl.as_str(),
        "--prompts-per-unit",
        "1",
        "--max-attempts",
        "1000",
    ];
    let (mut coord, url) = coordinator("0.0.0.0:0", &db, &flags);
    let port = url.rsplit(':').next().unwrap().to_string();
    let url = format!("http://127.0.0.1:{port}");
    let ns_url = netns.map(|n| format!("http://{}:{port}", n.host_ip));
    let mut workers: Vec<Child> = (0..3).map(|_| worker(&url, None)).collect();
    let mut ns_worker = ns_url
        .as_deref()
        .map(|u| worker(u, netns.map(|n| n.name.as_str())));
    let id = submit(&url, spec);
    let (mut kills, mut restarts, mut pauses, mut partitions) = (0, 0, 0, 0);
    let start = Instant::now();
    loop {
        let s = status(&url, &id);
        if let Some(s) = &s {
            if s["state"] != "running" {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "round {seed} stalled: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(rng.random_range(50..250)));
        let mut actions = Vec::new();
        if kills < quota.kills {
            actions.extend([0; 4]);
        }
        if restarts < quota.restarts {
            actions.push(1);
        }
        if pauses < quota.pauses {
            actions.push(2);
        }
        if partitions < quota.partitions && netns.is_some() {
            actions.push(3);
        }
        if actions.is_empty() {
            continue;
        }
        match actions[rng.random_range(0..actions.len())] {
            0 => {
                let i = rng.random_range(0..workers.len());
                workers[i].kill().unwrap();
                workers[i].wait().unwrap();
                workers[i] = worker(&url, None);
                kills += 1;
            }
            1 => {
                coord.kill().unwrap();
                coord.wait().unwrap();
                std::thread::sleep(Duration::from_millis(rng.random_range(50..500)));
                coord = coordinator(&format!("0.0.0.0:{port}"), &db, &flags).0;
                restarts += 1;
            }
            2 => {
                let pid = workers[rng.random_range(0..workers.len())].id();
                signal(pid, "STOP");
                std::thread::sleep(Duration::from_millis(TTL_MS + 500));
                signal(pid, "CONT");
                pauses += 1;
            }
            _ => {
                let ns = netns.unwrap();
                ns.link(false);
                std::thread::sleep(Duration::from_millis(TTL_MS + 500));
                ns.link(true);
                partitions += 1;
            }
        }
    }
    let last = status(&url, &id).unwrap();
    assert_eq!(last["state"], "done", "round {seed}: {last}");
    let out = dir.join("out");
    fetch_report(&url, &id, &out);
    for mut w in workers.into_iter().chain(ns_worker.take()) {
        let _ = w.kill();
        let _ = w.wait();
    }
    let _ = coord.kill();
    let _ = coord.wait();

    let want = record_keys(clean);
    let got = record_keys(&out);
    let mut counts: BTreeMap<&(String, String, String), u64> = BTreeMap::new();
    for k in &got {
        *counts.entry(k).or_default() += 1;
    }
    let lost = want.iter().filter(|k| !counts.contains_key(k)).count() as u64;
    let duplicated: u64 = counts.values().map(|n| n - 1).sum();
    let equal = without_run_identity(report(&out)) == without_run_identity(report(clean));
    tally.rounds += 1;
    tally.worker_kills += kills;
    tally.coordinator_restarts += restarts;
    tally.pauses += pauses;
    tally.partitions += partitions;
    tally.units += last["total"].as_u64().unwrap_or(0);
    tally.results_lost += lost;
    tally.results_duplicated += duplicated;
    tally.reports_equal += u32::from(equal);
    assert_eq!((lost, duplicated), (0, 0), "round {seed}");
    assert!(
        equal,
        "round {seed}: the report differs from the fault-free one"
    );
}

#[test]
#[cfg(unix)]
fn sweeps_survive_kills_restarts_pauses_and_partitions() {
    let full = std::env::var("COMPSAFE_FAULTS").is_ok_and(|m| m == "full");
    let tmp = tempfile::tempdir().unwrap();
    let limit = if full { 16 } else { 8 };
    let spec = write_spec(tmp.path(), limit);
    let clean = tmp.path().join("clean");
    run(&spec, &clean, &["--prompts-per-unit", "1"]);
    let netns = Netns::create();
    let quota = if full {
        Quota {
            kills: 25,
            restarts: 1,
            pauses: 1,
            partitions: 1,
        }
    } else {
        Quota {
            kills: 3,
            restarts: 1,
            pauses: 1,
            partitions: 1,
        }
    };
    let mut tally = Tally::default();
    let mut seed = 1;
    loop {
        let dir = tmp.path().join(format!("round{seed}"));
        std::fs::create_dir_all(&dir).unwrap();
        round(
            seed,
            &spec,
            &dir,
            &clean,
            &quota,
            netns.as_ref(),
            &mut tally,
        );
        seed += 1;
        // Rounds go on until the totals are reached (a round ends with its sweep).
        let (kills, restarts) = if full { (100, 10) } else { (3, 1) };
        let enough = tally.worker_kills >= kills
            && tally.coordinator_restarts >= restarts
            && tally.pauses >= 1
            && (netns.is_none() || tally.partitions >= 1);
        if enough || seed > 80 {
            break;
        }
    }
    let mode = if full { "full" } else { "ci" };
    let out = root().join("target/reliability");
    let _ = std::fs::create_dir_all(&out);
    let mut summary = serde_json::to_value(tally).unwrap();
    summary["mode"] = mode.into();
    summary["partitions_available"] = netns.is_some().into();
    let _ = std::fs::write(
        out.join(format!("faults-{mode}.json")),
        serde_json::to_string_pretty(&summary).unwrap(),
    );
    eprintln!("{summary}");
    assert!(tally.worker_kills > 0 && tally.coordinator_restarts > 0 && tally.pauses > 0);
    if full {
        assert!(
            tally.worker_kills >= 100 && tally.coordinator_restarts >= 10,
            "{summary}"
        );
    }
}
