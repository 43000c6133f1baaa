//! The bad-input corpus of the gRPC surface: every refused call gets its status code and a
//! message naming the field, and the coordinator keeps serving.

use std::time::Duration;

use super::*;
use compsafe_coordinator::{Config, Coordinator, SqliteStore};
use compsafe_proto::pb::{
    CompleteRequest, FailRequest, GetRequest, LeaseRequest, ListRequest, RegisterRequest,
    RenewRequest, SubmitRequest,
};
use compsafe_proto::{connect, sweeps_client, work_client, BearerToken, PROTOCOL_VERSION};
use tonic::Code;

const TOKEN: &str = "corpus-token";

struct Env {
    url: String,
    token: BearerToken,
    models: PathBuf,
    dir: PathBuf,
}

async fn healthy(env: &Env) -> Result<(), String> {
    let ch = tonic::transport::Endpoint::from_shared(env.url.clone())
        .unwrap()
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
    let r = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    if r.status != tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        return Err(format!("health {}", r.status));
    }
    let mut c = sweeps_client(connect(&env.url, &env.token).await?);
    c.list(ListRequest {
        protocol: PROTOCOL_VERSION,
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(())
}

fn spec_text(env: &Env, model: &str) -> String {
    base(&env.dir).replace(
        &format!("path = \"{}\"", env.dir.join("model").display()),
        &format!("path = \"{model}\""),
    )
}

async fn submit(env: &Env, model: &str) -> Result<String, tonic::Status> {
    let mut c = sweeps_client(connect(&env.url, &env.token).await.unwrap());
    c.submit(SubmitRequest {
        protocol: PROTOCOL_VERSION,
        spec_text: spec_text(env, model),
        spec_path: env.dir.join("spec.toml").display().to_string(),
    })
    .await
    .map(|r| r.into_inner().sweep_id)
}

type Case = (
    &'static str,
    Code,
    &'static str,
    fn(&Env) -> std::pin::Pin<Box<dyn std::future::Future<Output = tonic::Status> + '_>>,
);

async fn leased(env: &Env) -> (String, compsafe_proto::pb::WorkUnit) {
    let id = submit(env, &env.models.join("m").display().to_string())
        .await
        .unwrap();
    let mut w = work_client(connect(&env.url, &env.token).await.unwrap());
    let worker = w
        .register(RegisterRequest {
            protocol: PROTOCOL_VERSION,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    loop {
        let u = w
            .lease(LeaseRequest {
                protocol: PROTOCOL_VERSION,
                worker_id: worker.clone(),
                loaded_models: vec![],
            })
            .await
            .unwrap()
            .into_inner()
            .unit;
        if let Some(u) = u {
            if u.unit_id.starts_with(&id) {
                return (id, u);
            }
        }
    }
}

fn complete(u: &compsafe_proto::pb::WorkUnit, lease: u64, json: &str) -> CompleteRequest {
    CompleteRequest {
        protocol: PROTOCOL_VERSION,
        worker_id: "w".into(),
        unit_id: u.unit_id.clone(),
        lease_id: lease,
        result_json: json.into(),
        ..Default::default()
    }
}

fn cases() -> Vec<Case> {
    vec![
        ("no token", Code::Unauthenticated, "bearer", |e| {
            Box::pin(async move {
                let ch = tonic::transport::Endpoint::from_shared(e.url.clone())
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
                compsafe_proto::pb::sweeps_client::SweepsClient::new(ch)
                    .list(ListRequest {
                        protocol: PROTOCOL_VERSION,
                    })
                    .await
                    .unwrap_err()
            })
        }),
        ("wrong token", Code::Unauthenticated, "token", |e| {
            Box::pin(async move {
                let t = BearerToken::new("corpus-tokem").unwrap();
                work_client(connect(&e.url, &t).await.unwrap())
                    .register(RegisterRequest {
                        protocol: PROTOCOL_VERSION,
                        ..Default::default()
                    })
                    .await
                    .unwrap_err()
            })
        }),
        (
            "wrong protocol version",
            Code::FailedPrecondition,
            "protocol version 7",
            |e| {
                Box::pin(async move {
                    sweeps_client(connect(&e.url, &e.token).await.unwrap())
                        .list(ListRequest { protocol: 7 })
                        .await
                        .unwrap_err()
                })
            },
        ),
        ("oversized message", Code::OutOfRange, "", |e| {
            Box::pin(async move {
                let mut c = compsafe_proto::pb::sweeps_client::SweepsClient::with_interceptor(
                    tonic::transport::Endpoint::from_shared(e.url.clone())
                        .unwrap()
                        .connect()
                        .await
                        .unwrap(),
                    e.token.clone(),
                )
                .max_encoding_message_size(usize::MAX);
                c.submit(SubmitRequest {
                    protocol: PROTOCOL_VERSION,
                    spec_text: "x".repeat(compsafe_proto::MAX_MESSAGE_BYTES + 1),
                    spec_path: "/big.toml".into(),
                })
                .await
                .unwrap_err()
            })
        }),
        (
            "spec that does not parse",
            Code::InvalidArgument,
            "max_new_tokens",
            |e| {
                Box::pin(async move {
                    let mut c = sweeps_client(connect(&e.url, &e.token).await.unwrap());
                    c.submit(SubmitRequest {
                        protocol: PROTOCOL_VERSION,
                        spec_text: spec_text(e, &e.models.join("m").display().to_string())
                            .replace("max_new_tokens = 4", "max_new_tokens = \"x\""),
                        spec_path: e.dir.join("spec.toml").display().to_string(),
                    })
                    .await
                    .unwrap_err()
                })
            },
        ),
        ("model path with ..", Code::InvalidArgument, "..", |e| {
            Box::pin(async move {
                submit(e, &format!("{}/m/../../model", e.models.display()))
                    .await
                    .unwrap_err()
            })
        }),
        (
            "model path outside the root",
            Code::InvalidArgument,
            "outside the model root",
            |e| {
                Box::pin(async move {
                    submit(e, &e.dir.join("model").display().to_string())
                        .await
                        .unwrap_err()
                })
            },
        ),
        (
            "symlink escaping the root",
            Code::InvalidArgument,
            "outside the model root",
            |e| {
                Box::pin(async move {
                    submit(e, &e.models.join("escape").display().to_string())
                        .await
                        .unwrap_err()
                })
            },
        ),
        ("unknown sweep", Code::NotFound, "nosuch", |e| {
            Box::pin(async move {
                sweeps_client(connect(&e.url, &e.token).await.unwrap())
                    .get(GetRequest {
                        protocol: PROTOCOL_VERSION,
                        sweep_id: "nosuch".into(),
                    })
                    .await
                    .unwrap_err()
            })
        }),
        (
            "report of an unfinished sweep",
            Code::FailedPrecondition,
            "running",
            |e| {
                Box::pin(async move {
                    let id = submit(e, &e.models.join("m").display().to_string())
                        .await
                        .unwrap();
                    sweeps_client(connect(&e.url, &e.token).await.unwrap())
                        .report(GetRequest {
                            protocol: PROTOCOL_VERSION,
                            sweep_id: id,
                        })
                        .await
                        .unwrap_err()
                })
            },
        ),
        (
            "result for an unknown unit",
            Code::NotFound,
            "nosuch",
            |e| {
                Box::pin(async move {
                    work_client(connect(&e.url, &e.token).await.unwrap())
                        .complete(CompleteRequest {
                            protocol: PROTOCOL_VERSION,
                            unit_id: "nosuch:0".into(),
                            lease_id: 1,
                            result_json: "{}".into(),
                            ..Default::default()
                        })
                        .await
                        .unwrap_err()
                })
            },
        ),
        (
            "result with a malformed unit id",
            Code::InvalidArgument,
            "not <sweep>:<ordinal>",
            |e| {
                Box::pin(async move {
                    work_client(connect(&e.url, &e.token).await.unwrap())
                        .complete(CompleteRequest {
                            protocol: PROTOCOL_VERSION,
                            unit_id: "garbage".into(),
                            ..Default::default()
                        })
                        .await
                        .unwrap_err()
                })
            },
        ),
        (
            "result for a superseded lease",
            Code::FailedPrecondition,
            "no longer current",
            |e| {
                Box::pin(async move {
                    let (_, u) = leased(e).await;
                    work_client(connect(&e.url, &e.token).await.unwrap())
                        .complete(complete(&u, u.lease_id + 1000, "{}"))
                        .await
                        .unwrap_err()
                })
            },
        ),
        (
            "result for an expired lease",
            Code::FailedPrecondition,
            "expired",
            |e| {
                Box::pin(async move {
                    let (_, u) = leased(e).await;
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    work_client(connect(&e.url, &e.token).await.unwrap())
                        .complete(complete(&u, u.lease_id, "{}"))
                        .await
                        .unwrap_err()
                })
            },
        ),
        (
            "garbage result",
            Code::InvalidArgument,
            "result of unit",
            |e| {
                Box::pin(async move {
                    let (_, u) = leased(e).await;
                    work_client(connect(&e.url, &e.token).await.unwrap())
                        .complete(complete(&u, u.lease_id, "{\"records\": 12"))
                        .await
                        .unwrap_err()
                })
            },
        ),
        (
            "result with the wrong number of records",
            Code::InvalidArgument,
            "records, expected",
            |e| {
                Box::pin(async move {
                    let (_, u) = leased(e).await;
                    let r = serde_json::json!({"records": [], "variant": {"name": "fp32", "kind": "reference",
                        "method": "fp32", "integrity": "unpinned"}, "model": null, "reference": null});
                    work_client(connect(&e.url, &e.token).await.unwrap())
                        .complete(complete(&u, u.lease_id, &r.to_string()))
                        .await
                        .unwrap_err()
                })
            },
        ),
        (
            "renewal of a lease never granted",
            Code::FailedPrecondition,
            "no longer current",
            |e| {
                Box::pin(async move {
                    let (_, u) = leased(e).await;
                    work_client(connect(&e.url, &e.token).await.unwrap())
                        .renew(RenewRequest {
                            protocol: PROTOCOL_VERSION,
                            worker_id: "w".into(),
                            unit_id: u.unit_id.clone(),
                            lease_id: u.lease_id + 7,
                        })
                        .await
                        .unwrap_err()
                })
            },
        ),
        (
            "failure report for a lease never granted",
            Code::FailedPrecondition,
            "no longer current",
            |e| {
                Box::pin(async move {
                    let (_, u) = leased(e).await;
                    work_client(connect(&e.url, &e.token).await.unwrap())
                        .fail(FailRequest {
                            protocol: PROTOCOL_VERSION,
                            worker_id: "w".into(),
                            unit_id: u.unit_id.clone(),
                            lease_id: u.lease_id + 7,
                            reason: "x".into(),
                            retryable: true,
                            released: false,
                            fault: 0,
                        })
                        .await
                        .unwrap_err()
                })
            },
        ),
        (
            "cancel of an unknown sweep",
            Code::NotFound,
            "nosuch",
            |e| {
                Box::pin(async move {
                    sweeps_client(connect(&e.url, &e.token).await.unwrap())
                        .cancel(compsafe_proto::pb::CancelRequest {
                            protocol: PROTOCOL_VERSION,
                            sweep_id: "nosuch".into(),
                        })
                        .await
                        .unwrap_err()
                })
            },
        ),
    ]
}

#[test]
fn every_bad_rpc_gets_its_code_and_the_coordinator_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let models = dir.join("models");
    copy_dir(&fixture_model(), &models.join("m"));
    copy_dir(&fixture_model(), &dir.join("model"));
    base(&dir);
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.join("model"), models.join("escape")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cases = cases();
    let failures = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut cfg = Config::with_token(TOKEN);
        cfg.model_root = Some(models.clone());
        cfg.sched.lease_ttl_ms = 500;
        cfg.tick = Duration::from_millis(50);
        let c = Coordinator::start(SqliteStore::open(&dir.join("c.db")).unwrap(), cfg).unwrap();
        tokio::spawn(compsafe_coordinator::serve(
            c,
            listener,
            std::future::pending(),
        ));
        let env = Env {
            url,
            token: BearerToken::new(TOKEN).unwrap(),
            models,
            dir,
        };
        healthy(&env).await.unwrap();
        let mut failures = Vec::new();
        for (name, code, must, call) in &cases {
            let st = call(&env).await;
            if st.code() != *code || !st.message().contains(must) {
                failures.push(format!(
                    "{name}: got {:?} {:?}, expected {code:?} with {must:?}",
                    st.code(),
                    st.message()
                ));
            }
            if let Err(e) = healthy(&env).await {
                failures.push(format!("{name}: coordinator unhealthy afterwards: {e}"));
            }
        }
        failures
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    record("bad_inputs_rpc.txt", cases.len());
}
