//! TLS for V2, with certificates made by rcgen in each test: the in-band
//! upgrade (IDENTIFY `tls_v1`, the answer in the clear, the handshake on the
//! same socket, a framed `OK` inside TLS) byte by byte, `--tls-required`
//! with nsqd's errors, `require-verify` client certificates accepted and
//! refused, V2 directly over TLS (TLS-first), garbage after a ClientHello
//! magic and a stalled handshake dropped at `magic_timeout`, HTTPS with
//! `TLS_REQUIRED` on plain HTTP, and real clients over TLS: pynsq and
//! nsqjs (plain, client certificate, snappy, deflate) and tokio-nsq.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use nsq_gateway::config::Config;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use common::clients;
use common::scenarios::Client;

/// A CA, a server certificate it signed (for `localhost` and 127.0.0.1), a
/// client certificate it signed (CN `good-client`) and a self-signed client
/// certificate (CN `rogue`), as PEM files in a fresh directory.
pub(crate) struct Pki {
    dir: PathBuf,
    ca_pem: String,
    pub(crate) client: (String, String),
    rogue: (String, String),
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let dir = common::temp_data_dir();
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("CA");
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |names: Vec<String>, cn: &str| {
            let key = KeyPair::generate().expect("key");
            let mut p = CertificateParams::new(names).expect("params");
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.signed_by(&key, &issuer).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let server = leaf(vec!["localhost".into(), "127.0.0.1".into()], "localhost");
        let client = leaf(vec![], "good-client");
        let rogue_key = KeyPair::generate().expect("key");
        let mut rp = CertificateParams::new(Vec::<String>::new()).expect("params");
        rp.distinguished_name.push(DnType::CommonName, "rogue");
        let rogue = (
            rp.self_signed(&rogue_key).expect("rogue").pem(),
            rogue_key.serialize_pem(),
        );
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).expect("write");
        write("ca.pem", &ca_cert.pem());
        write("server.pem", &server.0);
        write("server.key", &server.1);
        write("client.pem", &client.0);
        write("client.key", &client.1);
        Pki {
            dir,
            ca_pem: ca_cert.pem(),
            client,
            rogue,
        }
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A test config serving TLS with this PKI; HTTPS on a free port.
    pub(crate) fn config(&self) -> Config {
        Config {
            tls_cert: self.path("server.pem"),
            tls_key: self.path("server.key"),
            tls_root_ca_file: self.path("ca.pem"),
            https_address: "127.0.0.1:0".into(),
            ..common::test_config()
        }
    }

    pub(crate) fn connector(&self, client: Option<&(String, String)>) -> TlsConnector {
        let cfg = nsq_gateway::tls::client_config(
            Some(self.ca_pem.as_bytes()),
            client.map(|(c, k)| (c.as_bytes(), k.as_bytes())),
        )
        .expect("client config");
        TlsConnector::from(cfg)
    }
}

pub(crate) fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("name")
}

/// Reads one frame: (type, data).
async fn frame<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<(u32, Vec<u8>)> {
    let size = s.read_u32().await?;
    let kind = s.read_u32().await?;
    let mut data = vec![0; size as usize - 4];
    s.read_exact(&mut data).await?;
    Ok((kind, data))
}

async fn identify<S: AsyncWrite + Unpin>(s: &mut S, json: &str) {
    let mut cmd = b"IDENTIFY\n".to_vec();
    cmd.extend_from_slice(&(json.len() as u32).to_be_bytes());
    cmd.extend_from_slice(json.as_bytes());
    s.write_all(&cmd).await.expect("identify");
}

async fn publish<S: AsyncWrite + AsyncRead + Unpin>(s: &mut S, topic: &str, body: &[u8]) {
    let mut cmd = format!("PUB {topic}\n").into_bytes();
    cmd.extend_from_slice(&(body.len() as u32).to_be_bytes());
    cmd.extend_from_slice(body);
    s.write_all(&cmd).await.expect("pub");
    assert_eq!(frame(s).await.expect("pub answer"), (0, b"OK".to_vec()));
}

/// Plain V2 up to an upgraded TLS stream: magic, IDENTIFY `tls_v1`, the
/// clear answer, the handshake and the `OK` inside TLS.
async fn upgrade(
    addr: std::net::SocketAddr,
    connector: &TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(b"  V2").await?;
    identify(&mut tcp, r#"{"feature_negotiation":true,"tls_v1":true}"#).await;
    let (kind, json) = frame(&mut tcp).await?;
    assert_eq!(kind, 0);
    let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
    assert_eq!(v["tls_v1"], true, "{v}");
    let mut tls = connector.connect(localhost(), tcp).await?;
    let ok = frame(&mut tls).await?;
    assert_eq!(ok, (0, b"OK".to_vec()));
    Ok(tls)
}

/// The HTTPS port, once `app::run` has bound it.
async fn https_port(server: &common::TestServer) -> u16 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(a) = server.ctx.https_addr.get() {
            return a.port();
        }
        assert!(tokio::time::Instant::now() < deadline, "HTTPS never bound");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The V2 clients in `/stats` with their TLS fields, by client id.
async fn stats_clients(http: std::net::SocketAddr) -> Vec<serde_json::Value> {
    let addr = http.to_string();
    let v = tokio::task::spawn_blocking(move || {
        common::binary::get_json(&addr, "/stats?format=json").expect("stats")
    })
    .await
    .expect("join");
    let mut out = Vec::new();
    for p in v["producers"].as_array().into_iter().flatten() {
        out.push(p.clone());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inband_upgrade_byte_by_byte() {
    let pki = Pki::new();
    let server = common::TestServer::start(pki.config()).await;
    let mut tcp = TcpStream::connect(server.tcp_addr).await.expect("connect");
    tcp.write_all(b"  V2").await.expect("magic");
    identify(&mut tcp, r#"{"feature_negotiation":true,"tls_v1":true}"#).await;
    // The answer, in the clear, exactly nsqd's fields and order.
    let expected = format!(
        r#"{{"max_rdy_count":2500,"version":"{}","max_msg_timeout":900000,"msg_timeout":60000,"tls_v1":true,"deflate":false,"deflate_level":6,"max_deflate_level":6,"snappy":false,"sample_rate":0,"auth_required":false,"output_buffer_size":16384,"output_buffer_timeout":250}}"#,
        env!("CARGO_PKG_VERSION")
    );
    let mut head = [0u8; 8];
    tcp.read_exact(&mut head).await.expect("head");
    assert_eq!(
        head[..4],
        (expected.len() as u32 + 4).to_be_bytes(),
        "frame size"
    );
    assert_eq!(head[4..], [0, 0, 0, 0], "response frame");
    let mut json = vec![0; expected.len()];
    tcp.read_exact(&mut json).await.expect("json");
    assert_eq!(String::from_utf8_lossy(&json), expected);
    // Nothing more in the clear: the server now waits for our ClientHello.
    let mut probe = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), tcp.peek(&mut probe))
            .await
            .is_err(),
        "the server sent something before the handshake"
    );
    let mut tls = pki
        .connector(None)
        .connect(localhost(), tcp)
        .await
        .expect("handshake");
    let mut ok = [0u8; 10];
    tls.read_exact(&mut ok).await.expect("OK");
    assert_eq!(&ok, b"\x00\x00\x00\x06\x00\x00\x00\x00OK");
    publish(&mut tls, "tls_inband", b"over TLS").await;
    let clients = stats_clients(server.http_addr).await;
    assert_eq!(clients.len(), 1, "{clients:?}");
    let c = &clients[0];
    assert_eq!(c["tls"], true, "{c}");
    assert_eq!(c["tls_version"], "TLS1.3", "{c}");
    assert_eq!(c["tls_cipher_suite"], "TLS_AES_256_GCM_SHA384", "{c}");
    assert_eq!(c["tls_negotiated_protocol"], "", "{c}");
    assert_eq!(c["tls_negotiated_protocol_is_mutual"], true, "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_certificate_tls_v1_is_answered_false() {
    let server = common::TestServer::start(common::test_config()).await;
    let mut s = server.v2().await;
    identify(&mut s, r#"{"feature_negotiation":true,"tls_v1":true}"#).await;
    let (_, json) = frame(&mut s).await.expect("answer");
    let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
    assert_eq!(v["tls_v1"], false);
    publish(&mut s, "tls_none", b"plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_refuses_commands_before_the_upgrade() {
    let pki = Pki::new();
    let config = Config {
        tls_required: 1,
        ..pki.config()
    };
    let server = common::TestServer::start(config).await;
    for (cmd, verb) in [
        (b"PUB t\n\x00\x00\x00\x01x".to_vec(), "PUB"),
        (b"SUB t c\n".to_vec(), "SUB"),
        (b"NOP\n".to_vec(), "NOP"),
    ] {
        let mut s = server.v2().await;
        // IDENTIFY without feature negotiation is allowed and answered OK.
        identify(&mut s, r#"{"client_id":"x"}"#).await;
        assert_eq!(frame(&mut s).await.expect("ok"), (0, b"OK".to_vec()));
        s.write_all(&cmd).await.expect("cmd");
        let (kind, data) = frame(&mut s).await.expect("error");
        assert_eq!(kind, 1);
        assert_eq!(
            String::from_utf8_lossy(&data),
            format!("E_INVALID cannot {verb} in current state (TLS required)")
        );
        // Fatal: the connection is closed.
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .expect("closed")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    // After the upgrade everything works.
    let mut tls = upgrade(server.tcp_addr, &pki.connector(None))
        .await
        .expect("upgrade");
    publish(&mut tls, "tls_required", b"ok now").await;
    // HTTP is still open at 1 (nsqd's tcp-https).
    let http = server.http_addr.to_string();
    let ping =
        tokio::task::spawn_blocking(move || common::binary::http(&http, "GET", "/ping", b""))
            .await
            .expect("join");
    assert_eq!(ping.map(|(c, _)| c), Some(200));
}

#[test]
fn a_client_auth_policy_implies_tls_required_and_tls_needs_a_certificate() {
    let c = Config {
        tls_client_auth_policy: "require".into(),
        ..Config::default()
    };
    assert_eq!(c.tls_required(), 2);
    let e = c.validate("t").expect_err("no cert").to_string();
    assert!(
        e.contains("cannot require TLS client connections without TLS key and cert"),
        "{e}"
    );
    let c = Config {
        tls_cert: "a".into(),
        tls_key: "b".into(),
        tls_min_version: "tls1.0".into(),
        ..Config::default()
    };
    let e = c.validate("t").expect_err("tls1.0").to_string();
    assert!(e.contains("rustls speaks TLS 1.2 and 1.3 only"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_verify_accepts_a_signed_client_and_drops_others() {
    let pki = Pki::new();
    let config = Config {
        tls_client_auth_policy: "require-verify".into(),
        ..pki.config()
    };
    let server = common::TestServer::start(config).await;
    let mut tls = upgrade(server.tcp_addr, &pki.connector(Some(&pki.client)))
        .await
        .expect("signed client");
    publish(&mut tls, "tls_verify", b"verified").await;
    // The session knows the certificate's common name (for the auth server).
    let producers = server.broker().producers();
    assert_eq!(producers.len(), 1);
    assert!(producers[0].meta.tls);
    assert_eq!(
        producers[0].meta.tls_common_name.as_deref(),
        Some("good-client")
    );

    // A self-signed client certificate and no certificate both fail: the
    // server refuses the handshake (TLS 1.3 clients see it on first read).
    for who in [Some(&pki.rogue), None] {
        let r = async {
            let mut tls = upgrade(server.tcp_addr, &pki.connector(who)).await?;
            publish(&mut tls, "tls_verify", b"never").await;
            Ok::<_, std::io::Error>(())
        };
        let r = tokio::time::timeout(Duration::from_secs(10), r)
            .await
            .expect("bounded");
        assert!(r.is_err(), "client {:?} was accepted", who.map(|_| "rogue"));
    }
    // Plain HTTP answers 403 TLS_REQUIRED (the policy implies 2), HTTPS works.
    let http = server.http_addr.to_string();
    let got = tokio::task::spawn_blocking(move || common::binary::http(&http, "GET", "/ping", b""))
        .await
        .expect("join")
        .expect("answer");
    let https_port = https_port(&server).await;
    assert_eq!(got.0, 403);
    assert_eq!(
        got.1,
        format!(r#"{{"message": "TLS_REQUIRED", "https_port": {https_port}}}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_directly_over_tls_and_ssl_garbage_and_a_stalled_handshake() {
    let pki = Pki::new();
    let config = Config {
        magic_timeout: Duration::from_millis(500),
        ..pki.config()
    };
    let server = common::TestServer::start(config).await;
    // TLS from the first byte, then the V2 magic inside it.
    let tcp = TcpStream::connect(server.tcp_addr).await.expect("connect");
    let mut tls = pki
        .connector(None)
        .connect(localhost(), tcp)
        .await
        .expect("handshake");
    tls.write_all(b"  V2").await.expect("magic");
    identify(&mut tls, r#"{"feature_negotiation":true,"tls_v1":true}"#).await;
    let (_, json) = frame(&mut tls).await.expect("answer");
    let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
    // Already TLS: no second upgrade.
    assert_eq!(v["tls_v1"], false, "{v}");
    publish(&mut tls, "tls_first", b"first byte").await;
    let clients = stats_clients(server.http_addr).await;
    assert_eq!(clients[0]["tls"], true);

    // A ClientHello magic followed by garbage: dropped, nothing answered.
    let mut s = TcpStream::connect(server.tcp_addr).await.expect("connect");
    s.write_all(b"\x16\x03\x01\x00\x05garbage-garbage-garbage")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("closed");
    assert!(
        !rest.windows(14).any(|w| w == b"E_BAD_PROTOCOL"),
        "{rest:?}"
    );

    // A handshake that stalls after the magic: dropped at magic_timeout.
    let mut s = TcpStream::connect(server.tcp_addr).await.expect("connect");
    s.write_all(b"\x16\x03\x01\x02").await.expect("write");
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("dropped");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400), "dropped after {took:?}");
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_api_to_python_urllib() {
    let pki = Pki::new();
    let config = Config {
        tls_required: 2,
        ..pki.config()
    };
    let server = common::TestServer::start(config).await;
    let https = https_port(&server).await;
    let code = format!(
        "import ssl, urllib.request, json\n\
         ctx = ssl.create_default_context(cafile={ca:?})\n\
         r = urllib.request.urlopen('https://localhost:{https}/ping', context=ctx)\n\
         body = r.read().decode()\n\
         req = urllib.request.Request('https://localhost:{https}/pub?topic=https_t', data=b'hello', method='POST')\n\
         pub = urllib.request.urlopen(req, context=ctx).read().decode()\n\
         print(json.dumps({{'ok': True, 'status': r.status, 'body': body, 'pub': pub}}))\n",
        ca = pki.path("ca.pem"),
    );
    let python = tokio::task::spawn_blocking(clients::python)
        .await
        .expect("python");
    let out =
        clients::run_client_async(python, vec!["-c".to_owned(), code], Duration::from_secs(30))
            .await;
    let r = clients::expect_success(&out);
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["body"], "OK", "{r}");
    assert_eq!(r["pub"], "OK", "{r}");
    assert_eq!(
        server
            .broker()
            .stats(Some("https_t"))
            .first()
            .map(|t| t.message_count),
        Some(1)
    );
}

async fn client_over_tls(c: Client, compression: &str, client_cert: bool) {
    let pki = Pki::new();
    let mut config = pki.config();
    if client_cert {
        config.tls_client_auth_policy = "require-verify".into();
        // nsqd's rule makes TLS required; /stats is read over plain HTTP by
        // the scenario, so keep HTTP open (tcp-https).
        config.tls_required = 1;
    }
    let mut args = vec![
        "--compression".to_owned(),
        compression.to_owned(),
        "--count".to_owned(),
        "5".to_owned(),
        "--tls-ca".to_owned(),
        pki.path("ca.pem"),
    ];
    if client_cert {
        args.extend([
            "--tls-cert".to_owned(),
            pki.path("client.pem"),
            "--tls-key".to_owned(),
            pki.path("client.key"),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = c.run_with(config, "compress", &args).await;
    let mut sent = clients::strings(&r["sent"]);
    let mut received = clients::strings(&r["received"]);
    sent.sort();
    received.sort();
    assert!(!sent.is_empty(), "{r}");
    assert_eq!(sent, received, "{r}");
    let want = match compression {
        "snappy" => serde_json::json!({"deflate": false, "deflate_level": 6, "snappy": true}),
        "deflate" => serde_json::json!({"deflate": true, "deflate_level": 6, "snappy": false}),
        _ => serde_json::json!({"deflate": false, "deflate_level": 6, "snappy": false}),
    };
    assert_eq!(r["writer_identify"], want, "{r}");
    assert_eq!(r["reader_identify"], want, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_publishes_and_consumes_over_tls() {
    client_over_tls(Client::Pynsq, "none", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_over_tls_with_a_verified_client_certificate() {
    client_over_tls(Client::Pynsq, "none", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_over_tls_and_snappy() {
    client_over_tls(Client::Pynsq, "snappy", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_over_tls_and_deflate() {
    client_over_tls(Client::Pynsq, "deflate", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_publishes_and_consumes_over_tls() {
    client_over_tls(Client::Nsqjs, "none", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_over_tls_with_a_verified_client_certificate() {
    client_over_tls(Client::Nsqjs, "none", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_over_tls_and_snappy() {
    client_over_tls(Client::Nsqjs, "snappy", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_over_tls_and_deflate() {
    client_over_tls(Client::Nsqjs, "deflate", false).await;
}

/// tokio-nsq's TLS (rustls 0.19, its default unverified client config)
/// publishes and consumes through the in-band upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_nsq_publishes_and_consumes_over_tls() {
    use tokio_nsq::{
        NSQChannel, NSQConfigShared, NSQConfigSharedTLS, NSQConsumerConfig,
        NSQConsumerConfigSources, NSQEvent, NSQProducerConfig, NSQTopic,
    };
    const STEP: Duration = Duration::from_secs(10);
    let pki = Pki::new();
    let server = common::TestServer::start(pki.config()).await;
    let shared = || NSQConfigShared::new().set_tls(NSQConfigSharedTLS::new("localhost"));
    let topic = NSQTopic::new("tls_tokio_nsq").expect("topic");
    let mut p = NSQProducerConfig::new(server.tcp_addr.to_string())
        .set_shared(shared())
        .build();
    match tokio::time::timeout(STEP, p.consume()).await {
        Ok(Some(NSQEvent::Healthy())) => {}
        other => panic!("producer did not become healthy: {other:?}"),
    }
    p.publish(&topic, b"over tokio-nsq TLS".to_vec())
        .await
        .expect("publish");
    match tokio::time::timeout(STEP, p.consume()).await {
        Ok(Some(NSQEvent::Ok())) => {}
        other => panic!("expected OK, got {other:?}"),
    }
    let mut c = NSQConsumerConfig::new(topic, NSQChannel::new("ch").expect("channel"))
        .set_max_in_flight(1)
        .set_shared(shared())
        .set_sources(NSQConsumerConfigSources::Daemons(vec![
            server.tcp_addr.to_string(),
        ]))
        .build();
    let msg = tokio::time::timeout(STEP, c.consume_filtered())
        .await
        .expect("a message in time")
        .expect("a message");
    assert_eq!(msg.body, b"over tokio-nsq TLS");
    msg.finish().await;
    let producers = server.broker().producers();
    assert_eq!(producers.len(), 1);
    assert!(producers[0].meta.tls);
}
