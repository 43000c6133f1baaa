//! Process-level faults: `compsafe coordinator` and two `compsafe worker` processes run the
//! quickstart sweep; one worker is killed with SIGKILL mid-sweep (and replaced), the
//! coordinator is killed with SIGKILL once and restarted on the same database, a worker gets
//! SIGTERM mid-unit (it releases its lease). The final report equals the fault-free one.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "kill-test-token";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_compsafe"));
    c.env("COMPSAFE_TOKEN", TOKEN);
    c
}

fn without_run_identity(mut v: serde_json::Value) -> serde_json::Value {
    for k in ["id", "started_at", "finished_at"] {
        v["sweep"].as_object_mut().unwrap().remove(k);
    }
    v
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// Starts a coordinator on `listen`; returns it and the address it reports.
fn coordinator(listen: &str, db: &Path) -> (Child, String) {
    let mut child = bin()
        .args([
            "coordinator",
            "--listen",
            listen,
            "--db",
            db.to_str().unwrap(),
            "--lease-ttl-ms",
            "3000",
            "--prompts-per-unit",
            "20",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map(Result::unwrap)
        .find_map(|l| {
            l.strip_prefix("coordinator listening on ")
                .and_then(|r| r.split(',').next())
                .map(str::to_string)
        })
        .expect("coordinator address");
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

fn worker(url: &str) -> Child {
    bin()
        .args(["worker", "--coordinator", url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn status(url: &str, id: &str) -> Option<serde_json::Value> {
    let o = bin()
        .args(["status", id, "--json", "--coordinator", url])
        .output()
        .ok()?;
    serde_json::from_slice(&o.stdout).ok()
}

/// Waits until `done` units reach `at_least` (or the sweep finishes).
fn wait_done(url: &str, id: &str, at_least: u64, limit: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        if let Some(s) = status(url, id) {
            if s["done"].as_u64().unwrap_or(0) >= at_least || s["state"] != "running" {
                return s;
            }
        }
        assert!(start.elapsed() < limit, "no progress within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(unix)]
fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
#[cfg(unix)]
fn kill_9_of_a_worker_and_the_coordinator_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = root().join("examples/quickstart.toml");

    // The fault-free report: `compsafe run` with the same unit size.
    let clean = tmp.path().join("clean");
    let o = bin()
        .args([
            "run",
            spec.to_str().unwrap(),
            "--out",
            clean.to_str().unwrap(),
            "--prompts-per-unit",
            "20",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let db = tmp.path().join("coordinator.db");
    let (mut coord, url) = coordinator("127.0.0.1:0", &db);
    let addr = url.trim_start_matches("http://").to_string();
    let mut workers = vec![worker(&url), worker(&url)];
    let o = bin()
        .args(["submit", spec.to_str().unwrap(), "--coordinator", &url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let total = status(&url, &id).unwrap()["total"].as_u64().unwrap();
    assert!(total >= 20, "{total} units");
    let limit = Duration::from_secs(600);

    // A worker dies mid-sweep; a new one takes its place.
    wait_done(&url, &id, 3, limit);
    workers[0].kill().unwrap();
    workers[0].wait().unwrap();
    workers[0] = worker(&url);

    // A worker is asked to stop mid-unit: it releases its lease and exits.
    wait_done(&url, &id, 8, limit);
    sigterm(&workers[1]);
    let exited = workers[1].wait().unwrap();
    assert!(exited.success(), "SIGTERM exits cleanly: {exited:?}");
    workers[1] = worker(&url);

    // The coordinator dies and comes back on the same database and address.
    wait_done(&url, &id, total / 2, limit);
    coord.kill().unwrap();
    coord.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (c2, _) = coordinator(&addr, &db);
    coord = c2;

    let last = wait_done(&url, &id, total, limit);
    assert_eq!(last["state"], "done", "{last}");
    assert_eq!(last["failed"], 0, "{last}");
    let out = tmp.path().join("faulty");
    let o = bin()
        .args([
            "report",
            &id,
            "--coordinator",
            &url,
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let _ = coord.kill();
    let _ = coord.wait();
    assert_eq!(
        without_run_identity(report(&out)),
        without_run_identity(report(&clean))
    );
}
