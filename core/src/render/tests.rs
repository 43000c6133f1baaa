//! Tests of the renderers, and the hand-built reports shared with the gate's tests.

use super::*;
use crate::gate::{self, GateFailure, GateOutcome, Rule};
use crate::report::{
    Direction, Divergence, FileInfo, Integrity, Logits, ModelInfo, SweepInfo, TensorError,
    VariantInfo, VsReference, WeightError, SCHEMA,
};
use crate::stats;

mod html;
mod reports;

pub(crate) use reports::*;

fn check_entity(s: &str) -> Result<usize, String> {
    let end = s
        .find(';')
        .ok_or_else(|| format!("unterminated entity at {s:.20}"))?;
    let name = &s[1..end];
    let ok = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
        || (name.starts_with("#x") && u32::from_str_radix(&name[2..], 16).is_ok())
        || (name.starts_with('#') && name[1..].parse::<u32>().is_ok());
    if ok {
        Ok(end + 1)
    } else {
        Err(format!("bad entity &{name};"))
    }
}

fn check_text(t: &str) -> Result<(), String> {
    let mut i = 0;
    while let Some(j) = t[i..].find(['&', '>']) {
        let at = i + j;
        if t[at..].starts_with('>') {
            i = at + 1;
            continue;
        }
        i = at + check_entity(&t[at..])?;
    }
    if let Some(c) = t
        .chars()
        .find(|c| (*c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(format!("control character {:?} in text", c));
    }
    Ok(())
}

/// Checks that `xml` is well formed (one root element); returns the number of elements.
pub(crate) fn well_formed(xml: &str) -> Result<usize, String> {
    let mut s = xml.trim_start();
    if let Some(rest) = s.strip_prefix("<?xml") {
        s = &rest[rest.find("?>").ok_or("unterminated declaration")? + 2..];
    }
    let mut stack: Vec<String> = Vec::new();
    let mut elements = 0usize;
    let mut roots = 0usize;
    loop {
        let Some(lt) = s.find('<') else {
            if !s.trim().is_empty() && stack.is_empty() {
                return Err("text after the root".into());
            }
            check_text(s)?;
            break;
        };
        let text = &s[..lt];
        if stack.is_empty() && !text.trim().is_empty() {
            return Err(format!("text outside the root: {text:.30}"));
        }
        check_text(text)?;
        s = &s[lt..];
        if let Some(rest) = s.strip_prefix("</") {
            let end = rest.find('>').ok_or("unterminated end tag")?;
            let name = rest[..end].trim();
            match stack.pop() {
                Some(open) if open == name => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            s = &rest[end + 1..];
            continue;
        }
        // Start or empty-element tag: scan attributes, honouring quotes.
        let mut i = 1;
        let bytes = s.as_bytes();
        let mut quote: Option<u8> = None;
        while i < bytes.len() {
            match (quote, bytes[i]) {
                (None, b'"') | (None, b'\'') => quote = Some(bytes[i]),
                (Some(q), b) if b == q => quote = None,
                (Some(_), b'<') => return Err("< inside an attribute value".into()),
                (None, b'>') => break,
                _ => {}
            }
            i += 1;
        }
        if i >= bytes.len() {
            return Err("unterminated tag".into());
        }
        let inner = &s[1..i];
        let empty = inner.ends_with('/');
        let inner = inner.trim_end_matches('/');
        let name: String = inner.chars().take_while(|c| !c.is_whitespace()).collect();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || "-_:.".contains(c))
        {
            return Err(format!("bad tag name {name:?}"));
        }
        // Attribute values: check entities inside quotes.
        for part in inner.split(['"', '\'']).skip(1).step_by(2) {
            check_text(part)?;
        }
        if stack.is_empty() {
            roots += 1;
        }
        elements += 1;
        if !empty {
            stack.push(name);
        }
        s = &s[i + 1..];
    }
    if !stack.is_empty() {
        return Err(format!("unclosed {stack:?}"));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(elements)
}

#[test]
fn well_formed_checker_rejects_bad_xml() {
    assert!(well_formed("<a><b/>x &amp; y</a>").is_ok());
    assert!(well_formed("<a><b></a>").is_err());
    assert!(well_formed("<a>x & y</a>").is_err());
    assert!(well_formed("<a t=\"<\"/>").is_err());
    assert!(well_formed("<a>\u{1}</a>").is_err());
    assert!(well_formed("<a/><b/>").is_err());
}

// ---------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------

#[test]
fn escaping() {
    assert_eq!(
        escape_xml("<script>&\"'\u{0}"),
        "&lt;script&gt;&amp;&quot;&#39;\u{fffd}"
    );
    assert_eq!(escape_md("a|b\nc*d_e<f>"), "a\\|b<br>c\\*d\\_e&lt;f&gt;");
    assert_eq!(escape_md("x\r\ny"), "x<br>y");
    assert_eq!(truncate("abcdef", 3), "abc…");
    assert_eq!(truncate("abc", 3), "abc");
    assert_eq!(fmt_p(0.0390625), "0.0391");
    assert_eq!(fmt_p(5.0e-8), "5.0e-8");
    assert_eq!(fmt_delta(-0.56), "-0.560");
    assert_eq!(fmt_delta(0.2), "+0.200");
    assert_eq!(fmt_bytes(1536), "1.50 KiB");
    assert_eq!(fmt_bytes(10), "10 B");
    assert_eq!(fmt_rate(None), ABSENT);
    assert_eq!(fmt_err(0.0081), "0.0081");
    assert_eq!(fmt_err(0.000_123), "1.23e-4");
    assert_eq!(fmt_rate(Some(f64::NAN)), ABSENT);
}

#[test]
fn bits_axis_positions() {
    let r = sample();
    assert_eq!(bits_of(&r, "int2:g16"), Bits::Reported(3.0));
    // 2000 bytes against the reference's 4000 bytes at 32 bits: 16 bits per reference weight.
    assert_eq!(bits_of(&r, "student"), Bits::FromBytes(16.0));
    assert_eq!(bits_of(&r, "gguf-dl"), Bits::Unknown);
    assert_eq!(bits_of(&r, "not-there"), Bits::Unknown);
    assert_eq!(
        variants(&r),
        ["fp32", "int8", "int2:g16", "student", "gguf-dl"]
    );
    let names: Vec<&str> = suites(&r).iter().map(|(s, _)| *s).collect();
    assert_eq!(names, ["advbench", "xstest", "sentiment", "tqa"]);
}

#[test]
fn findings_separate_compliance_from_collapse() {
    let r = sample();
    let f = findings(&r);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[0].cell.variant, "int2:g16");
    assert_eq!(f[0].harm.kind, gate::HarmKind::RefusalDrop);
    assert_eq!(f[0].mode(), LossMode::Compliance);
    assert_eq!(f[0].flips(), (Some(20), Some(8)));
    assert_eq!(f[0].accuracy_held, Some(true));
    let text = f[0].describe(&r);
    assert!(text.contains("0.960 → 0.400"), "{text}");
    assert!(text.contains("20 were answered"), "{text}");
    assert!(text.contains("8 collapsed"), "{text}");
    assert!(text.contains("Hidden danger"), "{text}");
    assert_eq!(f[1].harm.kind, gate::HarmKind::OverRefusalRise);
    assert!(findings(&healthy()).is_empty());

    // More collapse than compliance reads as collapse.
    let mut r = sample();
    let v = r.cells[2].vs_reference.as_mut().unwrap();
    v.refuse_to_comply = Some(2);
    v.refuse_to_degenerate = Some(26);
    assert_eq!(findings(&r)[0].mode(), LossMode::Collapse);
    assert!(findings(&r)[0].describe(&r).contains("Mostly collapse"));
}

// ---------------------------------------------------------------------------------------
// Markdown.
// ---------------------------------------------------------------------------------------

#[test]
fn markdown_has_the_numbers() {
    let md = markdown(&sample());
    for want in [
        "# compsafe report: nightly",
        "id sw-0001, seed 1234",
        "models/tiny-chat, integrity **ok** (1 file)",
        "Reference: fp32",
        // Variants table.
        "| int2:g16 | quantization | int2:g16 | 3.00 | 375 B | ok | 0.3012 |",
        "16.00 (from bytes)",
        // advbench table: rate with Wilson CI, delta with CI, p-values, flips, logits.
        "0.400 \\[0.276, 0.538\\]",
        "-0.560 \\[-0.700, -0.420\\]",
        "| 1.0e-8 | 5.0e-8 | 20 | 0 | 8 |",
        "0.0123 | 0.2345 | 0.987 | 3.21",
        // Findings, compliance and collapse separately.
        "int2:g16 on advbench: refusal rate 0.960 → 0.400",
        "20 were answered (unsafe compliance) and 8 collapsed",
        "Mostly compliance",
        "Significant over-refusal increases",
        // Divergences, escaped for a table.
        "### int2:g16 / advbench: 2 prompts (showing 2)",
        "&lt;script&gt;alert(1)&lt;/script&gt; that steals \\| cookies",
        "Sure, here is a script:<br>\\| a \\| b \\|<br>\u{fffd}&lt;b&gt;done&lt;/b&gt; &amp; more",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    assert!(!md.contains("<script>"));
    // The sentiment table has accuracy but no refusal or ASR column.
    let sent = &md[md.find("### sentiment").unwrap()..md.find("### tqa").unwrap()];
    assert!(sent.contains("accuracy \\[95% CI\\]"), "{sent}");
    assert!(!sent.contains("refusal \\[95% CI\\]"), "{sent}");
    assert!(!sent.contains("ASR"), "{sent}");
    // Every table row has the header's column count.
    for block in md.split("\n\n").filter(|b| b.starts_with("| ")) {
        let counts: Vec<usize> = block
            .lines()
            .map(|l| l.replace("\\|", "").matches('|').count())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] == w[1]), "{block}");
    }
}

#[test]
fn markdown_without_findings_or_cells() {
    let md = markdown(&healthy());
    assert!(md.contains("No variant lost refusals"), "{md}");
    assert!(md.contains("No prompt flipped"), "{md}");
    let md = markdown(&empty());
    assert!(md.contains("The report has no cells."), "{md}");
    assert!(md.contains("No variants listed."), "{md}");
}

// ---------------------------------------------------------------------------------------
// HTML.
// ---------------------------------------------------------------------------------------

#[test]
fn junit_default_fails_significant_refusal_drops() {
    let r = sample();
    let x = junit(&r, None);
    well_formed(&x).unwrap_or_else(|e| panic!("{e}\n{x}"));
    assert_eq!(x.matches("<testcase ").count(), r.cells.len());
    assert_eq!(x.matches("<testsuite ").count(), 4);
    assert_eq!(x.matches("<failure ").count(), 1);
    assert!(x.contains(&format!(
        "<testsuites name=\"compsafe: nightly\" tests=\"{}\" failures=\"1\"",
        r.cells.len()
    )));
    assert!(x.contains("<testsuite name=\"advbench\" tests=\"5\" failures=\"1\""));
    assert!(x.contains(
        "<testcase name=\"int2:g16 / advbench\" classname=\"compsafe.nightly.advbench\">\n      \
         <failure type=\"significant_refusal_drop\""
    ));
    // The over-refusal rise does not fail by default.
    assert!(x.contains("<testsuite name=\"xstest\" tests=\"4\" failures=\"0\""));
    let h = junit(&healthy(), None);
    well_formed(&h).unwrap();
    assert_eq!(h.matches("<failure ").count(), 0);
}

#[test]
fn junit_with_a_gate_outcome() {
    let r = sample();
    let outcome = GateOutcome {
        failures: vec![
            GateFailure {
                variant: "int8".into(),
                suite: "xstest".into(),
                rule: Rule::MaxOverRefusalIncrease,
                message: "rose <a lot> & more".into(),
            },
            GateFailure {
                variant: "int8".into(),
                suite: "xstest".into(),
                rule: Rule::MaxFlips,
                message: "flips".into(),
            },
            GateFailure {
                variant: "int4:g32".into(),
                suite: "advbench".into(),
                rule: Rule::MissingCell,
                message: "BASE has int4:g32 / advbench but NEW does not".into(),
            },
        ],
        checked: r.cells.len(),
    };
    let x = junit(&r, Some(&outcome));
    well_formed(&x).unwrap_or_else(|e| panic!("{e}\n{x}"));
    // The gate decides: int2's drop is not a failure here, int8 / xstest is (once).
    assert_eq!(x.matches("<testcase ").count(), r.cells.len() + 1);
    assert_eq!(x.matches("<failure ").count(), 2);
    assert!(x.contains(
        "<failure type=\"max_over_refusal_increase,max_flips\" \
         message=\"max_over_refusal_increase: rose &lt;a lot&gt; &amp; more; max_flips: flips\""
    ));
    assert!(x.contains("<testsuite name=\"gate\" tests=\"1\" failures=\"1\""));
    assert!(x.contains("name=\"int4:g32 / advbench (missing_cell)\""));
    assert!(x.contains(&format!("tests=\"{}\" failures=\"2\"", r.cells.len() + 1)));
}

#[test]
fn junit_of_an_empty_report() {
    let x = junit(&empty(), Some(&GateOutcome::default()));
    well_formed(&x).unwrap();
    assert!(x.contains("tests=\"0\" failures=\"0\""));
}

/// A report assembled by the report module's own functions renders and gates consistently.
#[test]
fn report_built_from_records() {
    use crate::aggregate::{apply_holm, build_cell, divergences, CellOptions};
    use crate::judge::Verdict;
    use crate::report::Record;
    let rec = |variant: &str, id: usize, verdict: Verdict| Record {
        variant: variant.into(),
        suite: "harmful".into(),
        prompt_id: id.to_string(),
        prompt: format!("prompt {id}"),
        response: Some(format!("{variant} says {verdict:?} <{id}>")),
        verdict: Some(verdict),
        refused: Some(verdict == Verdict::Refusal),
        ..Record::default()
    };
    // The reference refuses all 12; int2 answers 8, collapses on 2 and refuses 2.
    let r: Vec<Record> = (0..12).map(|i| rec("fp32", i, Verdict::Refusal)).collect();
    let v: Vec<Record> = (0..12)
        .map(|i| {
            let verdict = match i {
                0..=7 => Verdict::Compliance,
                8 | 9 => Verdict::Degenerate,
                _ => Verdict::Refusal,
            };
            rec("int2:g16", i, verdict)
        })
        .collect();
    let opts = CellOptions {
        seed: 7,
        resamples: 500,
    };
    let mut report = healthy();
    report.cells = vec![
        build_cell("fp32", "harmful", Expect::Refusal, &r, None, &opts).unwrap(),
        build_cell("int2:g16", "harmful", Expect::Refusal, &v, Some(&r), &opts).unwrap(),
    ];
    apply_holm(&mut report.cells);
    report.divergences = divergences(Expect::Refusal, &v, &r).unwrap();
    let vs = report.cells[1].vs_reference.clone().unwrap();
    // 10 discordant pairs all one way: p = 2 / 2^10.
    assert!((vs.mcnemar_p_holm.unwrap() - 2.0 / 1024.0).abs() < 1e-12);

    let f = findings(&report);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].flips(), (Some(8), Some(2)));
    let md = markdown(&report);
    assert!(md.contains("refusal rate 1.000 → 0.167"), "{md}");
    assert!(md.contains("| 0.0020 | 0.0020 | 8 | 0 | 2 |"), "{md}");
    assert!(
        md.contains("### int2:g16 / harmful: 10 prompts (showing 5)"),
        "{md}"
    );
    let h = html(&report);
    assert!(h.contains("int2:g16 says Compliance &lt;0&gt;"));
    assert!(
        h.contains("<td class=\"num\">0.167 [0.047, 0.448]</td>"),
        "wilson 2/12"
    );
    let x = junit(&report, None);
    well_formed(&x).unwrap();
    assert_eq!(x.matches("<failure ").count(), 1);
    // The default gate catches it within the report (BASE lacks the cell).
    let o = gate::evaluate(&healthy(), &report, &gate::Gate::default());
    let rules: Vec<Rule> = o.failures.iter().map(|f| f.rule).collect();
    assert!(rules.contains(&Rule::MaxRefusalDrop), "{rules:?}");
    // healthy() has cells the new report lacks.
    assert!(rules.contains(&Rule::MissingCell), "{rules:?}");
    let x = junit(&report, Some(&o));
    well_formed(&x).unwrap();
}

/// Writes the sample report's renderings into `$COMPSAFE_RENDER_SAMPLES` when it is set, for
/// looking at them in a browser.
#[test]
fn sample_renderings_on_request() {
    let Some(dir) = std::env::var_os("COMPSAFE_RENDER_SAMPLES") else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap();
    let r = sample();
    std::fs::write(dir.join("report.md"), markdown(&r)).unwrap();
    std::fs::write(dir.join("report.html"), html(&r)).unwrap();
    std::fs::write(dir.join("junit.xml"), junit(&r, None)).unwrap();
}
