//! The Pull stream over real gRPC on loopback: each call is answered in order as its unary
//! twin would answer it, a refused call is answered on the stream and the stream goes on, and
//! the stream is refused without a token.

mod common;

use compsafe_proto::pb::{CompleteRequest, LeaseRequest, PullRequest, RegisterRequest, WorkUnit};
use compsafe_proto::{connect, work_client, BearerToken, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tonic::Code;

const TOKEN: &str = "pull-test-token";

/// A coordinator on port 0 with one running sweep of `n` independent units.
async fn coordinator(dir: &std::path::Path, n: u32) -> String {
    common::serve_sweep(&dir.join("s.db"), TOKEN, n, std::future::pending())
        .await
        .0
}

fn complete(worker: &str, unit: &WorkUnit, lease_id: u64, lease_next: bool) -> CompleteRequest {
    CompleteRequest {
        protocol: PROTOCOL_VERSION,
        worker_id: worker.into(),
        unit_id: unit.unit_id.clone(),
        lease_id,
        result_json: common::empty_result(),
        lease_next,
        loaded_models: vec![],
    }
}

#[tokio::test]
async fn calls_on_a_pull_stream_are_answered_like_unary_calls() {
    let dir = tempfile::tempdir().unwrap();
    let url = coordinator(dir.path(), 3).await;
    let token = BearerToken::new(TOKEN).unwrap();
    let mut w = work_client(connect(&url, &token).await.unwrap());
    let worker = w
        .register(RegisterRequest {
            protocol: PROTOCOL_VERSION,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let mut s = common::Stream::open(&mut w).await;

    let first = s.lease(&worker).await.expect("a unit is leasable");

    // A result under a lease id the coordinator never gave is fenced; the stream goes on.
    let (code, message) = s
        .complete(complete(&worker, &first, first.lease_id + 1000, false))
        .await
        .unwrap_err();
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(message.contains("lease refused"), "{message}");

    // A protocol other than the coordinator's is refused per call, as on a unary call.
    let mut old = complete(&worker, &first, first.lease_id, false);
    old.protocol = PROTOCOL_VERSION + 1;
    let (code, _) = s.complete(old).await.unwrap_err();
    assert_eq!(code, Code::FailedPrecondition);

    // The real result is accepted and the next unit comes with the answer.
    let r = s
        .complete(complete(&worker, &first, first.lease_id, true))
        .await
        .unwrap();
    assert!(r.accepted);
    let second = r.next.expect("lease_next leases the next unit");
    assert_ne!(second.unit_id, first.unit_id);

    // The same result again changes nothing: not accepted, no error.
    let r = s
        .complete(complete(&worker, &first, first.lease_id, false))
        .await
        .unwrap();
    assert!(!r.accepted, "a duplicate result is not accepted again");

    // Unary calls and the stream share one scheduler: the unary Lease takes the last unit, so
    // the stream's lease_next after the second result finds nothing.
    let third = w
        .lease(LeaseRequest {
            protocol: PROTOCOL_VERSION,
            worker_id: worker.clone(),
            loaded_models: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .unit
        .expect("the third unit");
    let r = s
        .complete(complete(&worker, &second, second.lease_id, true))
        .await
        .unwrap();
    assert!(r.accepted);
    assert!(r.next.is_none(), "no unit is left to lease");
    let r = s
        .complete(complete(&worker, &third, third.lease_id, false))
        .await
        .unwrap();
    assert!(r.accepted);
    assert!(s.lease(&worker).await.is_none());

    // Closing our end ends the coordinator's.
    drop(s.tx);
    assert!(s.answers.message().await.unwrap().is_none());
}

#[tokio::test]
async fn a_pull_stream_without_the_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = coordinator(dir.path(), 1).await;
    let wrong = BearerToken::new("not-the-token").unwrap();
    let mut w = work_client(connect(&url, &wrong).await.unwrap());
    let (_tx, rx) = mpsc::channel::<PullRequest>(1);
    let e = w
        .pull(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn shutting_down_ends_open_pull_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (url, server) = common::serve_sweep(&dir.path().join("s.db"), TOKEN, 2, async {
        let _ = stopped.await;
    })
    .await;
    let token = BearerToken::new(TOKEN).unwrap();
    let mut w = work_client(connect(&url, &token).await.unwrap());
    let mut s = common::Stream::open(&mut w).await;
    assert!(s.lease("w").await.is_some());
    // The worker keeps its stream open (it is running the unit) while the coordinator stops:
    // the graceful shutdown must not wait for it.
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("the server stops while a Pull stream is open")
        .unwrap()
        .unwrap();
    assert!(
        !matches!(s.answers.message().await, Ok(Some(_))),
        "the stream has ended"
    );
}
