//! Offline rendering of the Helm chart: Go templates (the `gtmpl` crate) with the few Sprig
//! functions the chart uses, given Helm's semantics, and Helm's values, release and chart
//! objects. No cluster and no `helm` binary are needed.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use gtmpl::{Context, Func, FuncError, Template, Value};

/// Helm's `.Release` for a render.
pub struct Release<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
}

/// Reads a YAML file into JSON values.
pub fn read_yaml(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Helm's values merge: maps merge key by key, a null in `over` deletes the key, anything
/// else in `over` replaces `base`.
pub fn merge(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(k);
                    continue;
                }
                match b.get_mut(k) {
                    Some(slot) if v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        serde_json::Value::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                serde_json::Number::from_f64(n.as_f64().unwrap_or(f64::NAN))
                    .map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Object(m) | Value::Map(m) => {
            // Helm's toYaml writes map keys sorted.
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), to_json(&m[k]));
            }
            serde_json::Value::Object(out)
        }
    }
}

/// Go's `fmt.Sprint` of a template value, as Sprig's string functions see it.
fn text(v: &Value) -> String {
    match v {
        Value::NoValue | Value::Nil => String::new(),
        other => other.to_string(),
    }
}

/// Go's `%q` for the printable ASCII and common escapes the chart's values contain.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) | Value::Map(m) => m.is_empty(),
        Value::Function(_) => false,
    }
}

/// Sprig `quote`: each non-nil argument as a Go-quoted string, space separated.
fn quote(args: &[Value]) -> Result<Value, FuncError> {
    let parts: Vec<String> = args
        .iter()
        .filter(|a| !matches!(a, Value::Nil | Value::NoValue))
        .map(|a| go_quote(&text(a)))
        .collect();
    Ok(Value::String(parts.join(" ")))
}

/// Sprig `default DEFAULT VALUE`: VALUE unless it is empty.
fn default(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [d] => Ok(d.clone()),
        [d, v] => Ok(if is_empty(v) { d.clone() } else { v.clone() }),
        _ => Err(FuncError::ExactlyXArgs("default".into(), 2)),
    }
}

/// Helm `toYaml`: the value as YAML without the final newline.
fn to_yaml(args: &[Value]) -> Result<Value, FuncError> {
    let [v] = args else {
        return Err(FuncError::ExactlyXArgs("toYaml".into(), 1));
    };
    let y = serde_yaml_ng::to_string(&to_json(v)).map_err(|e| FuncError::Generic(e.to_string()))?;
    Ok(Value::String(y.trim_end_matches('\n').to_string()))
}

fn count(v: &Value, f: &str) -> Result<usize, FuncError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| FuncError::Generic(format!("{f}: the width must be a count"))),
        _ => Err(FuncError::Generic(format!(
            "{f}: the width must be a number"
        ))),
    }
}

fn indent_by(n: usize, s: &str) -> String {
    let pad = " ".repeat(n);
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

/// Sprig `indent N S`.
fn indent(args: &[Value]) -> Result<Value, FuncError> {
    let [n, s] = args else {
        return Err(FuncError::ExactlyXArgs("indent".into(), 2));
    };
    Ok(Value::String(indent_by(count(n, "indent")?, &text(s))))
}

/// Sprig `nindent N S`: a newline, then `indent N S`.
fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    let [n, s] = args else {
        return Err(FuncError::ExactlyXArgs("nindent".into(), 2));
    };
    Ok(Value::String(format!(
        "\n{}",
        indent_by(count(n, "nindent")?, &text(s))
    )))
}

/// Sprig `b64enc`.
fn b64enc(args: &[Value]) -> Result<Value, FuncError> {
    let [s] = args else {
        return Err(FuncError::ExactlyXArgs("b64enc".into(), 1));
    };
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(text(s)),
    ))
}

/// Helm `fail MESSAGE`: stops the render with the message.
fn fail(args: &[Value]) -> Result<Value, FuncError> {
    let msg: Vec<String> = args.iter().map(text).collect();
    Err(FuncError::Generic(msg.join(" ")))
}

const FUNCS: [(&str, Func); 7] = [
    ("quote", quote),
    ("default", default),
    ("toYaml", to_yaml),
    ("indent", indent),
    ("nindent", nindent),
    ("b64enc", b64enc),
    ("fail", fail),
];

/// Helm's order for installing the kinds this chart has (`helm template` sorts the same way).
fn kind_rank(kind: &str) -> usize {
    const ORDER: [&str; 7] = [
        "Secret",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Service",
        "Deployment",
        "StatefulSet",
        "Job",
    ];
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

/// Renders every manifest template of `chart` (files of `templates/` not starting with `_`,
/// NOTES.txt excepted) with the chart's values merged with `overrides`, in Helm's output
/// format (`---` and a `# Source:` line before each manifest).
pub fn render(
    chart: &Path,
    overrides: Option<&serde_json::Value>,
    release: &Release<'_>,
) -> Result<String, String> {
    let meta = read_yaml(&chart.join("Chart.yaml"))?;
    let mut values = read_yaml(&chart.join("values.yaml"))?;
    if let Some(o) = overrides {
        merge(&mut values, o);
    }
    let chart_name = meta["name"]
        .as_str()
        .ok_or("Chart.yaml: no name")?
        .to_string();
    let top = serde_json::json!({
        "Values": values,
        "Release": {
            "Name": release.name,
            "Namespace": release.namespace,
            "Service": "Helm",
            "IsInstall": true,
            "IsUpgrade": false,
            "Revision": 1,
        },
        "Chart": {
            "Name": chart_name,
            "Version": meta["version"],
            "AppVersion": meta["appVersion"],
        },
    });
    let ctx = Context::from(to_value(&top));
    let dir = chart.join("templates");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('_') && name != "NOTES.txt" && p.is_file()
        })
        .collect();
    files.sort();
    let mut docs: Vec<(usize, String, String)> = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let src = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let mut t = Template::with_name(name.clone());
        t.add_funcs(&FUNCS);
        t.parse(src)
            .map_err(|e| format!("{}: parse: {e}", f.display()))?;
        let out = t
            .render(&ctx)
            .map_err(|e| format!("{}: render: {e}", f.display()))?;
        let out = out.trim_matches('\n');
        if out.trim().is_empty() {
            continue;
        }
        let kind = out
            .lines()
            .find_map(|l| l.strip_prefix("kind: "))
            .unwrap_or("")
            .trim()
            .to_string();
        docs.push((kind_rank(&kind), name, out.to_string()));
    }
    docs.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut rendered = String::new();
    for (_, name, body) in docs {
        rendered.push_str(&format!(
            "---\n# Source: {chart_name}/templates/{name}\n{body}\n"
        ));
    }
    Ok(rendered)
}

/// The documents of a multi-document YAML stream (empty documents dropped).
pub fn documents(yaml: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let v: serde_json::Value =
            serde::Deserialize::deserialize(doc).map_err(|e| e.to_string())?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

#[test]
fn sprig_functions_follow_helm() {
    let n = |i: i64| Value::from(i);
    let s = |t: &str| Value::String(t.into());
    assert_eq!(text(&quote(&[s("a\"b")]).unwrap()), "\"a\\\"b\"");
    assert_eq!(text(&quote(&[n(9090)]).unwrap()), "\"9090\"");
    assert_eq!(text(&default(&[s("x"), s("")]).unwrap()), "x");
    assert_eq!(text(&default(&[s("x"), s("y")]).unwrap()), "y");
    assert_eq!(
        text(&nindent(&[n(2), s("a: 1\nb: 2")]).unwrap()),
        "\n  a: 1\n  b: 2"
    );
    assert_eq!(text(&b64enc(&[s("change-me")]).unwrap()), "Y2hhbmdlLW1l");
    let m = to_value(&serde_json::json!({"b": 1, "a": {"c": [1, "x"]}}));
    assert_eq!(
        text(&to_yaml(&[m]).unwrap()),
        "a:\n  c:\n  - 1\n  - x\nb: 1"
    );
    assert!(fail(&[s("boom")]).is_err());
    let mut base = serde_json::json!({"v": {"pvc": {"claim": "m"}, "keep": 1}});
    merge(
        &mut base,
        &serde_json::json!({"v": {"pvc": null, "hostPath": {"path": "/m"}}}),
    );
    assert_eq!(
        base,
        serde_json::json!({"v": {"keep": 1, "hostPath": {"path": "/m"}}})
    );
}
