//! The testkit: what the tests of every crate share — the workspace root, the `compsafe`
//! binary and its processes (coordinator, workers, a reaper that kills them), spec writers,
//! numeric comparisons with tolerances, and report helpers. The cross-crate tests (a cluster
//! end to end, fault injection, process kills, the deployment files) live in this crate's
//! `tests/`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bearer token the process tests' coordinators and clients share.
pub const TOKEN: &str = "process-test-token";

/// The workspace root (where `models/`, `suites/` and `examples/` are):
/// `$COMPSAFE_REPO_ROOT` when test binaries run away from their checkout (a GPU machine).
pub fn root() -> PathBuf {
    if let Some(r) = std::env::var_os("COMPSAFE_REPO_ROOT") {
        return PathBuf::from(r);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// A reference fixture's `expected.json` in `dir`.
pub fn expected(dir: &Path) -> serde_json::Value {
    let path = dir.join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON array of token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

/// A JSON array of numbers, as f32.
pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("an array of numbers")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

/// The `compsafe` binary of this build: `$COMPSAFE_BIN`, else the workspace's
/// `target/<profile>/compsafe` for the profile the tests were built in.
pub fn bin_path() -> PathBuf {
    if let Some(p) = std::env::var_os("COMPSAFE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let profile = if exe.components().any(|c| c.as_os_str() == "release") {
        "release"
    } else {
        "debug"
    };
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join(profile).join("compsafe")
}

/// The compsafe binary with the test token in its environment.
pub fn bin() -> Command {
    let mut c = Command::new(bin_path());
    c.env("COMPSAFE_TOKEN", TOKEN);
    c
}

/// Runs `compsafe ARGS`: exit code, stdout and stderr.
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).output().expect("compsafe runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `text` as `dir/name` and returns the path (a spec, a gate, a suite file).
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("writes the file");
    p
}

/// Asserts that `got` and `want` agree element by element within `rtol * |want| + atol`;
/// returns the largest relative difference, for the log.
pub fn assert_close(got: &[f32], want: &[f32], rtol: f32, atol: f32, what: &str) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f32;
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let tol = rtol * b.abs() + atol;
        let d = (a - b).abs();
        worst = worst.max(d / (b.abs() + atol));
        assert!(
            d <= tol,
            "{what}[{i}]: got {a}, want {b} (|diff| {d} > {tol})"
        );
    }
    worst
}

/// Asserts that two JSON documents are equal but for numbers, which may differ by `rel`
/// (relative); `at` names the place in messages.
pub fn assert_json_close(a: &serde_json::Value, b: &serde_json::Value, rel: f64, at: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            assert!(
                (x - y).abs() <= rel * x.abs().max(y.abs()).max(1e-12),
                "{at}: {x} vs {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: lengths");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_json_close(x, y, rel, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            let kx: Vec<&String> = x.keys().collect();
            let ky: Vec<&String> = y.keys().collect();
            assert_eq!(kx, ky, "{at}: keys");
            for (k, v) in x {
                assert_json_close(v, &y[k], rel, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
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
            c.args(["netns", "exec", ns]).arg(bin_path());
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
