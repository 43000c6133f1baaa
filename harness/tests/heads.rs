//! `compsafe heads` on the fixture model: a stable ranking, and ablating the top-ranked heads
//! together lowers refusal more than ablating random sets of as many heads (seeded).

use std::path::Path;
use std::process::Command;

use compsafe_tests::root;

fn heads(extra: &[&str], out: &Path) -> (i32, serde_json::Value, String) {
    let o = Command::new(compsafe_tests::bin_path())
        .args(["heads", "--model"])
        .arg(root().join("models/tiny-safety"))
        .args([
            "--suite",
            "fixture-harmful",
            "--limit",
            "100",
            "--json",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let v = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o.status.code().unwrap_or(-1), v, err)
}

fn ranking(v: &serde_json::Value) -> Vec<(String, f64, f64)> {
    v["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["unit"].as_str().unwrap().to_string(),
                u["safety_impact"].as_f64().unwrap(),
                u["capability_impact"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn ranking_is_stable_and_top_heads_beat_random_heads() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, a, err) = heads(
        &["--confirm", "2", "--random-sets", "5"],
        &tmp.path().join("a"),
    );
    assert_eq!(code, 0, "{err}");
    let (code, b, err) = heads(&[], &tmp.path().join("b"));
    assert_eq!(code, 0, "{err}");
    let (ra, rb) = (ranking(&a), ranking(&b));
    assert_eq!(ra.len(), 8, "2 layers x 4 heads");
    assert_eq!(ra, rb, "two runs rank identically");
    for f in ["heads.json", "heads.md", "heads.html"] {
        assert!(tmp.path().join("a").join(f).is_file(), "{f}");
    }

    let c = &a["confirm"];
    let base = c["reference_refusal_rate"].as_f64().unwrap();
    let top = c["top_k_together_refusal_rate"].as_f64().unwrap();
    let random: Vec<f64> = c["random_sets_refusal_rates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let random_mean = random.iter().sum::<f64>() / random.len() as f64;
    eprintln!(
        "top-2 heads {:?}: refusal {base:.3} -> {top:.3}; random pairs {random:?} (mean {random_mean:.3})",
        &ra[..2]
    );
    assert_eq!(random.len(), 5);
    assert!(top < random_mean, "top {top} vs random {random_mean}");
    assert!(top < base, "ablating the top heads lowers refusal");
    // Each of the top 2 was confirmed alone.
    let confirmed = a["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["refusal_rate"].is_number())
        .count();
    assert_eq!(confirmed, 2);

    // Whole layers, and a suite that is not harmful, named by its flag.
    let (code, l, err) = heads(&["--unit", "layer"], &tmp.path().join("l"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(ranking(&l).len(), 2);
    let o = Command::new(compsafe_tests::bin_path())
        .args(["heads", "--model"])
        .arg(root().join("models/tiny-safety"))
        .args(["--suite", "fixture-benign", "--benign", "xstest-safe"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--suite"), "{err}");
}

/// `--unit mlp`: blocks of MLP channels, each ablated alone (its down_proj columns), cover
/// every channel of every layer once; the ranking is reproducible.
#[test]
fn mlp_channel_blocks_are_ranked() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, v, err) = heads(&["--unit", "mlp", "--channels", "128"], tmp.path());
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["unit"], "mlp");
    let units = v["ranking"].as_array().unwrap();
    assert_eq!(units.len(), 2 * 4, "2 layers x 512 channels / 128");
    for layer in 0..2 {
        let mut ranges: Vec<(u64, u64)> = units
            .iter()
            .filter(|u| u["layer"] == layer)
            .map(|u| {
                let c = u["channels"].as_array().unwrap();
                (c[0].as_u64().unwrap(), c[1].as_u64().unwrap())
            })
            .collect();
        ranges.sort_unstable();
        assert_eq!(ranges, [(0, 128), (128, 256), (256, 384), (384, 512)]);
    }
    // Every block matters to something: ablating it moves the benign likelihood.
    for u in units {
        assert!(u["capability_impact"].as_f64().unwrap().abs() > 1e-4, "{u}");
    }
    let again = tmp.path().join("again");
    let (_, v2, _) = heads(&["--unit", "mlp", "--channels", "128"], &again);
    assert_eq!(ranking(&v), ranking(&v2));
    let (code, _, err) = heads(&["--unit", "mlp", "--channels", "0"], tmp.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--channels"), "{err}");
}
