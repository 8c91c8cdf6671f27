//! Cluster membership against NSQ 1.3.0's own nsqlookupd, nsqd and
//! nsqadmin: registration of topics and channels made over V2, HTTP and a
//! plugin and their removal; consumers (pynsq, nsqjs) that only know
//! lookupd reading from two gateways and a real nsqd; nsqadmin's node view;
//! a lookupd restart; a lookupd that sends garbage or stalls; and changing
//! the lookupd set at run time. Timings are printed, not asserted.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::binary::{Gateway, Proc, free_port, get_json, http, repo, start_reference};
use crate::common::clients::{expect_success, run_node, run_python};
use crate::common::v2_round_trip;
use crate::common::wait::eventually_blocking;

/// A real nsqlookupd on loopback.
struct Lookupd {
    proc: Proc,
    tcp: String,
    http: String,
}

impl Lookupd {
    fn start() -> Lookupd {
        Self::start_on(free_port(), free_port())
    }

    fn start_on(tcp_port: u16, http_port: u16) -> Lookupd {
        let tcp = format!("127.0.0.1:{tcp_port}");
        let http = format!("127.0.0.1:{http_port}");
        let proc = start_reference(
            "nsqlookupd",
            &[
                format!("--tcp-address={tcp}"),
                format!("--http-address={http}"),
            ],
            &http,
        );
        Lookupd { proc, tcp, http }
    }

    /// TCP ports of the producers lookupd lists for `topic`.
    fn producers(&self, topic: &str) -> Vec<u64> {
        get_json(&self.http, &format!("/lookup?topic={topic}"))
            .and_then(|v| v["producers"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p["tcp_port"].as_u64())
            .collect()
    }

    /// Whether the registration `category:key:subkey` lists a producer
    /// with TCP port `port` (lookupd's `/debug` holds every registration).
    fn registered(&self, category: &str, key: &str, subkey: &str, port: u16) -> bool {
        get_json(&self.http, "/debug")
            .and_then(|v| v.get(format!("{category}:{key}:{subkey}")).cloned())
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|ps| ps.iter().any(|p| p["tcp_port"] == u64::from(port)))
    }
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// A gateway with the default config (V2 and the example plugins) that
/// registers with `lookupds`.
fn gateway(lookupds: &[&str]) -> Gateway {
    let mut extra = vec![
        "--broadcast-address".to_owned(),
        "127.0.0.1".to_owned(),
        "--log-level".to_owned(),
        "warn".to_owned(),
    ];
    for l in lookupds {
        extra.push("--lookupd-tcp-address".to_owned());
        extra.push((*l).to_owned());
    }
    Gateway::spawn(&repo().join("gateway.yaml"), &extra, None)
}

/// Sends `bytes` on a new connection and keeps it open.
fn send(addr: &str, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(bytes).expect("write");
    s
}

fn post(addr: &str, path: &str) {
    let (status, body) = http(addr, "POST", path, b"").expect("HTTP answers");
    assert_eq!(status, 200, "POST {path}: {body}");
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn registration_follows_topics_and_channels_of_every_protocol() {
    let lookupd = Lookupd::start();
    let gw = gateway(&[&lookupd.tcp]);
    let port = port_of(&gw.tcp);

    // V2: PUB creates the topic, SUB the channel.
    let t0 = Instant::now();
    let _v2 = send(
        &gw.tcp,
        b"  V2PUB v2-topic\n\x00\x00\x00\x02hiSUB v2-topic v2-ch\n",
    );
    eventually_blocking(WAIT, "V2 topic registered", || {
        lookupd
            .producers("v2-topic")
            .contains(&u64::from(port))
            .then_some(())
    });
    println!(
        "topic visible in nsqlookupd /lookup {:?} after it was created",
        t0.elapsed()
    );
    eventually_blocking(WAIT, "V2 channel registered", || {
        lookupd
            .registered("channel", "v2-topic", "v2-ch", port)
            .then_some(())
    });

    // HTTP.
    post(&gw.http, "/topic/create?topic=http-topic");
    post(&gw.http, "/channel/create?topic=http-topic&channel=http-ch");
    eventually_blocking(WAIT, "HTTP topic and channel registered", || {
        (lookupd.registered("topic", "http-topic", "", port)
            && lookupd.registered("channel", "http-topic", "http-ch", port))
        .then_some(())
    });

    // A plugin protocol (LINE).
    let mut line = send(&gw.tcp, b"LINE\nPUB line-topic x\nSUB line-topic line-ch\n");
    eventually_blocking(WAIT, "LINE topic and channel registered", || {
        (lookupd.registered("topic", "line-topic", "", port)
            && lookupd.registered("channel", "line-topic", "line-ch", port))
        .then_some(())
    });

    // Ephemeral: registered while consumed, gone when the consumer leaves.
    let v2_eph = send(&gw.tcp, b"  V2SUB eph-topic c#ephemeral\n");
    eventually_blocking(WAIT, "ephemeral channel registered", || {
        lookupd
            .registered("channel", "eph-topic", "c#ephemeral", port)
            .then_some(())
    });
    drop(v2_eph);
    eventually_blocking(WAIT, "ephemeral channel unregistered", || {
        (!lookupd.registered("channel", "eph-topic", "c#ephemeral", port)).then_some(())
    });

    // Deleting over HTTP unregisters.
    post(&gw.http, "/channel/delete?topic=http-topic&channel=http-ch");
    eventually_blocking(WAIT, "channel unregistered", || {
        (!lookupd.registered("channel", "http-topic", "http-ch", port)).then_some(())
    });
    post(&gw.http, "/topic/delete?topic=http-topic");
    eventually_blocking(WAIT, "topic unregistered", || {
        (!lookupd.producers("http-topic").contains(&u64::from(port))).then_some(())
    });
    line.write_all(b"QUIT\n").expect("quit");
    let _ = line.read(&mut [0u8; 256]);
    let err = gw.stop();
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn the_lookupd_set_changes_at_run_time() {
    let lookupd = Lookupd::start();
    let gw = gateway(&[]);
    let port = port_of(&gw.tcp);
    post(&gw.http, "/topic/create?topic=live");
    let body = format!("[\"{}\"]", lookupd.tcp);
    let (status, answer) = http(
        &gw.http,
        "PUT",
        "/config/nsqlookupd_tcp_addresses",
        body.as_bytes(),
    )
    .expect("PUT answers");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer.trim(), body);
    eventually_blocking(WAIT, "registered after PUT", || {
        lookupd
            .producers("live")
            .contains(&u64::from(port))
            .then_some(())
    });
    let (status, _) =
        http(&gw.http, "PUT", "/config/nsqlookupd_tcp_addresses", b"[]").expect("PUT answers");
    assert_eq!(status, 200);
    // The connection closes, and lookupd drops the node.
    eventually_blocking(WAIT, "gone after PUT []", || {
        (!lookupd.producers("live").contains(&u64::from(port))).then_some(())
    });
    let (status, _) = http(
        &gw.http,
        "PUT",
        "/config/nsqlookupd_tcp_addresses",
        b"[\"no-port\"]",
    )
    .expect("PUT answers");
    assert_eq!(status, 400);
}

/// Publishes `n` bodies `prefix-i` to `topic` over HTTP `/pub`.
fn publish(http_addr: &str, topic: &str, prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let body = format!("{prefix}-{i}");
            let (status, answer) = http(
                http_addr,
                "POST",
                &format!("/pub?topic={topic}"),
                body.as_bytes(),
            )
            .expect("pub answers");
            assert_eq!(status, 200, "{answer}");
            body
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_and_nsqjs_consume_from_two_gateways_and_nsqd_through_lookupd() {
    let lookupd = Lookupd::start();
    let gw1 = gateway(&[&lookupd.tcp]);
    let gw2 = gateway(&[&lookupd.tcp]);
    let (nsqd_tcp, nsqd_http) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let data = crate::common::temp_data_dir();
    let _nsqd = start_reference(
        "nsqd",
        &[
            format!("--tcp-address={nsqd_tcp}"),
            format!("--http-address={nsqd_http}"),
            format!("--lookupd-tcp-address={}", lookupd.tcp),
            "--broadcast-address=127.0.0.1".to_owned(),
            format!("--data-path={}", data.display()),
        ],
        &nsqd_http,
    );
    for (client, topic) in [("pynsq", "lk-py"), ("nsqjs", "lk-js")] {
        let mut sent = Vec::new();
        for (name, addr) in [("gw1", &gw1.http), ("gw2", &gw2.http), ("nsqd", &nsqd_http)] {
            sent.extend(publish(addr, topic, &format!("{client}-{name}"), 5));
        }
        eventually_blocking(WAIT, "three producers in lookupd", || {
            (lookupd.producers(topic).len() == 3).then_some(())
        });
        let args = vec![
            "lookupd_consume".to_owned(),
            "--lookupd".to_owned(),
            lookupd.http.clone(),
            "--topic".to_owned(),
            topic.to_owned(),
            "--count".to_owned(),
            sent.len().to_string(),
            "--settle-ms".to_owned(),
            "300".to_owned(),
            "--timeout".to_owned(),
            "30".to_owned(),
        ];
        let out = match client {
            "pynsq" => run_python("pynsq_scenarios.py", args, Duration::from_secs(60)).await,
            _ => run_node("nsqjs_scenarios.js", args, Duration::from_secs(60)).await,
        };
        let result = expect_success(&out);
        let mut got: Vec<String> = result["received"]
            .as_array()
            .expect("received")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        got.sort();
        got.dedup();
        let mut want = sent.clone();
        want.sort();
        assert_eq!(got, want, "{client}: {result}");
        println!(
            "{client}: {} messages from 3 producers found through nsqlookupd",
            got.len()
        );
    }
    let (e1, e2) = (gw1.stop(), gw2.stop());
    assert!(
        !e1.contains("panicked") && !e2.contains("panicked"),
        "{e1}{e2}"
    );
}

#[test]
fn nsqadmin_lists_the_gateway_node_with_its_topics() {
    let lookupd = Lookupd::start();
    let gw = gateway(&[&lookupd.tcp]);
    post(&gw.http, "/topic/create?topic=admin-topic");
    post(
        &gw.http,
        "/channel/create?topic=admin-topic&channel=admin-ch",
    );
    let admin_http = format!("127.0.0.1:{}", free_port());
    let _admin = start_reference(
        "nsqadmin",
        &[
            format!("--http-address={admin_http}"),
            format!("--lookupd-http-address={}", lookupd.http),
        ],
        &admin_http,
    );
    let port = u64::from(port_of(&gw.tcp));
    let node = eventually_blocking(WAIT, "nsqadmin lists the gateway", || {
        let nodes = get_json(&admin_http, "/api/nodes")?;
        nodes["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["tcp_port"] == port)
            .cloned()
    });
    assert_eq!(node["broadcast_address"], "127.0.0.1", "{node}");
    let topics: Vec<&str> = node["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["topic"].as_str().or_else(|| t.as_str()))
        .collect();
    assert!(topics.contains(&"admin-topic"), "{node}");
    // The node page: nsqadmin reads the gateway's /stats through lookupd.
    let page = get_json(
        &admin_http,
        &format!("/api/nodes/127.0.0.1:{}", port_of(&gw.http)),
    )
    .expect("node page");
    let page_text = page.to_string();
    assert!(
        page_text.contains("admin-topic") && page_text.contains("admin-ch"),
        "{page}"
    );
    assert!(
        page["message"].is_null() || page["message"] == "",
        "nsqadmin reported an error: {page}"
    );
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_lookupd_gets_everything_again_and_clients_never_wait() {
    let (tcp_port, http_port) = (free_port(), free_port());
    let mut lookupd = Lookupd::start_on(tcp_port, http_port);
    let gw = gateway(&[&lookupd.tcp]);
    let port = u64::from(port_of(&gw.tcp));
    post(&gw.http, "/topic/create?topic=restart");
    post(&gw.http, "/channel/create?topic=restart&channel=c");
    eventually_blocking(WAIT, "registered", || {
        lookupd.producers("restart").contains(&port).then_some(())
    });
    lookupd.proc.kill();

    // With lookupd down, a V2 round trip is as quick as ever.
    let t0 = Instant::now();
    v2_round_trip(&gw.tcp, "down-topic", b"while-down").await;
    println!(
        "V2 publish-to-delivery with nsqlookupd down: {:?}",
        t0.elapsed()
    );

    let lookupd = Lookupd::start_on(tcp_port, http_port);
    let restarted = Instant::now();
    let took = eventually_blocking(Duration::from_secs(20), "re-registered within 20 s", || {
        (lookupd.producers("restart").contains(&port)
            && lookupd.producers("down-topic").contains(&port))
        .then(|| restarted.elapsed())
    });
    println!("re-registered with the restarted nsqlookupd after {took:?}");
    assert!(lookupd.registered("channel", "restart", "c", port_of(&gw.tcp)));
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookupd_that_sends_garbage_or_stalls_does_not_hurt() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // One fake answers every read with a 4 GiB length prefix; one accepts
    // and never answers; one sends garbage without any framing.
    let huge = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let stall = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let junk = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addrs: Vec<String> = [&huge, &stall, &junk]
        .iter()
        .map(|l| l.local_addr().expect("addr").to_string())
        .collect();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                Ok((mut s, _)) = huge.accept() => {
                    let mut b = [0u8; 1024];
                    let _ = s.read(&mut b).await;
                    let _ = s.write_all(b"\xff\xff\xff\xffOK").await;
                    held.push(s);
                }
                Ok((s, _)) = stall.accept() => held.push(s),
                Ok((mut s, _)) = junk.accept() => {
                    let _ = s.write_all(b"\x00\x00\x00\x05E_BAD garbage \x01\x02 trailing").await;
                    held.push(s);
                }
            }
        }
    });
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let mut gw = gateway(&refs);
    // Clients are served at once while the peers fail and retry, for longer
    // than the stalled peer's 5 s response timeout.
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_millis(6500) {
        round += 1;
        let t0 = Instant::now();
        v2_round_trip(&gw.tcp, &format!("g{round}"), b"x").await;
        println!(
            "round {round}: V2 round trip with three bad lookupds took {:?}",
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert!(gw.proc.alive(), "gateway died");
    assert!(get_json(&gw.http, "/stats?format=json").is_some());
    let err = gw.stop();
    assert!(!err.contains("panicked"), "{err}");
    for a in &addrs {
        assert!(
            err.contains(a.as_str()) && err.contains("nsqlookupd connection failed"),
            "no warning for {a}: {err}"
        );
    }
    assert!(
        err.contains("exceeds the"),
        "huge length not reported: {err}"
    );
}
