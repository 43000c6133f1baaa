//! The deployment files: the Helm chart renders (offline) to the committed examples in
//! deploy/k8s/, the rendered manifests are wired together, and every compsafe flag and
//! COMPSAFE_* variable the manifests, Dockerfiles and scripts use exists in the binary.
//! (Schema validation, shellcheck and hadolint run in scripts/check-deploy.sh.)

#[path = "deploy/helm.rs"]
mod helm;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value as Json;

use compsafe_tests::root;

const RELEASE: helm::Release<'static> = helm::Release {
    name: "compsafe",
    namespace: "compsafe",
};

/// (values file, committed render) pairs under deploy/k8s/.
const EXAMPLES: [(&str, &str); 2] = [
    ("values-pvc.yaml", "compsafe.yaml"),
    ("values-hostpath.yaml", "compsafe-hostpath.yaml"),
];

fn render_example(values: &str) -> String {
    let k8s = root().join("deploy/k8s");
    let over = helm::read_yaml(&k8s.join(values)).unwrap();
    let body = helm::render(&root().join("deploy/helm/compsafe"), Some(&over), &RELEASE)
        .unwrap_or_else(|e| panic!("{values}: {e}"));
    format!(
        "# Rendered from deploy/helm/compsafe with deploy/k8s/{values} (release and namespace \
         \"compsafe\").\n# Regenerate: COMPSAFE_BLESS=1 cargo test --release --workspace --test deploy\n{body}"
    )
}

#[test]
fn chart_renders_to_the_committed_examples() {
    let k8s = root().join("deploy/k8s");
    for (values, out) in EXAMPLES {
        let rendered = render_example(values);
        let path = k8s.join(out);
        if std::env::var_os("COMPSAFE_BLESS").is_some() {
            std::fs::write(&path, &rendered).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap();
        if committed != rendered {
            let line = committed
                .lines()
                .zip(rendered.lines())
                .position(|(a, b)| a != b)
                .map_or_else(
                    || "at the end".to_string(),
                    |i| format!("at line {}", i + 1),
                );
            panic!(
                "deploy/k8s/{out} differs from the chart's render with {values} ({line}); \
                 regenerate it with COMPSAFE_BLESS=1"
            );
        }
    }
}

#[test]
fn chart_refuses_a_release_without_a_token() {
    let e = helm::render(&root().join("deploy/helm/compsafe"), None, &RELEASE).unwrap_err();
    assert!(e.contains("token.existingSecret"), "{e}");
}

fn by_kind<'a>(docs: &'a [Json], kind: &str) -> Vec<&'a Json> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn args_of(container: &Json) -> Vec<String> {
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("--{name}=")))
        .unwrap_or_else(|| panic!("--{name} missing from {args:?}"))
}

fn port_named(container: &Json, name: &str) -> i64 {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name}"))["containerPort"]
        .as_i64()
        .unwrap()
}

#[test]
fn rendered_manifests_are_wired_together() {
    for (values, _) in EXAMPLES {
        let docs = helm::documents(&render_example(values)).unwrap();
        let sts = by_kind(&docs, "StatefulSet");
        let svc = by_kind(&docs, "Service");
        let dep = by_kind(&docs, "Deployment");
        assert_eq!((sts.len(), svc.len(), dep.len()), (1, 1, 1), "{values}");
        let (sts, svc, dep) = (sts[0], svc[0], dep[0]);

        // Coordinator: one replica, its database on the claim template, probes on gRPC.
        assert_eq!(sts["spec"]["replicas"], 1);
        let pod = &sts["spec"]["template"];
        let c = &pod["spec"]["containers"][0];
        let args = args_of(c);
        assert_eq!(args[0], "coordinator");
        let grpc = port_named(c, "grpc");
        assert_eq!(flag(&args, "listen"), format!("0.0.0.0:{grpc}"));
        let claim = &sts["spec"]["volumeClaimTemplates"][0];
        let state = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == claim["metadata"]["name"])
            .expect("the claim is mounted");
        let db = flag(&args, "db");
        assert!(
            db.starts_with(&format!("{}/", state["mountPath"].as_str().unwrap())),
            "{db} is on the state volume"
        );
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            assert_eq!(c[probe]["grpc"]["port"], grpc, "{probe}");
        }
        let metrics = port_named(c, "metrics");
        assert_eq!(flag(&args, "metrics-listen"), format!("0.0.0.0:{metrics}"));
        let scrape = &pod["metadata"]["annotations"];
        if values == "values-pvc.yaml" {
            assert_eq!(scrape["prometheus.io/port"], metrics.to_string());
            assert_eq!(
                svc["metadata"]["annotations"]["prometheus.io/scrape"],
                "true"
            );
        } else {
            assert!(scrape.is_null(), "scraping is off in {values}");
        }

        // The Service selects the coordinator pod and carries both ports.
        let labels = &pod["metadata"]["labels"];
        for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
            assert_eq!(&labels[k], v, "selector {k}");
        }
        let svc_ports: BTreeMap<&str, i64> = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["port"].as_i64().unwrap()))
            .collect();
        assert_eq!(svc_ports["grpc"], grpc);
        assert_eq!(sts["spec"]["serviceName"], svc["metadata"]["name"]);

        // Workers reach the coordinator through the Service, one GPU each.
        let w = &dep["spec"]["template"]["spec"]["containers"][0];
        let wargs = args_of(w);
        assert_eq!(wargs[0], "worker");
        assert_eq!(
            flag(&wargs, "coordinator"),
            format!(
                "http://{}:{}",
                svc["metadata"]["name"].as_str().unwrap(),
                grpc
            )
        );
        assert_eq!(w["resources"]["limits"]["nvidia.com/gpu"], 1);
        assert_eq!(w["resources"]["requests"]["nvidia.com/gpu"], 1);
        let expected_replicas = if values == "values-pvc.yaml" { 4 } else { 8 };
        assert_eq!(dep["spec"]["replicas"], expected_replicas);
        // Both read the models at the model root they enforce.
        for (cont, pod_spec, a) in [
            (c, &pod["spec"], &args),
            (w, &dep["spec"]["template"]["spec"], &wargs),
        ] {
            let root = flag(a, "model-root");
            let m = cont["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["mountPath"] == root)
                .expect("model root mounted");
            assert_eq!(m["readOnly"], true);
            let vol = pod_spec["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == m["name"])
                .expect("model volume");
            assert_eq!(vol.as_object().unwrap().len(), 2, "one source: {vol}");
            assert_eq!(pod_spec["securityContext"]["runAsNonRoot"], true);
        }

        // The token: from the Secret the chart made, or from the named existing one.
        let secrets = by_kind(&docs, "Secret");
        for cont in [c, w] {
            let env = &cont["env"][0];
            assert_eq!(env["name"], "COMPSAFE_TOKEN");
            let name = &env["valueFrom"]["secretKeyRef"]["name"];
            match secrets.first() {
                Some(s) => {
                    assert_eq!(&s["metadata"]["name"], name);
                    assert_eq!(s["data"]["token"], "Y2hhbmdlLW1l"); // "change-me"
                }
                None => assert_eq!(name, "compsafe-token"),
            }
        }
    }
}

/// A compsafe command found in a deployment file.
#[derive(Debug)]
struct Invocation {
    file: String,
    subcommand: String,
    flags: Vec<String>,
}

/// Shell-like words of `line` with quotes, brackets and commas of JSON arrays taken off; a
/// command substitution `x=$(cmd` yields `$(` and `cmd`.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for w in line.split_whitespace() {
        let w = match w.rfind("$(") {
            Some(at) => {
                out.push("$(".to_string());
                &w[at + 2..]
            }
            None => w,
        };
        let w = w.trim_matches(|c: char| matches!(c, '[' | ']' | '"' | '\'' | ',' | ')'));
        if !w.is_empty() {
            out.push(w.to_string());
        }
    }
    out
}

fn is_compsafe(word: &str) -> bool {
    word == "compsafe" || word.ends_with("/compsafe")
}

/// Words after which the next word is a command.
const COMMAND_START: [&str; 16] = [
    "$(", "exec", "until", "while", "if", "!", "then", "do", "&&", "||", "|", ";", "CMD", "RUN",
    "time", "-",
];

/// Words that end a command's arguments.
fn ends_command(w: &str) -> bool {
    ["|", "||", "&&", ";", "then", "do"].contains(&w) || w.starts_with('>') || w.starts_with("2>")
}

/// compsafe invocations in the logical lines (backslash continuations joined) of a file.
fn invocations_in_text(file: &str, text: &str, prefix: &[String]) -> Vec<Invocation> {
    let joined = text.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let t = line.trim_start();
        if t.starts_with('#') {
            continue;
        }
        let mut ws = words(line);
        if !prefix.is_empty() && t.starts_with("CMD") {
            ws = prefix
                .iter()
                .cloned()
                .chain(ws.into_iter().skip(1))
                .collect();
        }
        let mut i = 0;
        while i < ws.len() {
            let at_command = i == 0 || COMMAND_START.contains(&ws[i - 1].as_str());
            if at_command && is_compsafe(&ws[i]) && i + 1 < ws.len() {
                let sub = ws[i + 1].clone();
                let mut flags = Vec::new();
                let mut j = i + 2;
                while j < ws.len() && !ends_command(&ws[j]) {
                    if let Some(f) = ws[j].strip_prefix("--") {
                        flags.push(f.split('=').next().unwrap().to_string());
                    }
                    j += 1;
                }
                out.push(Invocation {
                    file: file.to_string(),
                    subcommand: sub,
                    flags,
                });
                i = j;
            } else {
                i += 1;
            }
        }
    }
    out
}

/// compsafe invocations in rendered manifests: containers whose command is compsafe.
fn invocations_in_manifests(file: &str, text: &str) -> Vec<Invocation> {
    let mut out = Vec::new();
    for doc in helm::documents(text).unwrap() {
        let spec = &doc["spec"]["template"]["spec"];
        for c in spec["containers"].as_array().into_iter().flatten() {
            let mut argv: Vec<String> = c["command"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(c["args"].as_array().into_iter().flatten())
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
            if argv.first().is_some_and(|a| is_compsafe(a)) {
                argv.remove(0);
                out.push(Invocation {
                    file: file.to_string(),
                    subcommand: argv[0].clone(),
                    flags: argv[1..]
                        .iter()
                        .filter_map(|a| a.strip_prefix("--"))
                        .map(|f| f.split('=').next().unwrap().to_string())
                        .collect(),
                });
            }
        }
    }
    out
}

fn deploy_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root().join("deploy")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                // The chart's templates are checked through their renders in deploy/k8s.
                if !p.ends_with("templates") {
                    stack.push(p);
                }
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

fn help(args: &[&str]) -> String {
    let out = Command::new(compsafe_tests::bin_path())
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "compsafe {args:?} --help");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn flags_and_variables_in_deploy_files_exist_in_the_binary() {
    let top = help(&[]);
    let subcommands: BTreeSet<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(subcommands.contains("coordinator") && subcommands.contains("health"));
    let binary = std::fs::read(compsafe_tests::bin_path()).unwrap();

    let mut found = Vec::new();
    let mut variables = BTreeSet::new();
    for path in deploy_files() {
        let name = path.strip_prefix(root()).unwrap().display().to_string();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let file_name = path.file_name().unwrap().to_string_lossy();
        let script = file_name.starts_with("Dockerfile")
            || [".sh", ".sbatch", ".yml", ".env"]
                .iter()
                .any(|x| file_name.ends_with(x));
        if name.starts_with("deploy/k8s/compsafe") {
            found.extend(invocations_in_manifests(&name, &text));
        } else if script {
            // A Dockerfile's ENTRYPOINT ["compsafe"] runs its CMD's words as arguments.
            let prefix: Vec<String> = text
                .lines()
                .find(|l| l.starts_with("ENTRYPOINT") && l.contains("compsafe"))
                .map(|l| words(l).into_iter().skip(1).collect())
                .unwrap_or_default();
            found.extend(invocations_in_text(&name, &text, &prefix));
        }
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let mut rest = code.as_str();
        while let Some(at) = rest.find("COMPSAFE_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            variables.insert((tail[..end].to_string(), name.clone()));
            rest = &tail[end..];
        }
    }

    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for inv in &found {
        if !subcommands.contains(&inv.subcommand) {
            problems.push(format!(
                "{}: `compsafe {}` is not a subcommand",
                inv.file, inv.subcommand
            ));
            continue;
        }
        let h = helps
            .entry(inv.subcommand.clone())
            .or_insert_with(|| help(&[inv.subcommand.as_str()]));
        for f in &inv.flags {
            if !h.contains(&format!("--{f} ")) && !h.contains(&format!("--{f}\n")) {
                problems.push(format!(
                    "{}: `compsafe {} --{f}`: no such flag",
                    inv.file, inv.subcommand
                ));
            }
        }
    }
    for (var, file) in &variables {
        if !binary
            .windows(var.len())
            .any(|w| w == var.as_bytes() && var.len() > "COMPSAFE_".len())
        {
            problems.push(format!("{file}: {var} is not read by compsafe"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Not vacuous: the files use every service command and the nightly commands.
    let used: BTreeSet<&str> = found.iter().map(|i| i.subcommand.as_str()).collect();
    for sub in [
        "coordinator",
        "worker",
        "health",
        "submit",
        "watch",
        "report",
        "diff",
    ] {
        assert!(
            used.contains(sub),
            "no deployment file runs `compsafe {sub}`"
        );
    }
    let files: BTreeSet<&str> = found.iter().map(|i| i.file.as_str()).collect();
    assert!(files.len() >= 6, "{files:?}");
    assert!(variables.iter().any(|(v, _)| v == "COMPSAFE_TOKEN"));
    eprintln!(
        "checked {} invocations in {} files and {} variable uses",
        found.len(),
        files.len(),
        variables.len()
    );
}
