//! Process-level faults: `compsafe coordinator` and two `compsafe worker` processes run the
//! quickstart sweep; one worker is killed with SIGKILL mid-sweep (and replaced), the
//! coordinator is killed with SIGKILL once and restarted on the same database, a worker gets
//! SIGTERM mid-unit (it releases its lease). The final report equals the fault-free one.

use std::time::Duration;

use compsafe_tests::*;

#[test]
#[cfg(unix)]
fn kill_9_of_a_worker_and_the_coordinator_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = root().join("examples/quickstart.toml");

    // The fault-free report: `compsafe run` with the same unit size.
    let clean = tmp.path().join("clean");
    run(&spec, &clean, &["--prompts-per-unit", "20"]);

    let db = tmp.path().join("coordinator.db");
    let flags = ["--lease-ttl-ms", "3000", "--prompts-per-unit", "20"];
    let (mut coord, url) = coordinator("127.0.0.1:0", &db, &flags);
    let addr = url.trim_start_matches("http://").to_string();
    let mut workers = vec![worker(&url, None), worker(&url, None)];
    let id = submit(&url, &spec);
    let total = status(&url, &id).unwrap()["total"].as_u64().unwrap();
    assert!(total >= 20, "{total} units");
    let limit = Duration::from_secs(600);

    // A worker dies mid-sweep; a new one takes its place.
    wait_done(&url, &id, 3, limit);
    workers[0].kill().unwrap();
    workers[0].wait().unwrap();
    workers[0] = worker(&url, None);

    // A worker is asked to stop mid-unit: it releases its lease and exits.
    wait_done(&url, &id, 8, limit);
    signal(workers[1].id(), "TERM");
    let exited = workers[1].wait().unwrap();
    assert!(exited.success(), "SIGTERM exits cleanly: {exited:?}");
    workers[1] = worker(&url, None);

    // The coordinator dies and comes back on the same database and address.
    wait_done(&url, &id, total / 2, limit);
    coord.kill().unwrap();
    coord.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    coord = coordinator(&addr, &db, &flags).0;

    let last = wait_done(&url, &id, total, limit);
    assert_eq!(last["state"], "done", "{last}");
    assert_eq!(last["failed"], 0, "{last}");
    let out = tmp.path().join("faulty");
    fetch_report(&url, &id, &out);
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
