//! Running one leased work unit: the spec is validated once per sweep, the model loaded once
//! per runner and kept across units, the variant derived once per (sweep, variant). Workers
//! on a fleet and `compsafe run --direct` call the same [`Runner::run`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use compsafe_core::paths::confine;
use compsafe_core::report::{Integrity, ModelInfo, Training, VariantInfo};
use compsafe_core::spec::{validate_text, Validated};
use compsafe_core::suite::Expect;
use compsafe_core::unit::{ReferenceWire, UnitKind, UnitResult, UnitSpec};
use compsafe_core::Method;
use compsafe_engine::variant::DerivedVariant;
use compsafe_engine::{ChatDate, EngineError, Fault};

use crate::evaluator::{judges_for, Evaluator, ReferenceOutputs};
use crate::info::{failed_variant_info, model_info, variant_info, variant_integrity};

/// Why a unit could not be run, and what kind of fault that is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    /// What went wrong.
    pub reason: String,
    /// Input (a bad spec, a model outside the root, a malformed file), transient (worth
    /// another attempt) or internal (deterministic: every attempt fails alike).
    pub fault: Fault,
}

impl UnitError {
    /// An input error: retrying cannot help.
    pub fn input(reason: impl Into<String>) -> UnitError {
        UnitError {
            reason: reason.into(),
            fault: Fault::Input,
        }
    }

    /// A deterministic failure that is not the input's fault.
    pub fn internal(reason: impl Into<String>) -> UnitError {
        UnitError {
            reason: reason.into(),
            fault: Fault::Internal,
        }
    }

    /// A failure another attempt may not meet.
    pub fn transient(reason: impl Into<String>) -> UnitError {
        UnitError {
            reason: reason.into(),
            fault: Fault::Transient,
        }
    }

    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        self.fault == Fault::Transient
    }
}

impl From<EngineError> for UnitError {
    fn from(e: EngineError) -> UnitError {
        UnitError {
            fault: e.fault(),
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
    judge: Option<crate::judge::LoadedJudge>,
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
            judge: None,
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
        self.judge = None;
    }

    /// Model paths held in memory (sent with every lease request for placement).
    pub fn loaded_models(&self) -> Vec<String> {
        self.loaded
            .iter()
            .map(|(p, _)| p.display().to_string())
            .chain(self.judge.iter().map(|j| j.path.display().to_string()))
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
            for (i, m) in v.spec.judge.models.iter().enumerate() {
                confine(&m.path, root)
                    .map_err(|e| UnitError::input(format!("judge.models[{i}].path: {e}")))?;
            }
        }
        let v = Arc::new(v);
        self.specs.insert(u.sweep_id.clone(), v.clone());
        Ok(v)
    }

    /// The model's files and integrity (cached per model and manifest).
    fn model_info(&mut self, v: &Validated) -> Result<ModelInfo, UnitError> {
        let spec = &v.spec;
        let key = format!("{}\0{:?}", spec.model.path.display(), spec.model.manifest);
        if let Some(m) = self.model_integrity.get(&key) {
            return Ok(m.clone());
        }
        let m = model_info(spec)?;
        self.model_integrity.insert(key, m.clone());
        Ok(m)
    }

    /// The loaded reference, loading it when this runner holds another model, with its chat
    /// templates rendering the unit's date (the spec's `[chat] date`, else the sweep's start).
    fn evaluator(&mut self, v: &Validated, u: &UnitSpec) -> Result<&Evaluator, UnitError> {
        let key = &v.spec.model.path;
        if self.loaded.as_ref().map(|(p, _)| p) != Some(key) {
            self.loaded = None;
            self.derived = None;
            tracing::info!(model = %key.display(), "loading model");
            let e = Evaluator::load(key, v.spec.model.chat_template.as_deref(), &self.device)?;
            self.loaded = Some((key.clone(), e));
        }
        let e = &mut self.loaded.as_mut().expect("loaded above").1;
        let day = v
            .spec
            .chat
            .date_for(u.started_at.as_deref().unwrap_or_default());
        if let Some(day) = day {
            let date = ChatDate::parse(&day)
                .ok_or_else(|| UnitError::input(format!("chat.date: {day:?} is not a date")))?;
            if e.codec.chat_options().date != date {
                let mut opts = e.codec.chat_options().clone();
                opts.date = date;
                e.codec.set_chat_options(opts);
            }
        }
        Ok(&self.loaded.as_ref().expect("loaded above").1)
    }

    /// Runs one unit.
    pub fn run(&mut self, u: &UnitSpec) -> Result<UnitResult, UnitError> {
        let v = self.spec(u)?;
        if u.kind == UnitKind::Judge {
            return self.judge_unit(u, &v);
        }
        let model = self.model_info(&v)?;
        if u.kind != UnitKind::Evaluate {
            return self.analysis(u, &v, model);
        }
        self.evaluate(u, &v, model)
    }

    /// An analysis unit: its result reports the model and the reference.
    fn analysis(
        &mut self,
        u: &UnitSpec,
        v: &Validated,
        model: ModelInfo,
    ) -> Result<UnitResult, UnitError> {
        let entry = &v.spec.variants[0];
        let check = variant_integrity(entry, &model)?;
        if !check.failures.is_empty() {
            for f in &check.failures {
                tracing::warn!(unit = %u.unit_id, "{f}");
            }
            return Ok(UnitResult {
                records: Vec::new(),
                variant: failed_variant_info(entry, &check),
                model: Some(model),
                reference: None,
                analysis: None,
            });
        }
        let eval = self.evaluator(v, u)?;
        let reference = eval.derive(&entry.variant)?;
        let variant = variant_info(entry, &reference, check.integrity, None);
        let analysis = match u.kind {
            UnitKind::Heads => crate::analysis::heads::run(eval, v, u)?,
            UnitKind::Sensitivity => crate::analysis::sensitivity::run(eval, v, u)?,
            UnitKind::Conditioned => crate::analysis::conditioned::run(eval, v, u)?,
            UnitKind::Search => crate::analysis::search::run(eval, v, u)?,
            UnitKind::Evaluate | UnitKind::Judge => {
                unreachable!("evaluate and judge units have their own paths")
            }
        };
        Ok(UnitResult {
            records: Vec::new(),
            variant,
            model: Some(model),
            reference: None,
            analysis: Some(analysis),
        })
    }

    /// A judge unit: one judge model (loaded once, kept across units) on a suite's records or
    /// on the labelled sample.
    fn judge_unit(&mut self, u: &UnitSpec, v: &Validated) -> Result<UnitResult, UnitError> {
        let m = v.spec.judge.models.get(u.variant).ok_or_else(|| {
            UnitError::input(format!("unit {}: no judge model {}", u.unit_id, u.variant))
        })?;
        let judge = crate::judge::ensure_loaded(&mut self.judge, m, &self.device)?;
        let out = crate::judge::run(judge, v, u)?;
        let analysis = serde_json::to_value(&out)
            .map_err(|e| UnitError::internal(format!("unit {}: {e}", u.unit_id)))?;
        Ok(UnitResult {
            records: Vec::new(),
            variant: VariantInfo {
                name: m.name.clone(),
                kind: "judge".to_string(),
                method: m.kind.to_string(),
                bits_per_weight: None,
                bytes: None,
                integrity: Integrity::Unpinned,
                weight_error: None,
                training: None,
                error: None,
                integrity_failures: Vec::new(),
                calibration: None,
            },
            model: None,
            reference: None,
            analysis: Some(analysis),
        })
    }

    /// An evaluate unit: one variant on a slice of one suite.
    fn evaluate(
        &mut self,
        u: &UnitSpec,
        v: &Validated,
        model: ModelInfo,
    ) -> Result<UnitResult, UnitError> {
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
                analysis: None,
            });
        }
        self.evaluator(v, u)?;
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
                Some(ReferenceOutputs::from(r))
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
            let own = (u.variant == 0).then(|| ReferenceWire::from(&own));
            (records, own)
        };
        Ok(UnitResult {
            records,
            variant,
            model,
            reference,
            analysis: None,
        })
    }
}
