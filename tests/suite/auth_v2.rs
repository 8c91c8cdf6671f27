//! V2 AUTH against a real HTTP auth server started by the test, per nsqd's
//! contract: `auth_required` in IDENTIFY, the AUTH answer, `E_AUTH_FIRST`,
//! `E_AUTH_FAILED`, `E_UNAUTHORIZED` (all fatal), re-authorization when the
//! `ttl` expires, the query string the server receives, and an auth server
//! that is down or slow failing only the client that waits for it.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::auth_server::{Answer, AuthServer};
use crate::common::{TestServer, pub_cmd, read_frame_within, read_to_close, test_config};

const WITHIN: Duration = Duration::from_secs(10);

async fn gateway(auth: &[String]) -> TestServer {
    TestServer::start(nsq_gateway::config::Config {
        auth_http_addresses: auth.to_vec(),
        http_client_request_timeout: Duration::from_millis(500),
        ..test_config()
    })
    .await
}

/// IDENTIFY with feature negotiation; returns the JSON answer.
async fn identify(s: &mut TcpStream) -> serde_json::Value {
    let (kind, data) =
        crate::common::v2::identify(s, r#"{"feature_negotiation":true,"client_id":"auth-test"}"#)
            .await;
    assert_eq!(kind, 0, "{}", String::from_utf8_lossy(&data));
    serde_json::from_slice(&data).expect("identify json")
}

fn auth_cmd(secret: &str) -> Vec<u8> {
    crate::common::v2::framed("AUTH\n", secret.as_bytes())
}

/// Sends `cmd` and returns the one frame that answers it.
async fn ask(s: &mut TcpStream, cmd: &[u8]) -> (u32, String) {
    s.write_all(cmd).await.expect("write");
    let (kind, data) = read_frame_within(s, WITHIN).await;
    (kind, String::from_utf8_lossy(&data).into_owned())
}

/// Asserts a fatal error frame with `text`, then the close.
async fn assert_fatal(s: &mut TcpStream, cmd: &[u8], text: &str) {
    let (kind, data) = ask(s, cmd).await;
    assert_eq!((kind, data.as_str()), (1, text));
    assert!(
        read_to_close(s, WITHIN).await.is_empty(),
        "closed after {text}"
    );
}

async fn authed(gw: &TestServer, secret: &str) -> (TcpStream, serde_json::Value) {
    let mut s = gw.v2().await;
    let id = identify(&mut s).await;
    assert_eq!(id["auth_required"], true, "{id}");
    let (kind, data) = ask(&mut s, &auth_cmd(secret)).await;
    assert_eq!(kind, 0, "AUTH answered {data}");
    (s, serde_json::from_str(&data).expect("AUTH json"))
}

fn orders_publisher() -> Answer {
    Answer::grant(
        3600,
        "alice",
        &[
            ("^orders$", &[".*"], &["publish"]),
            ("^orders$", &["^billing$"], &["subscribe"]),
        ],
    )
}

#[tokio::test]
async fn auth_answers_identity_and_count_and_grants_only_what_it_says() {
    let authd = AuthServer::start().await;
    authd.set("s3cret", orders_publisher());
    let gw = gateway(&[authd.addr.to_string()]).await;

    let (mut s, answer) = authed(&gw, "s3cret").await;
    assert_eq!(
        answer,
        serde_json::json!({"identity":"alice","identity_url":"https://id.example/alice","permission_count":2})
    );
    assert_eq!(
        ask(&mut s, &pub_cmd("orders", b"x")).await,
        (0, "OK".into())
    );
    let q = authd.queries();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["secret"], "s3cret");
    assert_eq!(q[0]["remote_ip"], "127.0.0.1");
    assert_eq!(q[0]["tls"], "false");
    assert_eq!(q[0]["common_name"], "");
    assert_fatal(
        &mut s,
        &pub_cmd("payments", b"x"),
        r#"E_UNAUTHORIZED AUTH failed for PUB on "payments" """#,
    )
    .await;

    // SUB is checked against the channel patterns and `subscribe`.
    let (mut s, _) = authed(&gw, "s3cret").await;
    assert_fatal(
        &mut s,
        b"SUB orders shipping\n",
        r#"E_UNAUTHORIZED AUTH failed for SUB on "orders" "shipping""#,
    )
    .await;
    let (mut s, _) = authed(&gw, "s3cret").await;
    assert_eq!(ask(&mut s, b"SUB orders billing\n").await, (0, "OK".into()));

    // MPUB and DPUB name themselves.
    let (mut s, _) = authed(&gw, "s3cret").await;
    let mut mpub = b"MPUB other\n".to_vec();
    mpub.extend_from_slice(&9u32.to_be_bytes());
    mpub.extend_from_slice(&1u32.to_be_bytes());
    mpub.extend_from_slice(&1u32.to_be_bytes());
    mpub.push(b'x');
    assert_fatal(
        &mut s,
        &mpub,
        r#"E_UNAUTHORIZED AUTH failed for MPUB on "other" """#,
    )
    .await;
    let (mut s, _) = authed(&gw, "s3cret").await;
    let mut dpub = b"DPUB other 10\n".to_vec();
    dpub.extend_from_slice(&1u32.to_be_bytes());
    dpub.push(b'x');
    assert_fatal(
        &mut s,
        &dpub,
        r#"E_UNAUTHORIZED AUTH failed for DPUB on "other" """#,
    )
    .await;

    let http = gw.http_addr.to_string();
    let stats = tokio::task::spawn_blocking(move || {
        crate::common::binary::get_json(&http, "/stats?format=json")
    })
    .await
    .expect("join")
    .expect("stats json");
    let client = &stats["topics"][0]["channels"][0]["clients"][0];
    assert_eq!(client["authed"], true, "{stats}");
    assert_eq!(client["auth_identity"], "alice", "{stats}");
}

#[tokio::test]
async fn commands_before_auth_and_bad_secrets_are_fatal_with_nsqds_errors() {
    let authd = AuthServer::start().await;
    authd.set("empty", Answer::grant(60, "nobody", &[]));
    authd.set("good", orders_publisher());
    let gw = gateway(&[authd.addr.to_string()]).await;

    let mut s = gw.v2().await;
    identify(&mut s).await;
    assert_fatal(
        &mut s,
        &pub_cmd("orders", b"x"),
        "E_AUTH_FIRST AUTH required before PUB",
    )
    .await;

    let mut s = gw.v2().await;
    assert_fatal(
        &mut s,
        b"SUB orders billing\n",
        "E_AUTH_FIRST AUTH required before SUB",
    )
    .await;

    // The server refuses the secret (403): opaque to the client.
    let mut s = gw.v2().await;
    assert_fatal(&mut s, &auth_cmd("wrong"), "E_AUTH_FAILED AUTH failed").await;

    let mut s = gw.v2().await;
    assert_fatal(
        &mut s,
        &auth_cmd("empty"),
        "E_UNAUTHORIZED AUTH no authorizations found",
    )
    .await;

    let (mut s, _) = authed(&gw, "good").await;
    assert_fatal(&mut s, &auth_cmd("good"), "E_INVALID AUTH already set").await;

    // An answer over the size limit (1 MiB) is a failed AUTH, read no further.
    authd.set(
        "huge",
        Answer {
            status: 200,
            body: format!(r#"{{"ttl":60,"identity":"{}"}}"#, "x".repeat(2 << 20)),
            delay: Duration::ZERO,
        },
    );
    let mut s = gw.v2().await;
    assert_fatal(&mut s, &auth_cmd("huge"), "E_AUTH_FAILED AUTH failed").await;

    // A bad answer (unknown permission) is a failed AUTH.
    authd.set(
        "odd",
        Answer::grant(60, "x", &[(".*", &[".*"], &["admin"])]),
    );
    let mut s = gw.v2().await;
    assert_fatal(&mut s, &auth_cmd("odd"), "E_AUTH_FAILED AUTH failed").await;
}

#[tokio::test]
async fn without_an_auth_server_auth_is_disabled_and_nothing_is_required() {
    let gw = gateway(&[]).await;
    let mut s = gw.v2().await;
    let id = identify(&mut s).await;
    assert_eq!(id["auth_required"], false);
    assert_eq!(ask(&mut s, &pub_cmd("t", b"x")).await, (0, "OK".into()));
    assert_fatal(&mut s, &auth_cmd("x"), "E_AUTH_DISABLED AUTH disabled").await;
}

#[tokio::test]
async fn an_expired_grant_is_asked_again_and_a_revocation_takes_effect() {
    let authd = AuthServer::start().await;
    authd.set(
        "k",
        Answer::grant(1, "bob", &[(".*", &[".*"], &["publish"])]),
    );
    let gw = gateway(&[authd.addr.to_string()]).await;
    let (mut s, _) = authed(&gw, "k").await;
    assert_eq!(ask(&mut s, &pub_cmd("t", b"1")).await, (0, "OK".into()));
    assert_eq!(authd.queries().len(), 1, "cached within the ttl");
    // Revoke: the next check after the 1 s ttl asks again and is refused.
    authd.set(
        "k",
        Answer::grant(1, "bob", &[("^only-this$", &[".*"], &["publish"])]),
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_fatal(
        &mut s,
        &pub_cmd("t", b"2"),
        r#"E_UNAUTHORIZED AUTH failed for PUB on "t" """#,
    )
    .await;
    assert_eq!(authd.queries().len(), 2, "re-authorized once");
    // A server that fails the re-authorization fails the command.
    authd.set(
        "k",
        Answer::grant(1, "bob", &[(".*", &[".*"], &["publish"])]),
    );
    let (mut s, _) = authed(&gw, "k").await;
    authd.set("k", Answer::status(500));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_fatal(&mut s, &pub_cmd("t", b"3"), "E_AUTH_FAILED AUTH failed").await;
}

#[tokio::test]
async fn a_down_or_slow_auth_server_fails_only_the_client_waiting_for_it() {
    // Down: nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let gw = gateway(std::slice::from_ref(&dead)).await;
    let mut s = gw.v2().await;
    assert_fatal(&mut s, &auth_cmd("any"), "E_AUTH_FAILED AUTH failed").await;
    drop(gw);

    // Slow: this secret's answer takes 3 s, over the 500 ms request timeout.
    let authd = AuthServer::start().await;
    authd.set("slow", orders_publisher().delayed(Duration::from_secs(3)));
    authd.set("fast", orders_publisher());
    let gw = gateway(&[authd.addr.to_string()]).await;
    let mut slow = gw.v2().await;
    slow.write_all(&auth_cmd("slow")).await.expect("auth");
    // While it waits, another client authenticates and publishes at once.
    let started = Instant::now();
    let (mut fast, _) = authed(&gw, "fast").await;
    assert_eq!(
        ask(&mut fast, &pub_cmd("orders", b"x")).await,
        (0, "OK".into())
    );
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    let (kind, data) = read_frame_within(&mut slow, WITHIN).await;
    assert_eq!(
        (kind, data.as_slice()),
        (1, &b"E_AUTH_FAILED AUTH failed"[..])
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timed out at the request timeout"
    );

    // Several servers: a dead one is skipped.
    let gw = gateway(&[dead, authd.addr.to_string()]).await;
    for _ in 0..4 {
        authed(&gw, "fast").await;
    }
}

/// The same exchanges against `addr`, as `(frame type, text)` pairs.
async fn exchanges(addr: std::net::SocketAddr) -> Vec<(u32, String)> {
    let conn = || async move {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"  V2").await.expect("magic");
        s
    };
    let mut out = Vec::new();
    let mut s = conn().await;
    out.push((0, identify(&mut s).await["auth_required"].to_string()));
    out.push(ask(&mut s, &pub_cmd("orders", b"x")).await);
    for secret in ["wrong", "empty"] {
        let mut s = conn().await;
        out.push(ask(&mut s, &auth_cmd(secret)).await);
    }
    let mut s = conn().await;
    out.push(ask(&mut s, &auth_cmd("good")).await);
    out.push(ask(&mut s, &pub_cmd("orders", b"x")).await);
    out.push(ask(&mut s, b"SUB orders shipping\n").await);
    let mut s = conn().await;
    out.push(ask(&mut s, &auth_cmd("good")).await);
    out.push(ask(&mut s, &auth_cmd("good")).await);
    out
}

#[tokio::test]
async fn every_auth_answer_and_error_is_byte_identical_to_the_real_nsqd() {
    let authd = AuthServer::start().await;
    authd.set("empty", Answer::grant(60, "nobody", &[]));
    authd.set("good", orders_publisher());
    let gw = gateway(&[authd.addr.to_string()]).await;
    let ours = exchanges(gw.tcp_addr).await;

    let tcp = crate::common::binary::free_port();
    let http = crate::common::binary::free_port();
    let data = crate::common::temp_data_dir();
    let http_addr = format!("127.0.0.1:{http}");
    let _nsqd = crate::common::binary::start_reference(
        "nsqd",
        &[
            format!("--tcp-address=127.0.0.1:{tcp}"),
            format!("--http-address={http_addr}"),
            format!("--auth-http-address={}", authd.addr),
            format!("--data-path={}", data.display()),
        ],
        &http_addr,
    );
    let theirs = exchanges(format!("127.0.0.1:{tcp}").parse().expect("addr")).await;
    assert_eq!(ours, theirs);
    assert_eq!(ours[1].1, "E_AUTH_FIRST AUTH required before PUB");
}

/// pynsq and nsqjs publish and consume with `auth_secret`/`authSecret`, and
/// see nsqd's error for a topic outside their grant.
async fn real_client_auth(client: crate::common::scenarios::Client) {
    let authd = AuthServer::start().await;
    authd.set(
        "client-secret",
        Answer::grant(
            3600,
            "svc",
            &[("_auth_", &[".*"], &["publish", "subscribe"])],
        ),
    );
    let config = nsq_gateway::config::Config {
        auth_http_addresses: vec![authd.addr.to_string()],
        ..test_config()
    };
    let r = client
        .run_with(
            config,
            "auth",
            &[
                "--count",
                "5",
                "--auth-secret",
                "client-secret",
                "--denied-topic",
                "forbidden",
            ],
        )
        .await;
    let sent = crate::common::clients::strings(&r["sent"]);
    assert_eq!(sent.len(), 5, "{r}");
    let mut received = crate::common::clients::strings(&r["received"]);
    received.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(received, expected, "{r}");
    let denied = r["denied_error"].as_str().unwrap_or_default();
    assert!(denied.contains("E_UNAUTHORIZED"), "{r}");
    assert!(
        authd
            .queries()
            .iter()
            .all(|q| q["secret"] == "client-secret")
    );
}

#[tokio::test]
async fn pynsq_authenticates_and_is_refused_outside_its_grant() {
    real_client_auth(crate::common::scenarios::Client::Pynsq).await;
}

#[tokio::test]
async fn nsqjs_authenticates_and_is_refused_outside_its_grant() {
    real_client_auth(crate::common::scenarios::Client::Nsqjs).await;
}

/// V2 over TLS with a client certificate: the auth server is told `tls=true`
/// and the certificate's common name, as nsqd tells it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_auth_server_learns_tls_and_the_common_name() {
    use tokio::io::AsyncReadExt;
    let pki = crate::tls_v2::Pki::new();
    let authd = AuthServer::start().await;
    authd.set("good", orders_publisher());
    // As in nsqd, a client certificate is asked for only under a policy.
    let gw = TestServer::start(nsq_gateway::config::Config {
        auth_http_addresses: vec![authd.addr.to_string()],
        tls_client_auth_policy: "require-verify".into(),
        ..pki.config()
    })
    .await;
    let read = |name: &str| std::fs::read(pki.path(name)).expect("pem");
    let (ca, cert, key) = (read("ca.pem"), read("client.pem"), read("client.key"));
    let connector = tokio_rustls::TlsConnector::from(
        nsq_gateway::tls::client_config(Some(&ca), Some((&cert, &key))).expect("client config"),
    );
    let mut tcp = TcpStream::connect(gw.tcp_addr).await.expect("connect");
    tcp.write_all(b"  V2").await.expect("magic");
    let id = crate::common::v2::identify(&mut tcp, r#"{"feature_negotiation":true,"tls_v1":true}"#)
        .await;
    assert_eq!(id.0, 0);
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    let read_frame = async |s: &mut tokio_rustls::client::TlsStream<TcpStream>| {
        let size = s.read_u32().await.expect("size");
        let kind = s.read_u32().await.expect("kind");
        let mut data = vec![0; size as usize - 4];
        s.read_exact(&mut data).await.expect("data");
        (kind, String::from_utf8_lossy(&data).into_owned())
    };
    assert_eq!(read_frame(&mut tls).await, (0, "OK".into()));
    tls.write_all(&auth_cmd("good")).await.expect("auth");
    let (kind, answer) = read_frame(&mut tls).await;
    assert_eq!(kind, 0, "{answer}");
    let q = authd.queries();
    assert_eq!(q[0]["tls"], "true");
    assert_eq!(q[0]["common_name"], "good-client");
}

/// An `https://` auth server, trusted through `--tls-root-ca-file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_auth_server_is_trusted_through_the_root_ca_file() {
    use tokio::io::AsyncReadExt;
    let pki = crate::tls_v2::Pki::new();
    let tls = nsq_gateway::tls::TlsServer::from_config(&pki.config())
        .expect("tls config")
        .expect("tls on");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut s = tls
            .accept(tcp, bytes::Bytes::new())
            .await
            .expect("handshake");
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0);
            req.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"ttl":60,"identity":"tls-id","identity_url":"","authorizations":[{"topic":".*","channels":[".*"],"permissions":["publish"]}]}"#;
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(resp.as_bytes()).await.expect("write");
        let _ = s.shutdown().await;
        String::from_utf8_lossy(&req).into_owned()
    });
    let gw = TestServer::start(nsq_gateway::config::Config {
        auth_http_addresses: vec![format!("https://localhost:{port}/auth")],
        tls_root_ca_file: pki.path("ca.pem"),
        ..test_config()
    })
    .await;
    let mut s = gw.v2().await;
    let (kind, answer) = ask(&mut s, &auth_cmd("tls-secret")).await;
    assert_eq!(kind, 0, "{answer}");
    assert!(answer.contains("tls-id"), "{answer}");
    let req = server.await.expect("auth server");
    assert!(req.starts_with("GET /auth?"), "{req}");
    assert!(req.contains("secret=tls-secret"), "{req}");
    assert_eq!(ask(&mut s, &pub_cmd("any", b"x")).await, (0, "OK".into()));
}
