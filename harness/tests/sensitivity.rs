//! Per-layer sensitivity: int2 applied to one fixture layer at a time shows that layer 0 alone
//! breaks the refusals (flagged, exit 1) while layer 1 alone does not; int8 breaks nothing.

use std::path::Path;
use std::process::{Command, Output};

use compsafe_tests::root;

fn sensitivity(args: &[&str], out: &Path) -> (Output, serde_json::Value) {
    let o = Command::new(compsafe_tests::bin_path())
        .arg("sensitivity")
        .arg("--model")
        .arg(root().join("models/tiny-safety"))
        .args(["--limit", "60", "--confirm"])
        .args(if args.contains(&"--suite") {
            &[][..]
        } else {
            &["--suite", "fixture-harmful"][..]
        })
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let json = std::fs::read_to_string(out.join("sensitivity.json"))
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(serde_json::Value::Null);
    (o, json)
}

fn f(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"))
}

#[test]
fn int2_on_layer_zero_alone_breaks_safety() {
    let tmp = tempfile::tempdir().unwrap();
    let (o, j) = sensitivity(&["--variant", "int2:g16"], tmp.path());
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(j["flagged"], serde_json::json!(["0"]), "{j}");
    let units = j["units"].as_array().unwrap();
    assert_eq!(units.len(), 2);
    assert_eq!(units[0]["unit"], "0", "ranked by refusal log-odds drop");
    assert_eq!(units[0]["tensors"], 7);
    assert!(f(&units[0], "refusal_logodds_drop") > f(&units[1], "refusal_logodds_drop"));
    assert!(f(&units[0], "refusal_rate") < f(&j["reference"], "refusal_rate") - 0.3);
    assert_eq!(units[1]["breaks_safety"], false);
    assert!(f(&units[0], "p_holm") < 0.05);
    // Compressing everything drifts further than compressing either layer alone.
    let all = &j["whole_variant"];
    assert_eq!(all["tensors"], 14);
    for u in units {
        for k in ["kld_harmful", "kld_benign"] {
            assert!(f(u, k) > 0.0 && f(u, k) < f(all, k), "{k}: {u} vs {all}");
        }
    }
    let md = std::fs::read_to_string(tmp.path().join("sensitivity.md")).unwrap();
    assert!(md.contains("| 1 | 0 | 7 |"), "{md}");
}

#[test]
fn int8_groups_break_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (o, j) = sensitivity(&["--variant", "int8", "--unit", "group"], tmp.path());
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let units = j["units"].as_array().unwrap();
    let names: std::collections::BTreeSet<&str> =
        units.iter().map(|u| u["unit"].as_str().unwrap()).collect();
    assert_eq!(names, ["0.attn", "0.mlp", "1.attn", "1.mlp"].into());
    for u in units {
        assert_eq!(u["breaks_safety"], false);
        assert!(f(u, "refusal_logodds_drop").abs() < 0.05, "{u}");
        assert!(f(u, "kld_harmful") < 1e-3, "{u}");
    }
}

#[test]
fn bad_arguments_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, want) in [
        (vec!["--variant", "heads:0.1"], "--variant"),
        (vec!["--variant", "int9"], "int9"),
        (vec!["--variant", "int4:g32", "--alpha", "2"], "--alpha"),
        (
            vec!["--variant", "int4:g32", "--suite", "fixture-sentiment"],
            "--suite",
        ),
    ] {
        let (o, _) = sensitivity(&args, tmp.path());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
