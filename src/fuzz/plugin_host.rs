//! Fuzz target of the plugin host's imports: arbitrary sequences of the
//! calls a guest can make (publish, publish-many, deferred publish,
//! subscribe, ready counts, finish/requeue/touch by id, topic and channel
//! administration, stats, writes to its socket) with guest-chosen names,
//! bodies, batch sizes, subscription handles, message ids and delays, against
//! a real in-memory broker. Every refusal must be a WIT error, a trap only
//! the documented denied-call flood, and every accepted call within limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fuzzkit::Fuzzer;
use fuzzkit::arbitrary::{Result as ArbResult, Unstructured};

use crate::broker::{Broker, BrokerOptions, ClientInfo, Message};
use crate::plugin::PluginLimits;
use crate::plugin::acl::NamePatterns;
use crate::plugin::bindings::nsq::gateway::broker::Host as BrokerHost;
use crate::plugin::bindings::nsq::gateway::connection::Host as ConnectionHost;
use crate::plugin::bindings::nsq::gateway::types::BrokerError as WitError;
use crate::plugin::broker::Fail;
use crate::plugin::state::{Fault, HostState, ServerLimits, Shared};

fn limits() -> PluginLimits {
    PluginLimits {
        topics: vec!["t*".into(), "a.*".into()],
        channels: vec!["c*".into()],
        max_denied: 20,
        max_subscriptions: 4,
        output_buffer: 1024,
        max_msg_size: 256,
        max_batch: 8,
        ..PluginLimits::default()
    }
}

const SERVER: ServerLimits = ServerLimits {
    max_rdy: 100,
    max_delay: Duration::from_secs(3600),
    write_timeout: Duration::from_secs(1),
};

fn state() -> HostState {
    let limits = limits();
    let shared = Arc::new(Shared {
        name: "fuzz".into(),
        topics: NamePatterns::new(&limits.topics),
        channels: NamePatterns::new(&limits.channels),
        limits,
    });
    let broker = Broker::new(BrokerOptions {
        mem_queue_size: 64,
        ..BrokerOptions::default()
    });
    let peer: SocketAddr = ([127, 0, 0, 1], 4150).into();
    let client = Arc::new(ClientInfo::new(1, peer, "fuzz"));
    HostState::new(shared, SERVER, broker, client)
}

/// A name as a guest might send: mostly from a pool that the patterns
/// allow or deny, sometimes anything.
fn name(u: &mut Unstructured<'_>, pool: &[&str]) -> ArbResult<String> {
    Ok(if u.ratio(3, 4)? {
        (*u.choose(pool)?).to_string()
    } else {
        u.arbitrary()?
    })
}

fn topic(u: &mut Unstructured<'_>) -> ArbResult<String> {
    name(u, &["t", "t2", "a.b", "denied", "t#ephemeral", "t x", ""])
}

fn channel(u: &mut Unstructured<'_>) -> ArbResult<String> {
    name(u, &["c", "c2", "c#ephemeral", "nope", "c\u{e9}"])
}

fn body(u: &mut Unstructured<'_>) -> ArbResult<Vec<u8>> {
    let len = u.int_in_range(0..=300usize)?;
    let mut b = u.bytes(len.min(u.len()))?.to_vec();
    b.resize(len, b'b');
    Ok(b)
}

fn handle(u: &mut Unstructured<'_>) -> ArbResult<u32> {
    Ok(if u.ratio(7, 8)? {
        u.int_in_range(0..=5)?
    } else {
        u.arbitrary()?
    })
}

/// A message id: one delivered earlier, or whatever the guest makes up.
fn id(u: &mut Unstructured<'_>, delivered: &[String]) -> ArbResult<String> {
    if !delivered.is_empty() && u.ratio(2, 3)? {
        return Ok(u.choose(delivered)?.clone());
    }
    u.arbitrary()
}

/// The WIT result of a call; a trap must be the denied-call flood.
fn check<T>(r: Result<T, Fail>, st: &HostState) -> Option<Result<T, WitError>> {
    match r {
        Ok(v) => Some(Ok(v)),
        Err(Fail::Wit(e)) => Some(Err(e)),
        Err(Fail::Trap(trap)) => {
            assert_eq!(
                st.fault,
                Some(Fault::DeniedFlood),
                "unexpected trap: {trap:#}"
            );
            assert!(st.denied > st.shared.limits.max_denied);
            None
        }
    }
}

fn host_calls(data: &[u8]) -> Vec<u8> {
    let mut u = Unstructured::new(data);
    let mut st = state();
    let mut delivered: Vec<String> = Vec::new();
    let mut trace = Vec::new();
    let max_msg = st.shared.limits.max_msg_size;
    let max_batch = st.shared.limits.max_batch;
    for _ in 0..64 {
        let Ok(op) = u.int_in_range(0..=14u8) else {
            break;
        };
        trace.push(op);
        let ok = (|| -> ArbResult<Option<bool>> {
            Ok(match op {
                0 => {
                    let (t, b) = (topic(&mut u)?, body(&mut u)?);
                    let n = b.len();
                    let r = check(st.publish(t, b), &st);
                    if let Some(Ok(_)) = r {
                        assert!(n > 0 && n <= max_msg, "accepted a {n}-byte body");
                    }
                    r.map(|r| r.is_ok())
                }
                1 => {
                    let t = topic(&mut u)?;
                    let count = u.int_in_range(0..=max_batch + 2)?;
                    let bodies = (0..count)
                        .map(|_| body(&mut u))
                        .collect::<ArbResult<Vec<_>>>()?;
                    let sizes_ok = bodies.iter().all(|b| !b.is_empty() && b.len() <= max_msg);
                    let r = check(st.publish_many(t, bodies), &st);
                    if let Some(Ok(_)) = r {
                        assert!((1..=max_batch).contains(&count) && sizes_ok);
                    }
                    r.map(|r| r.is_ok())
                }
                2 => {
                    let (t, b, delay) = (topic(&mut u)?, body(&mut u)?, u.arbitrary::<u32>()?);
                    let r = check(st.publish_deferred(t, b, delay), &st);
                    if let Some(Ok(_)) = r {
                        assert!(Duration::from_millis(u64::from(delay)) <= SERVER.max_delay);
                    }
                    r.map(|r| r.is_ok())
                }
                3 => {
                    let (t, c) = (topic(&mut u)?, channel(&mut u)?);
                    let r = check(st.subscribe(t, c), &st);
                    let live = st.subs.iter().filter(|s| s.is_some()).count();
                    assert!(live <= st.shared.limits.max_subscriptions);
                    r.map(|r| r.is_ok())
                }
                4 => {
                    let (sub, count) = (handle(&mut u)?, u.arbitrary::<u32>()?);
                    let count = if u.arbitrary()? { count % 200 } else { count };
                    let r = check(st.set_ready(sub, count), &st);
                    if let Some(Ok(())) = r {
                        assert!(u64::from(count) <= SERVER.max_rdy);
                    }
                    r.map(|r| r.is_ok())
                }
                5 => {
                    let sub = handle(&mut u)?;
                    check(st.unsubscribe(sub), &st).map(|r| r.is_ok())
                }
                6..=8 => {
                    let (sub, id) = (handle(&mut u)?, id(&mut u, &delivered)?);
                    let r = match op {
                        6 => st.finish(sub, id),
                        7 => {
                            let delay = u.arbitrary::<u32>()? % 7_200_000;
                            st.requeue(sub, id, delay)
                        }
                        _ => st.touch(sub, id),
                    };
                    check(r, &st).map(|r| r.is_ok())
                }
                9 => {
                    let t = topic(&mut u)?;
                    let r = match u.int_in_range(0..=4)? {
                        0 => st.create_topic(t),
                        1 => st.delete_topic(t),
                        2 => st.empty_topic(t),
                        3 => st.pause_topic(t),
                        _ => st.unpause_topic(t),
                    };
                    check(r, &st).map(|r| r.is_ok())
                }
                10 => {
                    let (t, c) = (topic(&mut u)?, channel(&mut u)?);
                    let r = match u.int_in_range(0..=4)? {
                        0 => st.create_channel(t, c),
                        1 => st.delete_channel(t, c),
                        2 => st.empty_channel(t, c),
                        3 => st.pause_channel(t, c),
                        _ => st.unpause_channel(t, c),
                    };
                    check(r, &st).map(|r| r.is_ok())
                }
                11 => {
                    let t = if u.arbitrary()? {
                        Some(topic(&mut u)?)
                    } else {
                        None
                    };
                    let r = check(st.stats(t), &st);
                    if let Some(Ok(stats)) = &r {
                        for s in stats {
                            assert!(st.shared.topics.allows(&s.name));
                        }
                    }
                    r.map(|r| r.is_ok())
                }
                14 => {
                    // Batch acks: a mix of delivered and made-up ids.
                    let sub = handle(&mut u)?;
                    let count = u.int_in_range(0..=max_batch + 2)?;
                    let ids = (0..count)
                        .map(|_| id(&mut u, &delivered))
                        .collect::<ArbResult<Vec<_>>>()?;
                    let r = if u.arbitrary()? {
                        st.finish_many(sub, ids)
                    } else {
                        let delay = u.arbitrary::<u32>()? % 7_200_000;
                        st.requeue_many(sub, ids, delay)
                    };
                    let r = check(r, &st);
                    if let Some(Ok(done)) = r {
                        assert!((1..=max_batch).contains(&count));
                        assert!(done as usize <= count);
                    }
                    r.map(|r| r.is_ok())
                }
                12 => {
                    // What the serve loop does between calls: deliver.
                    let mut out: Vec<Message> = Vec::new();
                    for c in st.subs.iter_mut().flatten() {
                        c.take_messages(max_batch, 64 * 1024, &mut out);
                    }
                    delivered.extend(out.iter().map(|m| m.id.to_string()));
                    delivered.truncate(32);
                    Some(!out.is_empty())
                }
                _ => {
                    // The connection imports: write (bounded by
                    // `output_buffer`), the timer, the clock, close.
                    let data = body(&mut u)?;
                    let r = st.write(data).expect("write never traps");
                    assert!(st.out.len() <= st.shared.limits.output_buffer);
                    if u.ratio(1, 8)? {
                        st.out.clear();
                    }
                    if u.ratio(1, 4)? {
                        let delay: Option<u32> = u.arbitrary()?;
                        st.set_timer(delay).expect("set-timer never traps");
                        assert_eq!(st.timer.is_some(), delay.is_some());
                        st.now_ms().expect("now-ms never traps");
                    }
                    if u.ratio(1, 16)? {
                        st.close().expect("close never traps");
                        let after = st.write(b"x".to_vec()).expect("write never traps");
                        assert!(after.is_err(), "a write after close was taken");
                    }
                    Some(r.is_ok())
                }
            })
        })();
        match ok {
            Ok(Some(accepted)) => trace.push(u8::from(accepted)),
            // A trap ends the connection: nothing more is called.
            Ok(None) => break,
            Err(_) => break,
        }
    }
    trace
}

#[test]
fn fuzz_plugin_host_calls() {
    Fuzzer::new("plugin_host_calls")
        .seed([0u8; 64])
        .seed(
            [
                &[3u8, 0, 0, 0, 0][..],  // subscribe t c
                &[4, 0, 0, 0, 0, 10, 1], // set_ready 0 10
                &[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'],
                &[12, 6, 0, 0, 0, 0],
            ]
            .concat(),
        )
        .seed((0..=255u8).collect::<Vec<_>>())
        .max_len(2048)
        .max_alloc(64 * 1024)
        .run(host_calls);
}
