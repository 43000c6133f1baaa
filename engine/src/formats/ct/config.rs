//! compressed-tensors' `quantization_config`: config groups, their targets and arguments,
//! the checks a layer's scheme must pass.

use regex::Regex;

use crate::error::Result;
use crate::formats::json::Fields;
use crate::quant::act::ActType;

/// Quantization arguments of weights or activations (compressed-tensors' `QuantizationArgs`).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantArgs {
    /// Bits.
    pub num_bits: u32,
    /// `int` or `float`.
    pub float: bool,
    /// `tensor`, `channel`, `group`, `token`, ...
    pub strategy: String,
    /// Group size of the `group` strategy.
    pub group_size: Option<usize>,
    /// Symmetric.
    pub symmetric: bool,
    /// Scales computed at run time.
    pub dynamic: bool,
}

impl QuantArgs {
    fn parse(f: &Fields) -> Result<QuantArgs> {
        let num_bits = f.u64_opt("num_bits")?.unwrap_or(8) as u32;
        let float = match f.str_opt("type")?.unwrap_or("int") {
            "int" => false,
            "float" => true,
            other => {
                return Err(f.err(
                    "type",
                    format!("= {other:?}: expected \"int\" or \"float\""),
                ))
            }
        };
        let strategy = f.str_opt("strategy")?.unwrap_or("tensor").to_string();
        let group_size = match f.i64_opt("group_size")? {
            Some(g) if g > 0 => Some(g as usize),
            Some(-1) | None => None,
            Some(g) => return Err(f.err("group_size", format!("= {g}: expected a positive size"))),
        };
        let dynamic = match f.get("dynamic") {
            None => false,
            Some(v) if v.as_bool().is_some() => v.as_bool().unwrap_or(false),
            Some(v) if v.as_str() == Some("local") => true,
            Some(v) => {
                return Err(f.err(
                    "dynamic",
                    format!("= {v}: expected true, false or \"local\""),
                ))
            }
        };
        Ok(QuantArgs {
            num_bits,
            float,
            strategy,
            group_size,
            symmetric: f.bool_opt("symmetric")?.unwrap_or(true),
            dynamic,
        })
    }

    /// Short form for reports: `w4g128`, `fp8`, `int8`.
    pub(super) fn short(&self) -> String {
        if self.float {
            format!("fp{}", self.num_bits)
        } else {
            format!(
                "int{}{}{}",
                self.num_bits,
                self.group_size.map_or(String::new(), |g| format!("g{g}")),
                if self.symmetric { "" } else { ":asym" }
            )
        }
    }
}

/// One config group.
#[derive(Debug, Clone)]
pub struct Scheme {
    /// Its name in `config_groups`.
    pub name: String,
    /// Target patterns.
    pub targets: Vec<String>,
    /// Weight arguments.
    pub weights: Option<QuantArgs>,
    /// Input activation arguments.
    pub input: Option<QuantArgs>,
    /// The group's storage format.
    pub format: String,
}

/// compressed-tensors settings.
#[derive(Debug, Clone)]
pub struct CtConfig {
    /// The config groups, in file order.
    pub groups: Vec<Scheme>,
    /// Ignored module patterns.
    pub ignore: Vec<String>,
    /// KV-cache quantization.
    pub kv: Option<QuantArgs>,
}

const FORMATS: [&str; 5] = [
    "pack-quantized",
    "int-quantized",
    "naive-quantized",
    "float-quantized",
    "dense",
];

fn strings(f: &Fields, key: &str) -> Result<Vec<String>> {
    match f.get(key) {
        None => Ok(Vec::new()),
        Some(v) => v
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_str().map(String::from)).collect())
            .ok_or_else(|| f.err(key, format!("= {v}: expected a list of strings"))),
    }
}

impl CtConfig {
    /// Parses `quantization_config`.
    pub fn parse(f: &Fields) -> Result<CtConfig> {
        let global = f.str_opt("format")?.unwrap_or("dense");
        if !FORMATS.contains(&global) && global != "mixed-precision" {
            return Err(f.err(
                "format",
                format!(
                    "= {global:?}: supported are {} and mixed-precision",
                    FORMATS.join(", ")
                ),
            ));
        }
        if let Some(s) = f.object("sparsity_config")? {
            if let Some(fmt) = s.str_opt("format")? {
                if fmt != "dense" {
                    return Err(s.err(
                        "format",
                        format!(
                            "= {fmt:?}: sparse storage formats are not supported (only \"dense\")"
                        ),
                    ));
                }
            }
        }
        let groups_f = f
            .object("config_groups")?
            .ok_or_else(|| f.err("config_groups", "missing"))?;
        let mut groups = Vec::new();
        let Some(obj) = groups_f.value.as_object() else {
            return Err(f.err("config_groups", "expected an object"));
        };
        for name in obj.keys() {
            let Some(g) = groups_f.object(name)? else {
                continue;
            };
            let format = g.str_opt("format")?.unwrap_or(global).to_string();
            if !FORMATS.contains(&format.as_str()) {
                return Err(g.err(
                    "format",
                    format!("= {format:?}: supported are {}", FORMATS.join(", ")),
                ));
            }
            let weights = g
                .object("weights")?
                .map(|w| QuantArgs::parse(&w))
                .transpose()?;
            let input = g
                .object("input_activations")?
                .map(|w| QuantArgs::parse(&w))
                .transpose()?;
            if let Some(w) = &weights {
                let wf = g.object("weights")?.unwrap_or(g.clone());
                check_weight_args(&wf, w)?;
            }
            if let Some(a) = &input {
                let af = g.object("input_activations")?.unwrap_or(g.clone());
                act_type(&af, a)?;
                if a.dynamic && a.strategy != "token" {
                    return Err(af.err(
                        "strategy",
                        format!(
                            "= {:?}: dynamic activation quantization is supported per token",
                            a.strategy
                        ),
                    ));
                }
                if !a.dynamic && a.strategy != "tensor" {
                    return Err(af.err(
                        "strategy",
                        format!(
                            "= {:?}: static activation quantization is supported per tensor",
                            a.strategy
                        ),
                    ));
                }
            }
            if g.object("output_activations")?.is_some() {
                return Err(g.err(
                    "output_activations",
                    "output activation quantization is not supported",
                ));
            }
            groups.push(Scheme {
                name: name.clone(),
                targets: strings(&g, "targets")?,
                weights,
                input,
                format,
            });
        }
        let kv = match f.object("kv_cache_scheme")? {
            None => None,
            Some(k) => {
                let a = QuantArgs::parse(&k)?;
                act_type(&k, &a)?;
                if a.strategy != "tensor" || a.dynamic || !a.symmetric {
                    return Err(k.err(
                        "strategy",
                        format!(
                            "= {:?} (dynamic {}, symmetric {}): KV-cache quantization is supported static, symmetric, per tensor",
                            a.strategy, a.dynamic, a.symmetric
                        ),
                    ));
                }
                Some(a)
            }
        };
        Ok(CtConfig {
            groups,
            ignore: strings(f, "ignore")?,
            kv,
        })
    }

    /// The method as written in reports (`compressed-tensors:w4g128a16`).
    pub fn method(&self) -> String {
        let mut parts: Vec<String> = self
            .groups
            .iter()
            .map(|g| {
                let w = g
                    .weights
                    .as_ref()
                    .map_or("w16".into(), |w| format!("w:{}", w.short()));
                let a = g.input.as_ref().map_or(String::new(), |a| {
                    format!(
                        ",a:{}{}",
                        a.short(),
                        if a.dynamic { "-dyn-token" } else { "-static" }
                    )
                });
                format!("{w}{a}")
            })
            .collect();
        if let Some(k) = &self.kv {
            parts.push(format!("kv:{}", k.short()));
        }
        format!("compressed-tensors:{}", parts.join("+"))
    }

    /// The scheme of module `module` (`None`: not quantized).
    pub(super) fn scheme_of(&self, module: &str) -> Option<&Scheme> {
        if self.ignore.iter().any(|t| matches(t, module)) {
            return None;
        }
        self.groups
            .iter()
            .find(|g| g.targets.iter().any(|t| matches(t, module)))
    }
}

pub(super) fn check_weight_args(f: &Fields, w: &QuantArgs) -> Result<()> {
    if w.float && w.num_bits != 8 {
        return Err(f.err(
            "num_bits",
            format!(
                "= {}: float weights are supported as FP8 (8 bits)",
                w.num_bits
            ),
        ));
    }
    if !w.float && !(1..=8).contains(&w.num_bits) {
        return Err(f.err(
            "num_bits",
            format!("= {}: integer weights take 1 to 8 bits", w.num_bits),
        ));
    }
    if !["tensor", "channel", "group"].contains(&w.strategy.as_str()) {
        return Err(f.err(
            "strategy",
            format!(
                "= {:?}: weight strategies supported are tensor, channel and group",
                w.strategy
            ),
        ));
    }
    if w.strategy == "group" && w.group_size.is_none() {
        return Err(f.err("group_size", "missing for the group strategy"));
    }
    if w.dynamic {
        return Err(f.err("dynamic", "= true: weights are quantized statically"));
    }
    Ok(())
}

pub(super) fn act_type(f: &Fields, a: &QuantArgs) -> Result<ActType> {
    match (a.float, a.num_bits) {
        (false, 8) => Ok(ActType::Int8),
        (true, 8) => Ok(ActType::Fp8E4m3),
        (_, b) => Err(f.err(
            "num_bits",
            format!("= {b}: activations are supported as int8 or FP8"),
        )),
    }
}

/// compressed-tensors' target matching: `re:` patterns match at the start of the module
/// name, `Linear` matches every linear layer, anything else the exact name.
pub(super) fn matches(target: &str, module: &str) -> bool {
    if let Some(re) = target.strip_prefix("re:") {
        return Regex::new(&format!("^(?:{re})")).is_ok_and(|r| r.is_match(module));
    }
    target == "Linear" || target == module
}
