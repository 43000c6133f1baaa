//! `reference` and `variants`: shorthand strings and tables (selection, protection, checkpoint
//! paths and pins, distillation settings), the reference first.

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;

use super::raw::{RawDistill, RawSpec, RawVariant, RawVariantTable};
use super::types::VariantEntry;
use super::{check_pins, resolve};
use crate::calibration::CalibrationSpec;
use crate::error::FieldError;
use crate::suite;
use crate::variant::{DistillSpec, Method, Variant};

/// The reference's name and the variants, the reference first.
pub(super) fn parse_variants(
    raw: &RawSpec,
    calibration: &CalibrationSpec,
    dir: &Path,
    file: &Path,
) -> Result<(String, Vec<VariantEntry>), FieldError> {
    let at = |e: FieldError| e.in_file(file);
    let mut variants: Vec<VariantEntry> = Vec::new();
    for (i, rv) in raw.variants.iter().enumerate() {
        let field = format!("variants[{i}]");
        let entry = match rv {
            RawVariant::Short(s) => {
                let mut variant = Variant::parse(s, &field).map_err(at)?;
                variant.calibration = super::calibration::for_variant(
                    calibration,
                    None,
                    variant.method.needs_calibration(),
                    s,
                    &field,
                    dir,
                )
                .map_err(at)?;
                VariantEntry {
                    variant,
                    sha256: BTreeMap::new(),
                    field,
                }
            }
            RawVariant::Table(t) => {
                let is_distill = t
                    .method
                    .as_deref()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("distill"));
                let method = match (&t.method, &t.path) {
                    _ if is_distill || t.distill.is_some() => {
                        let Some(d) = t.distill.as_ref().filter(|_| is_distill) else {
                            return Err(at(FieldError::new(
                                format!("{field}.method"),
                                t.method.clone().unwrap_or_default(),
                                if is_distill {
                                    "a distill variant needs a [variants.distill] table (at least prompts = \"SUITE\")"
                                } else {
                                    "a distill table needs method = \"distill\""
                                },
                            )));
                        };
                        for (set, key) in [
                            (t.path.is_some(), "path"),
                            (t.select.is_some(), "select"),
                            (!t.protect.is_empty(), "protect"),
                            (t.protect_ranking.is_some(), "protect_ranking"),
                            (!t.sha256.is_empty(), "sha256"),
                        ] {
                            if set {
                                return Err(at(FieldError::new(
                                    format!("{field}.{key}"),
                                    t.name.clone().unwrap_or_default(),
                                    "a distill variant trains its own student; it takes no path, select, protect or sha256",
                                )));
                            }
                        }
                        Method::Distill(Box::new(d.build(&field, raw.sweep.seed).map_err(at)?))
                    }
                    (Some(m), None) if m.trim().eq_ignore_ascii_case("checkpoint") => {
                        return Err(at(FieldError::new(
                            format!("{field}.path"),
                            "",
                            "a checkpoint variant needs a path",
                        )))
                    }
                    (Some(m), None) => Method::parse(m, &format!("{field}.method")).map_err(at)?,
                    (Some(m), Some(_)) if !m.trim().eq_ignore_ascii_case("checkpoint") => {
                        return Err(at(FieldError::new(
                            format!("{field}.path"),
                            t.path
                                .as_ref()
                                .map(|p| p.display().to_string())
                                .unwrap_or_default(),
                            "path is only for checkpoint variants (method = \"checkpoint\")",
                        )))
                    }
                    (_, Some(p)) => Method::Checkpoint {
                        path: resolve(dir, p),
                    },
                    (None, None) => {
                        return Err(at(FieldError::new(
                            field,
                            t.name.clone().unwrap_or_default(),
                            "a variant table needs a method or a checkpoint path",
                        )))
                    }
                };
                if let Some(sel) = &t.select {
                    if matches!(method, Method::Checkpoint { .. }) {
                        return Err(at(FieldError::new(
                            format!("{field}.select"),
                            sel,
                            "a checkpoint variant has no tensor selection",
                        )));
                    }
                    Regex::new(sel).map_err(|e| {
                        at(FieldError::new(
                            format!("{field}.select"),
                            sel,
                            e.to_string(),
                        ))
                    })?;
                }
                let (protect, protect_layers) = protect_items(t, &field, dir).map_err(at)?;
                let partial = matches!(
                    method,
                    Method::Rtn { .. }
                        | Method::Prune { .. }
                        | Method::NofM { .. }
                        | Method::Cast { .. }
                );
                if !protect.is_empty() && !partial {
                    return Err(at(FieldError::new(
                        format!("{field}.protect"),
                        t.protect.join(","),
                        "heads can be protected in integer, cast and pruning variants (GGUF \
                         blocks and checkpoints cannot keep part of a matrix); GGUF variants \
                         can protect whole layers (\"layer:L\")",
                    )));
                }
                if !(protect_layers.is_empty() || partial || matches!(method, Method::Gguf { .. }))
                {
                    return Err(at(FieldError::new(
                        format!("{field}.protect"),
                        t.protect.join(","),
                        "layers can be protected in integer, GGUF, cast and pruning variants",
                    )));
                }
                if !t.sha256.is_empty() && !matches!(method, Method::Checkpoint { .. }) {
                    return Err(at(FieldError::new(
                        format!("{field}.sha256"),
                        "",
                        "only checkpoint variants have files to pin",
                    )));
                }
                check_pins(&t.sha256, &format!("{field}.sha256")).map_err(at)?;
                let name = match &t.name {
                    Some(n) if n.trim().is_empty() => {
                        return Err(at(FieldError::new(
                            format!("{field}.name"),
                            n,
                            "variant name is empty",
                        )))
                    }
                    Some(n) => n.clone(),
                    None if is_distill => {
                        return Err(at(FieldError::new(
                            format!("{field}.name"),
                            "",
                            "a distill variant needs a name",
                        )))
                    }
                    None => match &method {
                        Method::Checkpoint { path } => path
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_else(|| method.to_string()),
                        m => match &t.select {
                            Some(sel) => format!("{m}@{sel}"),
                            None => m.to_string(),
                        },
                    },
                };
                let calibration = super::calibration::for_variant(
                    calibration,
                    t.calibration.as_ref(),
                    method.needs_calibration(),
                    &method.to_string(),
                    &field,
                    dir,
                )
                .map_err(at)?;
                VariantEntry {
                    variant: Variant {
                        name,
                        method,
                        select: t.select.clone(),
                        protect,
                        protect_layers,
                        calibration,
                    },
                    sha256: t
                        .sha256
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_ascii_lowercase()))
                        .collect(),
                    field,
                }
            }
        };
        if let Some(prev) = variants
            .iter()
            .find(|v| v.variant.name == entry.variant.name)
        {
            return Err(at(FieldError::new(
                format!("{}.name", entry.field),
                &entry.variant.name,
                format!("duplicate variant name (also {})", prev.field),
            )));
        }
        variants.push(entry);
    }

    // The reference: a named variant, or a shorthand added implicitly.
    let reference = raw.reference.clone().unwrap_or_else(|| "fp32".to_string());
    match variants.iter().position(|v| v.variant.name == reference) {
        Some(i) => {
            let r = variants.remove(i);
            variants.insert(0, r);
        }
        None => {
            let v = Variant::parse(&reference, "reference").map_err(|e| {
                at(FieldError::new(
                    "reference",
                    &reference,
                    format!(
                        "not the name of a variant and not a variant shorthand ({})",
                        e.reason
                    ),
                ))
            })?;
            if variants.iter().any(|x| x.variant.name == v.name) {
                return Err(at(FieldError::new(
                    "reference",
                    &reference,
                    format!("refer to the variant by its name `{}`", v.name),
                )));
            }
            variants.insert(
                0,
                VariantEntry {
                    variant: Variant {
                        name: reference.clone(),
                        ..v
                    },
                    sha256: BTreeMap::new(),
                    field: "reference".into(),
                },
            );
        }
    }
    Ok((reference, variants))
}

/// A variant table's `protect` items: `L.H` (a head), `layer:L` (a whole layer) or `top:K`
/// (the first K units of the `protect_ranking` file, the heads.json or sensitivity.json of
/// `compsafe heads` / `compsafe sensitivity --unit layer`). Sorted, without duplicates.
pub(super) fn protect_items(
    t: &RawVariantTable,
    field: &str,
    dir: &Path,
) -> Result<(Vec<crate::variant::HeadRef>, Vec<usize>), FieldError> {
    use crate::variant::HeadRef;
    let mut heads = Vec::new();
    let mut layers = Vec::new();
    fn add_unit(
        unit: &str,
        item_field: &str,
        item: &str,
        heads: &mut Vec<HeadRef>,
        layers: &mut Vec<usize>,
    ) -> Result<(), FieldError> {
        if unit.contains('.') {
            heads.push(HeadRef::parse(unit).map_err(|e| FieldError::new(item_field, item, e))?);
        } else {
            layers.push(unit.trim().parse::<usize>().map_err(|_| {
                FieldError::new(item_field, item, "a layer is a number, e.g. layer:3")
            })?);
        }
        Ok(())
    }
    for (k, item) in t.protect.iter().enumerate() {
        let item_field = format!("{field}.protect[{k}]");
        if let Some(l) = item.strip_prefix("layer:") {
            if l.contains('.') {
                return Err(FieldError::new(
                    &item_field,
                    item,
                    "a layer is a number, e.g. layer:3",
                ));
            }
            add_unit(l, &item_field, item, &mut heads, &mut layers)?;
        } else if let Some(n) = item.strip_prefix("top:") {
            let n: usize = n
                .trim()
                .parse()
                .map_err(|_| FieldError::new(&item_field, item, "expected top:K, e.g. top:8"))?;
            let Some(ranking) = &t.protect_ranking else {
                return Err(FieldError::new(
                    &item_field,
                    item,
                    "top:K needs protect_ranking = \"heads.json\" (written by compsafe heads or compsafe sensitivity)",
                ));
            };
            let path = resolve(dir, ranking);
            let rfield = format!("{field}.protect_ranking");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| FieldError::new(&rfield, path.display().to_string(), e.to_string()))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| FieldError::new(&rfield, path.display().to_string(), e.to_string()))?;
            let units: Vec<String> = json
                .get("ranking")
                .or_else(|| json.get("units"))
                .and_then(|r| r.as_array())
                .map(|r| {
                    r.iter()
                        .filter_map(|u| u.get("unit").and_then(|u| u.as_str()))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if units.len() < n {
                return Err(FieldError::new(
                    &rfield,
                    path.display().to_string(),
                    format!("ranks {} units, fewer than {item}", units.len()),
                ));
            }
            for u in &units[..n] {
                if u.contains(|c: char| !(c.is_ascii_digit() || c == '.')) {
                    return Err(FieldError::new(
                        &rfield,
                        path.display().to_string(),
                        format!(
                            "unit `{u}` is not a head (L.H) or a layer (L); rank heads or layers"
                        ),
                    ));
                }
                add_unit(u, &item_field, item, &mut heads, &mut layers)?;
            }
        } else {
            heads.push(HeadRef::parse(item).map_err(|e| FieldError::new(&item_field, item, e))?);
        }
    }
    if t.protect_ranking.is_some() && !t.protect.iter().any(|p| p.starts_with("top:")) {
        return Err(FieldError::new(
            format!("{field}.protect_ranking"),
            t.protect_ranking
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            "a ranking is only read for protect = [\"top:K\"]",
        ));
    }
    heads.sort();
    heads.dedup();
    layers.sort_unstable();
    layers.dedup();
    Ok((heads, layers))
}

impl RawDistill {
    /// The validated spec; errors name `field.distill.KEY` and check that the suites are
    /// bundled.
    pub(super) fn build(&self, field: &str, sweep_seed: u64) -> Result<DistillSpec, FieldError> {
        let d = DistillSpec::default();
        let spec = DistillSpec {
            prompts: self.prompts.clone(),
            safety: self.safety.clone(),
            limit: self.limit,
            temperature: self.temperature.unwrap_or(d.temperature),
            alpha: self.alpha.unwrap_or(d.alpha),
            safety_weight: self.safety_weight.unwrap_or(d.safety_weight),
            steps: self.steps.unwrap_or(d.steps),
            batch: self.batch.unwrap_or(d.batch),
            lr: self.lr.unwrap_or(d.lr),
            layers: self.layers,
            intermediate_size: self.intermediate_size,
            init: self.init.unwrap_or(d.init),
            seed: self.seed.unwrap_or(sweep_seed),
            max_new_tokens: self.max_new_tokens.unwrap_or(d.max_new_tokens),
        };
        spec.check().map_err(|(key, value, why)| {
            FieldError::new(format!("{field}.distill.{key}"), value, why)
        })?;
        let root = suite::bundled_root();
        for (key, name) in [
            ("prompts", Some(&spec.prompts)),
            ("safety", spec.safety.as_ref()),
        ] {
            if let Some(name) = name {
                suite::bundled_source(&root, name).map_err(|e| {
                    FieldError::new(format!("{field}.distill.{key}"), name, e.reason)
                })?;
            }
        }
        Ok(spec)
    }
}
