//! The service's surface as a client meets it: TLS (rustls) with a trusted CA, plain text
//! refused, and Prometheus metrics on their own port.

use compsafe_coordinator::{Config, Coordinator, SqliteStore};
use std::time::Duration;

use compsafe_proto::pb::ListRequest;
use compsafe_proto::{connect, sweeps_client, BearerToken, PROTOCOL_VERSION};
use compsafe_tests::{root, TOKEN};

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn tls_serves_clients_that_trust_its_ca_and_refuses_plain_text() {
    let tls = root().join("tests/tests/tls");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut cfg = Config::with_token(TOKEN);
        cfg.tls = Some((
            std::fs::read(tls.join("server.pem")).unwrap(),
            std::fs::read(tls.join("server.key")).unwrap(),
        ));
        let c =
            Coordinator::start(SqliteStore::open(&tmp.path().join("s.db")).unwrap(), cfg).unwrap();
        tokio::spawn(compsafe_coordinator::serve(
            c,
            listener,
            std::future::pending(),
        ));
        let token = BearerToken::new(TOKEN).unwrap();
        let ca = std::fs::read(tls.join("ca.pem")).unwrap();
        for host in ["localhost", "127.0.0.1"] {
            let url = format!("https://{host}:{port}");
            let mut c = sweeps_client(
                compsafe_proto::connect_with(&url, &token, Some(&ca))
                    .await
                    .unwrap(),
            );
            let list = c
                .list(ListRequest {
                    protocol: PROTOCOL_VERSION,
                })
                .await;
            assert!(list.is_ok(), "{url}: {list:?}");
        }
        // https without a CA is refused before connecting; a CA that did not sign the
        // certificate fails the handshake; plain text to a TLS port gets no answer.
        let e = compsafe_proto::connect_with(&format!("https://localhost:{port}"), &token, None)
            .await
            .unwrap_err();
        assert!(e.contains("--tls-ca"), "{e}");
        let stranger = std::fs::read(tls.join("server.pem")).unwrap();
        let bad = compsafe_proto::connect_with(
            &format!("https://localhost:{port}"),
            &token,
            Some(&stranger),
        )
        .await;
        match bad {
            Err(_) => {}
            Ok(ch) => assert!(sweeps_client(ch)
                .list(ListRequest {
                    protocol: PROTOCOL_VERSION
                })
                .await
                .is_err()),
        }
        let plain = connect(&format!("http://127.0.0.1:{port}"), &token).await;
        if let Ok(ch) = plain {
            let r = tokio::time::timeout(
                Duration::from_secs(5),
                sweeps_client(ch).list(ListRequest {
                    protocol: PROTOCOL_VERSION,
                }),
            )
            .await;
            assert!(!matches!(r, Ok(Ok(_))), "plain text was answered: {r:?}");
        }
    });
}

#[test]
fn the_coordinator_serves_prometheus_metrics() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let (mut child, url) = compsafe_tests::coordinator(
        "127.0.0.1:0",
        &tmp.path().join("c.db"),
        &["--metrics-listen", &metrics],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let token = BearerToken::new(TOKEN).unwrap();
        let mut w = compsafe_proto::work_client(connect(&url, &token).await.unwrap());
        let id = w
            .register(compsafe_proto::pb::RegisterRequest {
                protocol: PROTOCOL_VERSION,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .worker_id;
        let l = w
            .lease(compsafe_proto::pb::LeaseRequest {
                protocol: PROTOCOL_VERSION,
                worker_id: id,
                loaded_models: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        assert!(l.unit.is_none());
    });
    let scrape = || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    };
    let mut body = String::new();
    for _ in 0..50 {
        body = scrape().unwrap_or_default();
        if body.contains("compsafe_workers 1") && body.contains("compsafe_lease_seconds") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for want in [
        "compsafe_units{state=\"queued\"} 0",
        "compsafe_workers 1",
        "compsafe_lease_seconds_bucket",
        "compsafe_lease_seconds_count 1",
    ] {
        assert!(body.contains(want), "missing {want}:\n{body}");
    }
}
