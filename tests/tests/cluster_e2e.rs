//! A sweep on an in-process cluster (coordinator on 127.0.0.1:0, 1 and 3 workers over real
//! gRPC) gives the same report as the sequential `compsafe run --direct` and as `compsafe run`;
//! an interrupted `compsafe run` resumes; calls without the right token are refused; TLS;
//! metrics; a spec whose model escapes the model root is refused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use compsafe_coordinator::{Config, Coordinator, SqliteStore};
use compsafe_proto::pb::{GetRequest, ListRequest, SubmitRequest};
use compsafe_proto::{connect, sweeps_client, BearerToken, PROTOCOL_VERSION};

use compsafe_tests::{assert_json_close, root, without_run_identity, TOKEN};

fn write_spec(dir: &Path) -> PathBuf {
    let model = root().join("engine/tests/fixtures/hf/llama-gqa");
    let spec = dir.join("sweep.toml");
    std::fs::write(
        &spec,
        format!(
            r#"variants = ["int4:g32", "prune:0.5"]
[sweep]
name = "cluster"
seed = 11
[model]
path = "{}"
[[suites]]
name = "advbench"
limit = 8
[[suites]]
name = "xstest-safe"
limit = 8
[generation]
max_new_tokens = 12
[stats]
bootstrap_resamples = 100
"#,
            model.display()
        ),
    )
    .unwrap();
    spec
}

fn read_report(dir: &Path) -> serde_json::Value {
    for f in [
        "report.json",
        "report.md",
        "report.html",
        "records.jsonl",
        "junit.xml",
    ] {
        assert!(dir.join(f).is_file(), "{f} written");
    }
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// The report of `compsafe run --direct` (sequential, no coordinator), without run identity.
fn direct_report(spec: &Path, out: &Path) -> serde_json::Value {
    let o = Command::new(compsafe_tests::bin_path())
        .args([
            "run",
            spec.to_str().unwrap(),
            "--direct",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    without_run_identity(read_report(out))
}

/// Starts a coordinator on port 0; returns its URL and a shutdown switch.
async fn coordinator(
    db: &Path,
    model_root: Option<PathBuf>,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut cfg = Config::with_token(TOKEN);
    cfg.model_root = model_root;
    let c = Coordinator::start(SqliteStore::open(db).unwrap(), cfg).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(compsafe_coordinator::serve(c, listener, async {
        let _ = rx.await;
    }));
    (url, tx)
}

/// Runs `spec` on a fresh cluster of `workers` workers and writes its reports into `out`.
fn cluster_report(spec: &Path, workers: usize, dir: &Path) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (url, id, stop) = rt.block_on(async {
        let (url, stop_coord) = coordinator(&dir.join("state.db"), None).await;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        for _ in 0..workers {
            let cfg = compsafe_worker::PullConfig {
                coordinator: url.clone(),
                token: TOKEN.into(),
                device: "cpu".into(),
                idle_poll: Duration::from_millis(50),
                ca_pem: None,
            };
            let runner = compsafe_worker::Runner::new(candle_core::Device::Cpu, None);
            tokio::spawn(compsafe_worker::pull_loop(cfg, runner, stop_rx.clone()));
        }
        let token = BearerToken::new(TOKEN).unwrap();
        let mut c = sweeps_client(connect(&url, &token).await.unwrap());
        let id = c
            .submit(SubmitRequest {
                protocol: PROTOCOL_VERSION,
                spec_text: std::fs::read_to_string(spec).unwrap(),
                spec_path: spec.display().to_string(),
            })
            .await
            .unwrap()
            .into_inner()
            .sweep_id;
        let mut watch = c
            .watch(GetRequest {
                protocol: PROTOCOL_VERSION,
                sweep_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut last = None;
        while let Some(s) = watch.message().await.unwrap() {
            last = Some(s);
        }
        let last = last.unwrap();
        assert_eq!(last.state, "done", "{last:?}");
        assert_eq!(last.done, last.total);
        (url, id, (stop_tx, stop_coord))
    });
    let out = dir.join("out");
    let o = Command::new(compsafe_tests::bin_path())
        .args([
            "report",
            &id,
            "--coordinator",
            &url,
            "--out",
            out.to_str().unwrap(),
        ])
        .env("COMPSAFE_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(compsafe_tests::bin_path())
        .args(["status", &id, "--coordinator", &url])
        .env("COMPSAFE_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(": done"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let (stop_workers, stop_coord) = stop;
    let _ = stop_workers.send(true);
    let _ = stop_coord.send(());
    rt.shutdown_timeout(Duration::from_secs(5));
    read_report(&out)
}

#[test]
fn cluster_report_equals_direct_run_with_1_and_3_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path());
    let local = direct_report(&spec, &tmp.path().join("local"));
    // `compsafe run`: the in-process cluster with two workers; whole suites per unit give
    // the same batches as the direct run, so the same numbers to the bit.
    let run = |dir: &str, per_unit: &str| {
        let out = tmp.path().join(dir);
        let o = Command::new(compsafe_tests::bin_path())
            .args([
                "run",
                spec.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--workers",
                "2",
                "--prompts-per-unit",
                per_unit,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            out.join("sweep.db").is_file(),
            "state kept in the output directory"
        );
        without_run_identity(read_report(&out))
    };
    assert_eq!(
        run("run", "0"),
        local,
        "compsafe run differs from compsafe run --direct"
    );
    // Units of 3 prompts batch differently: the same verdicts, counts and responses, and
    // logit statistics equal up to float rounding.
    assert_json_close(&run("run3", "3"), &local, 1e-6, "$");
    for workers in [1, 3] {
        let dir = tmp.path().join(format!("cluster{workers}"));
        std::fs::create_dir_all(&dir).unwrap();
        let got = without_run_identity(cluster_report(&spec, workers, &dir));
        assert_eq!(
            got, local,
            "{workers} workers: the cluster report differs from the local one"
        );
    }
}

#[test]
fn calls_without_the_right_token_are_unauthenticated() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (url, _stop) = coordinator(&tmp.path().join("s.db"), None).await;
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut bare = compsafe_proto::pb::sweeps_client::SweepsClient::new(channel);
        let e = bare
            .list(ListRequest {
                protocol: PROTOCOL_VERSION,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let wrong = BearerToken::new("s3cret-tokem").unwrap();
        let mut c = sweeps_client(connect(&url, &wrong).await.unwrap());
        let e = c
            .list(ListRequest {
                protocol: PROTOCOL_VERSION,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let mut w = compsafe_proto::work_client(connect(&url, &wrong).await.unwrap());
        let e = w
            .register(compsafe_proto::pb::RegisterRequest {
                protocol: PROTOCOL_VERSION,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let right = BearerToken::new(TOKEN).unwrap();
        let mut c = sweeps_client(connect(&url, &right).await.unwrap());
        assert!(c
            .list(ListRequest {
                protocol: PROTOCOL_VERSION
            })
            .await
            .is_ok());
        let e = c.list(ListRequest { protocol: 99 }).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    });
}

#[test]
fn a_model_outside_the_model_root_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path());
    let models = tmp.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (url, _stop) = coordinator(&tmp.path().join("s.db"), Some(models)).await;
        let token = BearerToken::new(TOKEN).unwrap();
        let mut c = sweeps_client(connect(&url, &token).await.unwrap());
        let e = c
            .submit(SubmitRequest {
                protocol: PROTOCOL_VERSION,
                spec_text: std::fs::read_to_string(&spec).unwrap(),
                spec_path: spec.display().to_string(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("model.path") && e.message().contains("outside the model root"),
            "{}",
            e.message()
        );
    });
}

#[test]
fn a_coordinator_restarted_on_its_database_finishes_the_same_report() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path());
    let local = direct_report(&spec, &tmp.path().join("local"));

    let db = tmp.path().join("state.db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = |listener: tokio::net::TcpListener| {
        let mut cfg = Config::with_token(TOKEN);
        cfg.sched.lease_ttl_ms = 1_500;
        let c = Coordinator::start(SqliteStore::open(&db).unwrap(), cfg).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(compsafe_coordinator::serve(c, listener, async {
            let _ = rx.await;
        }));
        (tx, server)
    };
    let (url, id, stop_workers) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let (stop, server) = start(listener);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        for _ in 0..2 {
            let cfg = compsafe_worker::PullConfig {
                coordinator: url.clone(),
                token: TOKEN.into(),
                device: "cpu".into(),
                idle_poll: Duration::from_millis(50),
                ca_pem: None,
            };
            let runner = compsafe_worker::Runner::new(candle_core::Device::Cpu, None);
            tokio::spawn(compsafe_worker::pull_loop(cfg, runner, stop_rx.clone()));
        }
        let token = BearerToken::new(TOKEN).unwrap();
        let mut c = sweeps_client(connect(&url, &token).await.unwrap());
        let id = c
            .submit(SubmitRequest {
                protocol: PROTOCOL_VERSION,
                spec_text: std::fs::read_to_string(&spec).unwrap(),
                spec_path: spec.display().to_string(),
            })
            .await
            .unwrap()
            .into_inner()
            .sweep_id;
        let get = GetRequest {
            protocol: PROTOCOL_VERSION,
            sweep_id: id.clone(),
        };
        // Stop the coordinator once the first unit is in, mid-sweep.
        loop {
            let s = c.get(get.clone()).await.unwrap().into_inner();
            if s.done >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = stop.send(());
        server.await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Restart on the same database and address; the workers reconnect.
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let (stop, _server) = start(listener);
        let mut c = sweeps_client(connect(&url, &token).await.unwrap());
        loop {
            let s = c.get(get.clone()).await.unwrap().into_inner();
            assert!(s.state == "running" || s.state == "done", "{s:?}");
            if s.state == "done" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::mem::forget(stop);
        (url, id, stop_tx)
    });
    let out = tmp.path().join("out");
    let o = Command::new(compsafe_tests::bin_path())
        .args([
            "report",
            &id,
            "--coordinator",
            &url,
            "--out",
            out.to_str().unwrap(),
        ])
        .env("COMPSAFE_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = stop_workers.send(true);
    rt.shutdown_timeout(Duration::from_secs(5));
    assert_eq!(without_run_identity(read_report(&out)), local);
}

#[test]
fn an_interrupted_run_resumes_where_it_stopped() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path());
    // The uninterrupted run with the same unit size.
    let clean = tmp.path().join("clean");
    let o = Command::new(compsafe_tests::bin_path())
        .args([
            "run",
            spec.to_str().unwrap(),
            "--out",
            clean.to_str().unwrap(),
            "--prompts-per-unit",
            "2",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let clean = without_run_identity(read_report(&clean));
    let out = tmp.path().join("run");
    let resume = |out: &Path| {
        Command::new(compsafe_tests::bin_path())
            .args([
                "run",
                spec.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--resume",
            ])
            .output()
            .unwrap()
    };
    // Nothing to resume yet: an input error.
    let o = resume(&out);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("sweep.db"));

    let mut child = Command::new(compsafe_tests::bin_path())
        .args([
            "run",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--prompts-per-unit",
            "2",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Progress lines read "<id> (cluster): running — 3/24 done, ..."; kill it mid-sweep.
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut sweep = None;
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        let done: Option<(u32, u32)> = line.split(" — ").nth(1).and_then(|c| {
            let (d, t) = c.split_once(" done")?.0.split_once('/')?;
            Some((d.parse().ok()?, t.parse().ok()?))
        });
        if let Some((d, t)) = done {
            if d >= 3 && d < t {
                sweep = line.split_whitespace().next().map(str::to_string);
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let sweep = sweep.unwrap_or_else(|| panic!("no mid-sweep progress line:\n{seen}"));
    assert!(!out.join("report.json").exists(), "killed before the end");

    let o = resume(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = read_report(&out);
    assert_eq!(
        got["sweep"]["id"],
        sweep.as_str(),
        "the same sweep continued"
    );
    assert_eq!(without_run_identity(got), clean);
}
