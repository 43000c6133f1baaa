//! Sweeps, results and a worker's end of a Pull stream for the coordinator's tests and its scale
//! benchmark (shared with
//! `#[path]`; each user takes what it needs).
#![allow(dead_code)]

use compsafe_coordinator::store::{SqliteStore, SweepRow, SweepState, UnitRow, UnitState};
use compsafe_coordinator::{Config, Coordinator};
use compsafe_core::report::{Integrity, Record, VariantInfo};
use compsafe_proto::pb::work_client::WorkClient;
use compsafe_proto::pb::{
    pull_request, pull_response, CompleteRequest, CompleteResponse, LeaseRequest, PullRequest,
    PullResponse, WorkUnit,
};
use compsafe_proto::{AuthChannel, ReferenceWire, UnitResult, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tonic::Code;

/// A sweep of `variants` x `suites`, one unit of `n` prompts each, the reference first.
pub fn sweep(id: &str, variants: u32, suites: u32, n: u32) -> (SweepRow, Vec<UnitRow>) {
    let row = SweepRow {
        id: id.into(),
        name: "sim".into(),
        spec_text: String::new(),
        spec_path: "/sim.toml".into(),
        state: SweepState::Running,
        created_ms: 0,
        started_at: "t0".into(),
        finished_at: None,
        error: None,
    };
    let mut units = Vec::new();
    for v in 0..variants {
        for s in 0..suites {
            units.push(UnitRow {
                sweep_id: id.into(),
                ordinal: units.len() as u32,
                kind: compsafe_core::unit::UnitKind::Evaluate,
                group: s,
                stage: u32::from(v != 0),
                variant: v,
                suite: s,
                start: 0,
                end: n,
                model: "/m".into(),
                state: UnitState::Queued,
                attempts: 0,
                lease_id: 0,
                deadline_ms: 0,
                worker: String::new(),
                error: String::new(),
            });
        }
    }
    (row, units)
}

/// What a fake runner returns for a unit of `n` prompts.
pub fn result(n: u32, tag: &str) -> String {
    let mut tokens = std::collections::BTreeMap::new();
    tokens.insert("p0".to_string(), (vec![1, 2], vec![3]));
    serde_json::to_string(&UnitResult {
        records: (0..n)
            .map(|i| Record {
                prompt_id: format!("p{i}"),
                response: Some(tag.into()),
                ..Record::default()
            })
            .collect(),
        variant: reference_variant(tag),
        model: None,
        reference: Some(ReferenceWire {
            tokens,
            typical_logprob: Some(-1.0),
        }),
        analysis: None,
    })
    .unwrap()
}

/// What a runner that returns at once sends for a unit without prompts.
pub fn empty_result() -> String {
    serde_json::to_string(&UnitResult {
        records: vec![],
        variant: reference_variant("fp32"),
        model: None,
        reference: None,
        analysis: None,
    })
    .unwrap()
}

/// The description of an unpinned fp32 reference variant named `name`.
fn reference_variant(name: &str) -> VariantInfo {
    VariantInfo {
        name: name.into(),
        kind: "reference".into(),
        method: "fp32".into(),
        bits_per_weight: None,
        bytes: None,
        integrity: Integrity::Unpinned,
        weight_error: None,
        training: None,
        error: None,
        integrity_failures: Vec::new(),
        calibration: None,
    }
}

/// A coordinator with the store at `db` and bearer token `token`, holding one running sweep of
/// `n` reference units of `n` suites (none waits for another), serving on a loopback port until
/// `shutdown`. Returns its URL and the server task.
pub async fn serve_sweep(
    db: &std::path::Path,
    token: &str,
    n: u32,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (
    String,
    tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
) {
    let c = Coordinator::start(SqliteStore::open(db).unwrap(), Config::with_token(token)).unwrap();
    let (row, units) = sweep("sweep", 1, n, 0);
    c.handle().submit(row, units).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(compsafe_coordinator::serve(c, listener, shutdown));
    (url, server)
}

/// A worker's end of one Pull stream.
pub struct Stream {
    pub tx: mpsc::Sender<PullRequest>,
    pub answers: tonic::Streaming<PullResponse>,
}

impl Stream {
    pub async fn open(w: &mut WorkClient<AuthChannel>) -> Stream {
        let (tx, rx) = mpsc::channel(1);
        let answers = w
            .pull(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Stream { tx, answers }
    }

    pub async fn ask(&mut self, call: pull_request::Call) -> pull_response::Answer {
        self.tx
            .send(PullRequest { call: Some(call) })
            .await
            .unwrap();
        self.answers
            .message()
            .await
            .expect("the stream stays open")
            .expect("every call is answered")
            .answer
            .expect("an answer")
    }

    pub async fn lease(&mut self, worker: &str) -> Option<WorkUnit> {
        match self
            .ask(pull_request::Call::Lease(LeaseRequest {
                protocol: PROTOCOL_VERSION,
                worker_id: worker.into(),
                loaded_models: vec![],
            }))
            .await
        {
            pull_response::Answer::Lease(l) => l.unit,
            other => panic!("lease answered {other:?}"),
        }
    }

    pub async fn complete(
        &mut self,
        req: CompleteRequest,
    ) -> Result<CompleteResponse, (Code, String)> {
        match self.ask(pull_request::Call::Complete(req)).await {
            pull_response::Answer::Complete(c) => Ok(c),
            pull_response::Answer::Error(e) => Err((Code::from(e.code), e.message)),
            other => panic!("complete answered {other:?}"),
        }
    }
}
