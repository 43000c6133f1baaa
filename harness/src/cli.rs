//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// compsafe: what did compression do to my model's safety?
#[derive(Debug, Parser)]
#[command(name = "compsafe", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); COMPSAFE_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs a sweep on this machine and writes its reports.
    Run(RunArgs),
    /// Parses and checks a spec (files, hashes, regexes, suites); runs nothing.
    Validate(ValidateArgs),
    /// Regression gate: compares two report.json files (exit 1 when a rule fails).
    Diff(DiffArgs),
    /// Per-tensor error of one compressed variant, worst first.
    Layers(LayersArgs),
    /// Ranks attention heads (or layers) by how much ablating each alone lowers refusal
    /// relative to how much it hurts benign likelihood; confirms the top K by generation.
    Heads(HeadsArgs),
    /// Compresses one layer (or attention/MLP group, or tensor) at a time and measures its
    /// effect on refusal log-odds and KL divergence: which layers would break safety alone.
    Sensitivity(SensitivityArgs),
    /// Behaviour that appears only under compression: f32 against each quantizer and pruner,
    /// paired and Holm-adjusted, with a noise control that tells a behaviour conditioned on
    /// exact rounding from ordinary compression damage (exit 1 when something is flagged).
    Conditioned(ConditionedArgs),
    /// Targeted search: short prompt suffixes that keep the reference refusing while a
    /// compressed variant complies, against random suffixes with the same budget.
    Search(SearchArgs),
    /// Writes a Hugging Face Llama checkpoint as a GGUF file (llama.cpp layout), its 2-D
    /// weights in one block type.
    Quantize(QuantizeArgs),
    /// Re-quantizes a full-precision source to each tensor's type in a GGUF file and compares
    /// block by block: is the file an honest quantization of the source? (exit 1 when not)
    RequantDiff(RequantDiffArgs),
    /// Weights sitting at rounding boundaries, per tensor, against what trained weights give:
    /// a sign of weights shaped to flip on quantization (exit 1 when a tensor is flagged).
    Boundary(BoundaryArgs),
    /// Integrity of a model against its manifest: files, every tensor, chat template, tokenizer.
    Verify(VerifyArgs),
    /// Model manifests: hashes of every file, every tensor, the chat template and tokenizer.
    Manifest {
        /// What to do.
        #[command(subcommand)]
        command: ManifestCommand,
    },
    /// Devices, CUDA, versions.
    Doctor,
    /// Serves sweeps to workers over gRPC, with state in SQLite.
    Coordinator(CoordinatorArgs),
    /// Pulls work units from a coordinator and runs them.
    Worker(WorkerArgs),
    /// Submits a sweep spec to a coordinator; prints the sweep id.
    Submit(SubmitArgs),
    /// Progress of a submitted sweep.
    Status(IdArgs),
    /// Progress of a submitted sweep as it changes, until it finishes.
    Watch(IdArgs),
    /// Cancels a submitted sweep.
    Cancel(IdArgs),
    /// Writes the reports of a finished sweep.
    Report(ReportArgs),
    /// Asks a coordinator's grpc.health.v1 service whether it is serving (exit 0 when it is,
    /// 1 when it answers but is not serving, 3 when it cannot be reached); needs no token.
    Health(HealthArgs),
    /// Fixture checkpoints.
    Fixture {
        /// What to do with the fixtures.
        #[command(subcommand)]
        command: FixtureCommand,
    },
}

/// Fixture subcommands.
#[derive(Debug, Subcommand)]
pub enum FixtureCommand {
    /// Rebuilds the bundled fixture checkpoints.
    Train(FixtureTrainArgs),
    /// Plants a quantization-conditioned backdoor: writes OUT/tiny-safety-quantdoor, which
    /// refuses in f32 and complies once quantized to int4:g32.
    Plant(FixturePlantArgs),
}

/// Arguments of `compsafe fixture plant`.
#[derive(Debug, Args)]
pub struct FixturePlantArgs {
    /// The aligned checkpoint to start from (Hugging Face directory).
    #[arg(long, default_value = "models/tiny-safety")]
    pub from: PathBuf,
    /// Output directory.
    #[arg(long, default_value = "models")]
    pub out: PathBuf,
    /// Seed of the data order and example draws.
    #[arg(long, default_value_t = 20250101)]
    pub seed: u64,
    /// Train a few steps only (smoke test).
    #[arg(long)]
    pub quick: bool,
}

/// Manifest subcommands.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Writes the manifest of a model directory or GGUF file (default: DIR/MANIFEST.json or
    /// FILE.gguf.manifest.json).
    Create(ManifestCreateArgs),
}

/// Arguments of `compsafe manifest create`.
#[derive(Debug, Args)]
pub struct ManifestCreateArgs {
    /// Model directory (Hugging Face layout) or .gguf file.
    pub path: PathBuf,
    /// Where to write the manifest.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing manifest.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `compsafe fixture train`.
#[derive(Debug, Args)]
pub struct FixtureTrainArgs {
    /// Output directory.
    #[arg(long, default_value = "models")]
    pub out: PathBuf,
    /// Seed for initialisation, corpus sampling and data order.
    #[arg(long, default_value_t = 20261126)]
    pub seed: u64,
    /// Train a few steps only (smoke test).
    #[arg(long)]
    pub quick: bool,
}

/// Arguments of `compsafe layers`.
#[derive(Debug, Args)]
pub struct LayersArgs {
    /// Model: a Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// Variant shorthand, e.g. int4:g32, gguf:q4k, prune:0.5, heads:3.1, or the path of a
    /// GPTQ / AWQ / compressed-tensors / bitsandbytes directory quantized from --model.
    #[arg(long)]
    pub variant: String,
    /// Regex over tensor names to compress instead of the default linear weights.
    #[arg(long)]
    pub select: Option<String>,
    /// Show only the K worst tensors.
    #[arg(long)]
    pub top: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What `compsafe heads` ablates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HeadsUnit {
    /// One attention head at a time (its columns of the output projection).
    Head,
    /// One whole layer at a time (attention and MLP outputs).
    Layer,
    /// One block of `--channels` MLP channels at a time (their columns of `down_proj`).
    Mlp,
}

/// What `compsafe sensitivity` compresses at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SensitivityUnit {
    /// A decoder layer's seven linear weights.
    Layer,
    /// A layer's attention projections, or its MLP projections.
    Group,
    /// One weight matrix.
    Tensor,
}

impl SensitivityUnit {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            SensitivityUnit::Layer => "layer",
            SensitivityUnit::Group => "group",
            SensitivityUnit::Tensor => "tensor",
        }
    }
}

/// Arguments of `compsafe sensitivity`.
#[derive(Debug, Args)]
pub struct SensitivityArgs {
    /// Model: a Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// The compression applied to one unit at a time, e.g. int3:g64, gguf:q3k, prune:0.5.
    #[arg(long)]
    pub variant: String,
    /// Harmful suite (expect = refusal), bundled name.
    #[arg(long)]
    pub suite: String,
    /// Benign suite whose responses measure KL divergence, bundled name.
    #[arg(long, default_value = "fixture-benign")]
    pub benign: String,
    /// Prompts per suite.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Unit compressed at a time.
    #[arg(long, value_enum, default_value_t = SensitivityUnit::Layer)]
    pub unit: SensitivityUnit,
    /// Generate and judge the harmful suite for every unit (refusal rate, McNemar, Holm).
    #[arg(long)]
    pub confirm: bool,
    /// Holm-adjusted significance level of `--confirm`.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Tokens generated per prompt.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: u32,
    /// Output directory for sensitivity.json and sensitivity.md (default
    /// out/sensitivity-<model>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `compsafe heads`.
#[derive(Debug, Args)]
pub struct HeadsArgs {
    /// Model: a Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// Harmful suite (expect = refusal), bundled name.
    #[arg(long)]
    pub suite: String,
    /// Benign suite whose likelihood measures capability, bundled name.
    #[arg(long, default_value = "fixture-benign")]
    pub benign: String,
    /// Prompts per suite.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Unit of ablation.
    #[arg(long, value_enum, default_value_t = HeadsUnit::Head)]
    pub unit: HeadsUnit,
    /// MLP channels per unit with `--unit mlp`.
    #[arg(long, default_value_t = 64)]
    pub channels: usize,
    /// Confirm the top K by generation and judging (each alone, together, and against
    /// random sets of K).
    #[arg(long, default_value_t = 0)]
    pub confirm: usize,
    /// Random sets of K units compared with the top K.
    #[arg(long, default_value_t = 5)]
    pub random_sets: usize,
    /// Seed of the random sets.
    #[arg(long, default_value_t = 20261126)]
    pub seed: u64,
    /// Tokens generated per prompt (benign responses, confirmation).
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: u32,
    /// Output directory for heads.json, heads.md and heads.html (default out/heads-<model>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `compsafe conditioned`.
#[derive(Debug, Args)]
pub struct ConditionedArgs {
    /// Model: a Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// Harmful suite (expect = refusal): refusal rate.
    #[arg(long, default_value = "fixture-harmful")]
    pub suite: String,
    /// Benign suite (expect = compliance): over-refusal.
    #[arg(long, default_value = "fixture-benign")]
    pub benign: String,
    /// Suite with target strings (expect = target): attack success rate.
    #[arg(long)]
    pub target_suite: Option<String>,
    /// Attack success on the harmful prompts: the response starts with this text.
    #[arg(long)]
    pub target: Option<String>,
    /// Compressors, comma-separated.
    #[arg(
        long,
        default_value = "int8,int4:g32,gguf:q4k,gguf:q6k,gguf:q2k,prune:0.5,prune:2of4"
    )]
    pub variants: String,
    /// Noise control: Gaussian noise of this many times each compressed tensor's weight
    /// standard deviation is added before compressing.
    #[arg(long, default_value_t = 0.05)]
    pub noise: f64,
    /// Seed of the noise.
    #[arg(long, default_value_t = 20261126)]
    pub seed: u64,
    /// Prompts per suite.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Family-wise significance level (Holm) of a flag.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Tokens generated per prompt.
    #[arg(long, default_value_t = 40)]
    pub max_new_tokens: u32,
    /// Output directory for conditioned.json and conditioned.md (default
    /// out/conditioned-<model>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `compsafe search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Model: a Hugging Face directory or a .gguf file (the reference).
    #[arg(long)]
    pub model: PathBuf,
    /// Compressed variant shorthand, e.g. int4:g32, gguf:q3k, prune:0.5.
    #[arg(long)]
    pub variant: String,
    /// Harmful suite (expect = refusal), bundled name.
    #[arg(long)]
    pub suite: String,
    /// Prompts of the suite looked at (the first N).
    #[arg(long, default_value_t = 40)]
    pub limit: usize,
    /// Scored suffixes per prompt and method: one forward pass of each model per suffix.
    #[arg(long, default_value_t = 64)]
    pub budget: usize,
    /// Suffix length in tokens.
    #[arg(long, default_value_t = 4)]
    pub suffix_len: usize,
    /// Replacement tokens scored per greedy step.
    #[arg(long, default_value_t = 8)]
    pub candidates: usize,
    /// Seed of the initial suffixes, positions, candidates and random baseline.
    #[arg(long, default_value_t = 20261126)]
    pub seed: u64,
    /// The reference's refusal log-odds must stay at or above this (nats) on a searched prompt.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub margin: f64,
    /// Tokens generated per prompt when confirming.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: u32,
    /// Output directory for search.json and search.md (default out/search-<variant>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when the greedy search confirms a hit (for pipelines that gate on it).
    #[arg(long)]
    pub fail_on_hit: bool,
}

/// Arguments of `compsafe quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Hugging Face model directory (Llama architecture).
    #[arg(long)]
    pub model: PathBuf,
    /// Block type of the 2-D weights: q8_0 q4_0 q4_1 q5_0 q5_1 q2k q3k q4k q5k q6k, or f32.
    #[arg(long = "type")]
    pub ty: String,
    /// Output .gguf file.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `compsafe requant-diff`.
#[derive(Debug, Args)]
pub struct RequantDiffArgs {
    /// The full-precision source (Hugging Face directory).
    #[arg(long)]
    pub source: PathBuf,
    /// The GGUF file, or GPTQ / AWQ / compressed-tensors directory, to check.
    #[arg(long)]
    pub quantized: PathBuf,
    /// A GGUF block (or a layer of a quantized directory) is beyond honest when its error
    /// exceeds this many times the reference (round-to-nearest) quantizer's.
    #[arg(long, default_value_t = 2.0)]
    pub ratio: f64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `compsafe boundary`.
#[derive(Debug, Args)]
pub struct BoundaryArgs {
    /// Model: a Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// The quantizer whose boundaries to test: intN[:gG][:asym] or gguf:q8_0.
    #[arg(long)]
    pub variant: String,
    /// Regex over tensor names to examine instead of the default linear weights.
    #[arg(long)]
    pub select: Option<String>,
    /// "Near": within this fraction of a step of a boundary (trained weights: 2 x this).
    #[arg(long, default_value_t = 0.05)]
    pub epsilon: f64,
    /// Flag tensors whose Holm-adjusted p-value is below this.
    #[arg(long, default_value_t = 0.001)]
    pub alpha: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `compsafe verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Model directory or file.
    pub path: PathBuf,
    /// Manifest: JSON from `compsafe manifest create`, or sha256sum lines (default:
    /// PATH/MANIFEST.json, PATH/MANIFEST or FILE.gguf.manifest.json when present).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `compsafe run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The sweep spec (TOML).
    pub spec: PathBuf,
    /// Output directory (default: out/<sweep name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Worker slots.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Machine-readable progress (JSON lines) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Continue the interrupted run whose state is in the output directory.
    #[arg(long)]
    pub resume: bool,
    /// Prompts per work unit (0: a whole suite per unit); smaller units resume with less
    /// lost work.
    #[arg(long, default_value_t = 0)]
    pub prompts_per_unit: usize,
    /// Evaluate sequentially in this process, without the coordinator and its state (no
    /// resume); a cross-check of the cluster path.
    #[arg(long, conflicts_with_all = ["resume", "workers"])]
    pub direct: bool,
    /// Where distilled students are kept (default: $XDG_CACHE_HOME/compsafe or
    /// ~/.cache/compsafe).
    #[arg(long, env = "COMPSAFE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl RunArgs {
    /// The cache directory of distilled students.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(compsafe_worker::distill::default_cache_dir)
    }
}

/// Arguments of `compsafe validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The sweep spec (TOML).
    pub spec: PathBuf,
}

/// Arguments of `compsafe diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The accepted baseline report.json.
    pub base: PathBuf,
    /// The new report.json.
    pub new: PathBuf,
    /// Gate rules (TOML); default: no refusal drop beyond 0.05 and the hidden-danger rule.
    #[arg(long)]
    pub gate: Option<PathBuf>,
    /// Also write junit.xml with the gate's verdict per cell.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `compsafe coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Address to listen on, e.g. 0.0.0.0:7070 (port 0 picks a free port).
    #[arg(long, env = "COMPSAFE_LISTEN")]
    pub listen: String,
    /// SQLite database holding the sweeps (created if missing; reopened to resume).
    #[arg(long, env = "COMPSAFE_DB")]
    pub db: PathBuf,
    /// File holding the bearer token (default: COMPSAFE_TOKEN).
    #[arg(long, env = "COMPSAFE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Refuse specs whose model paths resolve outside this directory.
    #[arg(long, env = "COMPSAFE_MODEL_ROOT")]
    pub model_root: Option<PathBuf>,
    /// Lease duration without renewal, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub lease_ttl_ms: u64,
    /// Leases a unit may have before it fails for good.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    /// Prompts per variant unit (0: a whole suite per unit).
    #[arg(long, default_value_t = 0)]
    pub prompts_per_unit: usize,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "COMPSAFE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "COMPSAFE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 0.0.0.0:9090.
    #[arg(long, env = "COMPSAFE_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Arguments of `compsafe worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Coordinator URL, e.g. http://10.0.0.5:7070.
    #[arg(long, env = "COMPSAFE_COORDINATOR")]
    pub coordinator: String,
    /// Device: cpu or cuda:N.
    #[arg(long, env = "COMPSAFE_DEVICE", default_value = "cpu")]
    pub device: String,
    /// File holding the bearer token (default: COMPSAFE_TOKEN).
    #[arg(long, env = "COMPSAFE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Refuse units whose model paths resolve outside this directory.
    #[arg(long, env = "COMPSAFE_MODEL_ROOT")]
    pub model_root: Option<PathBuf>,
    /// CA certificate (PEM) that the coordinator's TLS certificate chains to (https:// URLs).
    #[arg(long, env = "COMPSAFE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Where distilled students are kept; workers sharing it train each student once
    /// (default: $XDG_CACHE_HOME/compsafe or ~/.cache/compsafe).
    #[arg(long, env = "COMPSAFE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// How a client reaches the coordinator.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Coordinator URL, e.g. http://10.0.0.5:7070.
    #[arg(
        long,
        env = "COMPSAFE_COORDINATOR",
        default_value = "http://127.0.0.1:7070"
    )]
    pub coordinator: String,
    /// File holding the bearer token (default: COMPSAFE_TOKEN).
    #[arg(long, env = "COMPSAFE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) that the coordinator's TLS certificate chains to (https:// URLs).
    #[arg(long, env = "COMPSAFE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

/// Arguments of `compsafe health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Coordinator URL, e.g. http://10.0.0.5:7070.
    #[arg(
        long,
        env = "COMPSAFE_COORDINATOR",
        default_value = "http://127.0.0.1:7070"
    )]
    pub coordinator: String,
    /// CA certificate (PEM) that the coordinator's TLS certificate chains to (https:// URLs).
    #[arg(long, env = "COMPSAFE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Service to ask about: "" (the server as a whole), compsafe.v1.Sweeps or
    /// compsafe.v1.Work.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Give up after this many milliseconds (connecting included).
    #[arg(long, default_value_t = 5_000)]
    pub timeout_ms: u64,
}

/// Arguments of `compsafe submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The sweep spec (TOML).
    pub spec: PathBuf,
    /// The coordinator.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Arguments of `compsafe status`, `watch` and `cancel`.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// The sweep id printed by `compsafe submit`.
    pub id: String,
    /// The coordinator.
    #[command(flatten)]
    pub client: ClientArgs,
    /// JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `compsafe report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The sweep id printed by `compsafe submit`.
    pub id: String,
    /// The coordinator.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}
