//! Analyses are work units: each analysis command writes the spec it runs (`spec.toml`), and
//! that spec run by `compsafe run` on two in-process workers, or submitted to a coordinator
//! serving two worker processes, gives the analysis's JSON the command gave alone; a searched
//! sweep lists the same searched divergences through `run` and through `submit`; a client
//! whose coordinator shuts down under it exits 3.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use compsafe_tests::{
    bin, coordinator, report, root, run, signal, submit, wait_done, worker, Reaper,
};
use serde_json::Value;

/// Drops what differs between two runs of the same work: wall-clock durations.
fn without_timings(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.ends_with("seconds"));
            m.values_mut().for_each(without_timings);
        }
        Value::Array(a) => a.iter_mut().for_each(without_timings),
        _ => {}
    }
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v: Value = serde_json::from_str(&text).unwrap();
    without_timings(&mut v);
    v
}

/// Runs `cmd`, which must finish with 0 (nothing flagged) or 1 (the analysis flagged a unit).
fn ran(cmd: &mut std::process::Command) {
    let o = cmd.output().unwrap();
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{cmd:?}: exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs an analysis command into `out`; returns the spec it wrote.
fn command(args: &[&str], out: &Path) -> PathBuf {
    let model = root().join("models/tiny-safety");
    ran(bin()
        .args(args)
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(out));
    let spec = out.join("spec.toml");
    assert!(spec.is_file(), "{args:?} wrote no spec.toml");
    spec
}

/// `compsafe run SPEC --workers 2`, which may exit 1 when the analysis flags something.
fn run_two_workers(spec: &Path, out: &Path) {
    ran(bin()
        .args(["run", spec.to_str().unwrap(), "--workers", "2", "--out"])
        .arg(out));
}

/// `compsafe report ID --out DIR`, which exits 1 like `run` when the analysis flags something.
fn fetch_report(url: &str, id: &str, out: &Path) {
    ran(bin()
        .args(["report", id, "--coordinator", url, "--out"])
        .arg(out));
}

const ANALYSES: [(&str, &[&str]); 4] = [
    (
        "heads",
        &[
            "heads",
            "--suite",
            "fixture-harmful",
            "--limit",
            "12",
            "--confirm",
            "2",
        ],
    ),
    (
        "sensitivity",
        &[
            "sensitivity",
            "--variant",
            "int2:g16",
            "--suite",
            "fixture-harmful",
            "--limit",
            "12",
            "--confirm",
        ],
    ),
    (
        "conditioned",
        &[
            "conditioned",
            "--variants",
            "int8,prune:0.5",
            "--limit",
            "12",
        ],
    ),
    (
        "search",
        &[
            "search",
            "--variant",
            "prune:0.5",
            "--suite",
            "fixture-harmful",
            "--limit",
            "8",
            "--budget",
            "8",
            "--suffix-len",
            "3",
            "--candidates",
            "4",
        ],
    ),
];

#[test]
fn each_analysis_gives_the_same_json_alone_on_two_workers_and_on_a_fleet() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    let (c, url) = coordinator("127.0.0.1:0", &db, &[]);
    let _coordinator = Reaper(c);
    let _workers = [Reaper(worker(&url, None)), Reaper(worker(&url, None))];
    for (stem, args) in ANALYSES {
        let alone = tmp.path().join(format!("{stem}-alone"));
        let spec = command(args, &alone);
        let want = json(&alone.join(format!("{stem}.json")));

        let two = tmp.path().join(format!("{stem}-two"));
        run_two_workers(&spec, &two);
        assert_eq!(
            json(&two.join(format!("{stem}.json"))),
            want,
            "{stem}: two in-process workers"
        );

        let id = submit(&url, &spec);
        let s = wait_done(&url, &id, u64::MAX, Duration::from_secs(600));
        assert_eq!(s["state"], "done", "{stem}: {s}");
        let fleet = tmp.path().join(format!("{stem}-fleet"));
        fetch_report(&url, &id, &fleet);
        assert_eq!(
            json(&fleet.join(format!("{stem}.json"))),
            want,
            "{stem}: submitted to a fleet"
        );
        if stem == "search" {
            // The searched divergences join the report alike through run and submit.
            let searched = |dir: &Path| -> Vec<Value> {
                report(dir)["divergences"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|d| d["searched"] == true)
                    .cloned()
                    .collect()
            };
            let local = tmp.path().join("search-run");
            run(&spec, &local, &[]);
            assert_eq!(searched(&fleet), searched(&local));
            let hits: u64 = want
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["search"]["greedy"]["hits"].as_u64().unwrap())
                .sum();
            assert_eq!(
                searched(&local).len() as u64,
                hits,
                "one divergence per confirmed greedy hit"
            );
        }
    }
}

#[test]
fn a_client_whose_coordinator_shuts_down_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    let (c, url) = coordinator("127.0.0.1:0", &db, &[]);
    let mut c = Reaper(c);
    // No worker: the sweep stays running while `watch` follows it.
    let id = submit(&url, &root().join("examples/quickstart.toml"));
    let mut watch = Reaper(
        bin()
            .args(["watch", &id, "--coordinator", &url])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(watch.0.try_wait().unwrap().is_none(), "watch ended early");
    signal(c.0.id(), "TERM");
    let start = Instant::now();
    while c.0.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the coordinator did not shut down with a watcher attached"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = loop {
        if let Some(s) = watch.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "watch did not end after its coordinator shut down"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(watch.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(3), "{err}");
}
