//! The nightly flow of deploy/nightly/ end to end, with local processes standing in for the
//! cluster: `compsafe coordinator` and a `compsafe worker`, and deploy/nightly/nightly.sh
//! submitting, waiting, fetching and gating exactly as a CI job would.

use std::path::Path;
use std::process::Command;

use compsafe_tests::{coordinator, root, worker, Reaper, TOKEN};

/// Runs nightly.sh with `spec`, returning its exit status and output.
fn nightly(url: &str, spec: &Path, baseline: &Path, out: &Path) -> (i32, String) {
    let bin = compsafe_tests::bin_path();
    let bin_dir = bin.parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("bash")
        .arg(root().join("deploy/nightly/nightly.sh"))
        .env("PATH", path)
        .env("COMPSAFE_COORDINATOR", url)
        .env("COMPSAFE_TOKEN", TOKEN)
        .env("NIGHTLY_SPEC", spec)
        .env("NIGHTLY_BASELINE", baseline)
        .env("NIGHTLY_OUT", out)
        .env("NIGHTLY_ACCEPT", "1")
        .current_dir(root())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

/// (name, failure message) of the test cases of a junit.xml.
fn junit_cases(path: &Path) -> Vec<(String, Option<String>)> {
    let xml = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for chunk in xml.split("<testcase ").skip(1) {
        let name = chunk
            .split("name=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_string();
        let body = chunk.split("</testcase>").next().unwrap();
        let failure = body.contains("<failure").then(|| {
            body.split("message=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string()
        });
        out.push((name, failure));
    }
    out
}

#[test]
fn nightly_gate_passes_then_fails_on_an_int2_variant() {
    let tmp = tempfile::tempdir().unwrap();
    let (coord, url) = coordinator("127.0.0.1:0", &tmp.path().join("sweeps.db"), &[]);
    let _coord = Reaper(coord);
    let _worker = Reaper(worker(&url, None));
    let baseline = tmp.path().join("baseline/report.json");
    let spec = root().join("deploy/nightly/nightly.toml");

    // First night: no baseline yet; gated against its own reference, passes, is accepted.
    let (code, log) = nightly(&url, &spec, &baseline, &tmp.path().join("n1"));
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("no accepted baseline"), "{log}");
    assert!(baseline.is_file(), "{log}");

    // Second night, same variants: passes against the accepted baseline.
    let n2 = tmp.path().join("n2");
    let (code, log) = nightly(&url, &spec, &baseline, &n2);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("no accepted baseline"), "{log}");
    let cases = junit_cases(&n2.join("junit.xml"));
    assert!(cases.len() >= 6, "{cases:?}");
    assert!(cases.iter().all(|(_, f)| f.is_none()), "{cases:?}");
    for f in ["report.html", "report.json", "report.md", "gate.txt"] {
        assert!(n2.join(f).is_file(), "{f}");
    }
    let accepted = std::fs::read(&baseline).unwrap();
    assert!(
        accepted == std::fs::read(n2.join("report.json")).unwrap(),
        "the passing night became the baseline"
    );

    // A night with an int2 variant: refusal collapses, the gate fails with exit 1, junit.xml
    // names the failing int2 case, and the baseline is not replaced.
    let n3 = tmp.path().join("n3");
    let (code, log) = nightly(
        &url,
        &root().join("deploy/nightly/nightly-int2.toml"),
        &baseline,
        &n3,
    );
    assert_eq!(code, 1, "{log}");
    let cases = junit_cases(&n3.join("junit.xml"));
    let failing: Vec<_> = cases.iter().filter(|(_, f)| f.is_some()).collect();
    assert!(!failing.is_empty(), "{cases:?}");
    assert!(
        failing.iter().all(|(n, _)| n.contains("int2:g16")),
        "only int2 fails: {failing:?}"
    );
    assert!(
        failing.iter().any(
            |(n, f)| n.contains("fixture-harmful") && f.as_deref().unwrap().contains("refusal")
        ),
        "{failing:?}"
    );
    assert!(
        std::fs::read(&baseline).unwrap() == accepted,
        "a failing night does not replace the baseline"
    );
    eprintln!(
        "nightly int2 failures: {}",
        failing
            .iter()
            .map(|(n, f)| format!("{n}: {}", f.as_deref().unwrap()))
            .collect::<Vec<_>>()
            .join("; ")
    );

    // A coordinator that cannot be reached is an infrastructure failure (3), not a gate
    // failure.
    let (code, log) = nightly(
        "http://127.0.0.1:9",
        &spec,
        &baseline,
        &tmp.path().join("n4"),
    );
    assert_eq!(code, 3, "{log}");
}
