//! Fuzz targets of the plugin protocols end to end: the real LINE, STOMP and
//! RESP components (built by build.rs) served by the real host over a
//! loopback socket, fed any bytes after their magic in any chunking. This
//! reaches what the guests' native unit targets cannot: their framing and
//! session code bound to the WIT imports, and the host around them. A guest
//! trap or a limit hit on client input is a failure (it would end a
//! client's connection for sending odd bytes), and so is a connection that
//! does not end once the client has sent everything and shut down.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fuzzkit::Fuzzer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerOptions};
use crate::config::Config;
use crate::plugin::{Plugin, PluginConfig, PluginLimits, load_plugins};
use crate::protocol::{Accepted, Env};

/// Bound for one whole connection; real runs take well under a millisecond.
const CONNECTION: Duration = Duration::from_secs(10);

/// The settings the plugin host reads (max RDY 2500, max delay 1 h, as
/// nsqd's defaults) with a short write timeout.
fn env(broker: Broker) -> Env {
    Env {
        broker,
        config: Arc::new(Config {
            client_timeout: Duration::from_secs(5),
            ..Config::default()
        }),
        shutdown: CancellationToken::new(),
        auth: None,
        tls: None,
    }
}

/// One plugin, its runtime and a listener reused by every execution.
struct Harness {
    rt: tokio::runtime::Runtime,
    plugin: Arc<Plugin>,
    listener: TcpListener,
    magic: [u8; 4],
}

impl Harness {
    fn new(name: &str, magic: &[u8; 4]) -> Harness {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let cfg = PluginConfig {
            name: name.into(),
            component: PathBuf::from(env!("NSQ_GATEWAY_PLUGIN_DIR")).join(format!("{name}.wasm")),
            magics: vec![
                String::from_utf8_lossy(magic)
                    .replace('\r', "\\r")
                    .replace('\n', "\\n"),
            ],
            config: BTreeMap::new(),
            limits: PluginLimits {
                max_connections: 4,
                ..PluginLimits::default()
            },
            override_v2: false,
        };
        let (plugin, listener) = rt.block_on(async {
            let mut loaded = load_plugins(&[cfg]).expect("load the plugin");
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            (loaded.remove(0).1, listener)
        });
        Harness {
            rt,
            plugin,
            listener,
            magic: *magic,
        }
    }

    /// Serves one connection that sends `data` (in chunks of `step` bytes)
    /// after the magic, then shuts down its side. Returns what the client
    /// received.
    fn connection(&self, data: &[u8], step: usize) -> Vec<u8> {
        let before = self.plugin.stats();
        let received = self.rt.block_on(async {
            let addr = self.listener.local_addr().expect("listener address");
            let mut client = TcpStream::connect(addr).await.expect("connect");
            let (server, peer) = self.listener.accept().await.expect("accept");
            let plugin = self.plugin.clone();
            let broker = Broker::new(BrokerOptions {
                mem_queue_size: 1000,
                ..BrokerOptions::default()
            });
            let magic = self.magic;
            let serving = tokio::spawn(async move {
                let conn = Accepted {
                    stream: server.into(),
                    peer,
                    magic,
                    id: 1,
                };
                plugin.serve(conn, env(broker)).await
            });
            let talk = async {
                let mut out = Vec::new();
                let (mut rd, mut wr) = client.split();
                let send = async {
                    for chunk in data.chunks(step) {
                        // The guest may close first; what it did not read is
                        // not an error of either side.
                        if wr.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = wr.shutdown().await;
                };
                let receive = rd.read_to_end(&mut out);
                let (_, got) = tokio::join!(send, receive);
                // A reset after the guest closed with unread input is fine.
                let _ = got;
                out
            };
            let n = tokio::time::timeout(CONNECTION, talk)
                .await
                .unwrap_or_else(|_| panic!("the connection did not end within {CONNECTION:?}"));
            tokio::time::timeout(CONNECTION, serving)
                .await
                .expect("serve returns once the client is gone")
                .expect("the serving task")
                .expect("serve");
            n
        });
        let after = self.plugin.stats();
        assert_eq!(
            after.traps, before.traps,
            "the guest trapped on client input"
        );
        assert_eq!(
            after.limit_hits, before.limit_hits,
            "client input hit a plugin limit"
        );
        received
    }
}

/// The first input byte picks the chunk size; the rest follows the magic.
/// The outcome is the set of kinds of reply lines (their start, digits
/// blurred), so inputs that draw a new reply or error are kept.
fn run(h: &Harness, data: &[u8]) -> BTreeSet<Vec<u8>> {
    let (step, data) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s % 32) + 1, rest),
        None => (1, data),
    };
    let received = h.connection(data, step);
    received
        .split(|&b| b == b'\n')
        .map(|line| {
            line.iter()
                .take(20)
                .map(|&b| if b.is_ascii_digit() { b'0' } else { b })
                .collect()
        })
        .collect()
}

#[test]
fn fuzz_line_component() {
    let h = Harness::new("line", b"LINE");
    Fuzzer::new("line_component")
        .seeds([
            &b"\x08\nPUB t hello\nPUB t a\\nb\nDPUB t 10 later\nSUB t c manual\nRDY 5\nSTATS\nPING\n"[..],
            b"\x03\r\nSUB t c\nPUB t x\nFIN 0123456789abcdef\nREQ 0123456789abcdef 5\nTOUCH x\nHELP\nQUIT\n",
        ])
        .dict([&b"\n"[..], b"PUB t ", b"SUB t c ", b"RDY ", b"FIN ", b"QUIT\n"])
        .max_len(2048)
        .budget_scale(0.5)
        .run(|d| run(&h, d));
}

#[test]
fn fuzz_stomp_component() {
    let h = Harness::new("stomp", b"CONN");
    Fuzzer::new("stomp_component")
        .seeds([
            &b"\x10ECT\naccept-version:1.2\nhost:h\nheart-beat:0,0\n\n\0SEND\ndestination:/queue/a\n\nhi\0SUBSCRIBE\nid:0\ndestination:/topic/a\nack:client\n\n\0DISCONNECT\nreceipt:r\n\n\0"[..],
            b"\x04ECT\naccept-version:1.1,1.2\n\n\0BEGIN\ntransaction:t\n\n\0SEND\ndestination:/topic/b\ntransaction:t\ncontent-length:2\n\nab\0COMMIT\ntransaction:t\n\n\0ACK\nid:x\n\n\0",
        ])
        .dict([&b"\n"[..], b"\0", b":", b"\\c", b"SEND\n", b"SUBSCRIBE\n", b"destination:/queue/", b"content-length:"])
        .max_len(2048)
        .budget_scale(0.5)
        .run(|d| run(&h, d));
}

#[test]
fn fuzz_resp_component() {
    let h = Harness::new("resp", b"*3\r\n");
    Fuzzer::new("resp_component")
        .seeds([
            &b"\x07$7\r\nPUBLISH\r\n$1\r\nt\r\n$5\r\nhello\r\n*2\r\n$4\r\nLLEN\r\n$1\r\nq\r\nPING\r\n"[..],
            b"\x02$5\r\nLPUSH\r\n$1\r\nq\r\n$1\r\na\r\nBRPOP q 1\r\nSUBSCRIBE a b\r\nPING\r\nQUIT\r\n",
            b"\x01$5\r\nHELLO\r\n$1\r\n3\r\n$0\r\n\r\nCLIENT SETNAME x\r\nRESET\r\n",
        ])
        .dict([&b"\r\n"[..], b"*", b"$", b"PUBLISH ", b"SUBSCRIBE ", b"BRPOP ", b"LPUSH ", b"\""])
        .max_len(2048)
        .budget_scale(0.5)
        .run(|d| run(&h, d));
}
