//! Running one leased work unit: the spec is validated once per sweep, the model loaded once
//! per worker and kept across units, the variant derived once per (sweep, variant).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use compsafe_core::paths::confine;
use compsafe_core::report::{ModelInfo, Training};
use compsafe_core::spec::{validate_text, Validated};
use compsafe_core::suite::Expect;
use compsafe_core::unit::{ReferenceWire, UnitResult, UnitSpec};
use compsafe_core::Method;
use compsafe_engine::variant::DerivedVariant;
use compsafe_engine::EngineError;

use crate::evaluator::{judges_for, Evaluator, ReferenceOutputs};
use crate::info::{failed_variant_info, model_info, variant_info, variant_integrity};

/// Why a unit could not be run, and whether another attempt may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    /// What went wrong.
    pub reason: String,
    /// False for input errors (a bad spec, a model outside the root): retrying cannot help.
    pub retryable: bool,
}

impl UnitError {
    fn input(reason: impl Into<String>) -> UnitError {
        UnitError {
            reason: reason.into(),
            retryable: false,
        }
    }
}

impl From<EngineError> for UnitError {
    fn from(e: EngineError) -> UnitError {
        UnitError {
            retryable: e.is_retryable(),
            reason: e.to_string(),
        }
    }
}

impl From<compsafe_core::FieldError> for UnitError {
    fn from(e: compsafe_core::FieldError) -> UnitError {
        UnitError::input(e.to_string())
    }
}

/// Runs units on one device, keeping the loaded model between them.
pub struct Runner {
    device: Device,
    model_root: Option<PathBuf>,
    specs: HashMap<String, Arc<Validated>>,
    loaded: Option<(PathBuf, Evaluator)>,
    derived: Option<((String, usize), DerivedVariant, Option<Training>)>,
    /// The model's files and integrity, by model path and pinned manifest.
    model_integrity: HashMap<String, ModelInfo>,
    cache_dir: PathBuf,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("loaded", &self.loaded.as_ref().map(|(p, _)| p))
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner on `device`; with `model_root`, model paths must resolve inside it.
    pub fn new(device: Device, model_root: Option<PathBuf>) -> Runner {
        Runner {
            device,
            model_root,
            specs: HashMap::new(),
            loaded: None,
            derived: None,
            model_integrity: HashMap::new(),
            cache_dir: crate::distill::default_cache_dir(),
        }
    }

    /// Keeps distilled students under `dir` (default [`crate::distill::default_cache_dir`]).
    pub fn with_cache_dir(mut self, dir: PathBuf) -> Runner {
        self.cache_dir = dir;
        self
    }

    /// The device units run on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The device as a worker registers it: `name` (as configured, `cpu` or `cuda:N`) and, for
    /// a GPU, its model, memory and compute capability,
    /// `cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GiB (78.6 GiB free), compute capability 9.0)`.
    pub fn advertised_device(&self, name: &str) -> String {
        if self.device.is_cpu() {
            return name.to_string();
        }
        match compsafe_engine::device::device_info(&self.device) {
            Ok(info) => format!("{name} ({})", info.details()),
            Err(e) => {
                tracing::warn!("cannot describe {name}: {e}");
                name.to_string()
            }
        }
    }

    /// Drops every cache (specs, the loaded model, the derived variant).
    pub fn reset(&mut self) {
        self.specs.clear();
        self.loaded = None;
        self.derived = None;
        self.model_integrity.clear();
    }

    /// Model paths held in memory (sent with every lease request for placement).
    pub fn loaded_models(&self) -> Vec<String> {
        self.loaded
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect()
    }

    fn spec(&mut self, u: &UnitSpec) -> Result<Arc<Validated>, UnitError> {
        if let Some(v) = self.specs.get(&u.sweep_id) {
            return Ok(v.clone());
        }
        let v = validate_text(&u.spec_text, Path::new(&u.spec_path))
            .map_err(|e| UnitError::input(e.to_string()))?;
        if let Some(root) = &self.model_root {
            confine(&v.spec.model.path, root)
                .map_err(|e| UnitError::input(format!("model.path: {e}")))?;
            for entry in &v.spec.variants {
                if let Method::Checkpoint { path } = &entry.variant.method {
                    confine(path, root)
                        .map_err(|e| UnitError::input(format!("{}.path: {e}", entry.field)))?;
                }
            }
        }
        let v = Arc::new(v);
        self.specs.insert(u.sweep_id.clone(), v.clone());
        Ok(v)
    }

    /// Evaluates one unit.
    pub fn run(&mut self, u: &UnitSpec) -> Result<UnitResult, UnitError> {
        let v = self.spec(u)?;
        let spec = &v.spec;
        let suite = v
            .suites
            .get(u.suite)
            .ok_or_else(|| UnitError::input(format!("unit {}: no suite {}", u.unit_id, u.suite)))?;
        let entry = spec.variants.get(u.variant).ok_or_else(|| {
            UnitError::input(format!("unit {}: no variant {}", u.unit_id, u.variant))
        })?;
        let prompts = suite.prompts.get(u.start..u.end).ok_or_else(|| {
            UnitError::input(format!(
                "unit {}: prompts {}..{} out of range",
                u.unit_id, u.start, u.end
            ))
        })?;
        let key = spec.model.path.clone();
        let model_key = format!("{}\0{:?}", key.display(), spec.model.manifest);
        let model = match self.model_integrity.get(&model_key) {
            Some(m) => m.clone(),
            None => {
                let m = model_info(spec)?;
                self.model_integrity.insert(model_key, m.clone());
                m
            }
        };
        let check = variant_integrity(entry, &model)?;
        let model = (u.variant == 0).then_some(model);
        if !check.failures.is_empty() {
            // The files do not match their pins: nothing is evaluated on them.
            for f in &check.failures {
                tracing::warn!(unit = %u.unit_id, variant = %entry.variant.name, "{f}");
            }
            return Ok(UnitResult {
                records: Vec::new(),
                variant: failed_variant_info(entry, &check),
                model,
                reference: None,
            });
        }
        if self.loaded.as_ref().map(|(p, _)| p) != Some(&key) {
            self.loaded = None;
            self.derived = None;
            tracing::info!(model = %key.display(), "loading model");
            let e = Evaluator::load(&key, spec.model.chat_template.as_deref(), &self.device)?;
            self.loaded = Some((key.clone(), e));
        }
        let (_, eval) = self.loaded.as_ref().expect("loaded above");
        let dkey = (u.sweep_id.clone(), u.variant);
        if self.derived.as_ref().map(|(k, _, _)| k) != Some(&dkey) {
            self.derived = None;
            let (derived, training) = crate::distill::derive(
                eval,
                &entry.variant,
                &self.cache_dir,
                spec.generation.batch_tokens as usize,
            )?;
            self.derived = Some((dkey, derived, training));
        }
        let (_, derived, training) = self.derived.as_ref().expect("derived above");
        let variant = variant_info(entry, derived, check.integrity, training.clone());
        let budget = spec.generation.batch_tokens as usize;
        let (records, reference) = if suite.expect == Expect::MultipleChoice {
            (
                eval.eval_multiple_choice(
                    &entry.variant.name,
                    &derived.model,
                    suite,
                    prompts,
                    budget,
                )?,
                None,
            )
        } else {
            let judges = judges_for(spec, u.suite, suite)?;
            let given = if u.variant == 0 {
                None
            } else {
                let r = u.reference.as_ref().ok_or_else(|| {
                    UnitError::input(format!(
                        "unit {}: the reference's outputs were not sent",
                        u.unit_id
                    ))
                })?;
                Some(ReferenceOutputs {
                    tokens: r.tokens.clone().into_iter().collect(),
                    typical_logprob: r.typical_logprob,
                })
            };
            let (records, own) = eval.eval_generation(
                &entry.variant.name,
                &derived.model,
                suite,
                prompts,
                &judges,
                &spec.generation,
                given.as_ref(),
            )?;
            let own = (u.variant == 0).then(|| ReferenceWire {
                tokens: own.tokens.into_iter().collect(),
                typical_logprob: own.typical_logprob,
            });
            (records, own)
        };
        Ok(UnitResult {
            records,
            variant,
            model,
            reference,
        })
    }
}
