//! Helpers shared by the process-level tests: the compsafe binary, coordinator and worker
//! processes, sweep status and report comparison.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "process-test-token";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The compsafe binary with the test token in its environment.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_compsafe"));
    c.env("COMPSAFE_TOKEN", TOKEN);
    c
}

pub fn without_run_identity(mut v: serde_json::Value) -> serde_json::Value {
    for k in ["id", "started_at", "finished_at"] {
        v["sweep"].as_object_mut().unwrap().remove(k);
    }
    v
}

pub fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// Starts `compsafe coordinator` on `listen` with `extra` flags; returns it and its URL.
pub fn coordinator(listen: &str, db: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = bin()
        .args([
            "coordinator",
            "--listen",
            listen,
            "--db",
            db.to_str().unwrap(),
        ])
        .args(extra)
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

/// Starts `compsafe worker` against `url`, optionally inside a network namespace.
pub fn worker(url: &str, netns: Option<&str>) -> Child {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_compsafe")]);
            c.env("COMPSAFE_TOKEN", TOKEN);
            c
        }
        None => bin(),
    };
    cmd.args(["worker", "--coordinator", url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `compsafe status --json`, or `None` while the coordinator is unreachable.
pub fn status(url: &str, id: &str) -> Option<serde_json::Value> {
    let o = bin()
        .args(["status", id, "--json", "--coordinator", url])
        .output()
        .ok()?;
    serde_json::from_slice(&o.stdout).ok()
}

/// Waits until `done` units reach `at_least` (or the sweep finishes).
pub fn wait_done(url: &str, id: &str, at_least: u64, limit: Duration) -> serde_json::Value {
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

/// Sends `signal` (TERM, STOP, CONT, ...) to a process.
pub fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill -{signal} {pid}");
}

/// Submits `spec`; returns the sweep id.
pub fn submit(url: &str, spec: &Path) -> String {
    let o = bin()
        .args(["submit", spec.to_str().unwrap(), "--coordinator", url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// Writes the reports of sweep `id` into `out`.
pub fn fetch_report(url: &str, id: &str, out: &Path) {
    let o = bin()
        .args([
            "report",
            id,
            "--coordinator",
            url,
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Runs `spec` with `compsafe run` into `out`.
pub fn run(spec: &Path, out: &Path, extra: &[&str]) {
    let o = bin()
        .args([
            "run",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A child process killed when dropped, so that a failing test leaves no server behind.
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
