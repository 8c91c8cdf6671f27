//! Session tests against the SDK's recording host: command replies byte
//! for byte, subscriber mode, blocking pops with their timer, pipelining
//! behind a block, BRPOP's messages fetched ahead and their acks, limits,
//! and protocol errors fed one byte at a time.

use nsq_sdk::testing::{Call, Recorder, Session, connect_info, message, validate};
use nsq_sdk::{AuthError, BrokerError, ChannelStats, Identity, TopicStats};

use super::*;

/// A connection with client id 7 and `config`, as the gateway opens it
/// after validating the config, with the magic left out: the tests send
/// whole commands.
fn open(config: &[(&str, &str)]) -> Session<Resp> {
    open_on(config, Recorder::default())
}

fn open_on(config: &[(&str, &str)], host: Recorder) -> Session<Resp> {
    if let Err(e) = validate::<Resp>(config) {
        panic!("refused: {e}");
    }
    let mut info = connect_info(b"*1\r\n", config);
    info.magic = Vec::new();
    info.client_id = 7;
    Session::open_with(info, host)
}

fn session() -> Session<Resp> {
    open(&[])
}

/// A RESP request array.
fn cmd(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    v
}

fn run(s: &mut Session<Resp>, args: &[&str]) -> String {
    s.data(&cmd(args));
    s.text()
}

/// Each subscription handle's (topic, channel, ready), `None` once
/// unsubscribed, replayed from the recorded calls.
fn subs(h: &Recorder) -> Vec<Option<(String, String, u32)>> {
    let mut subs = Vec::new();
    for c in &h.calls {
        match c {
            Call::Subscribe { topic, channel } => {
                subs.push(Some((topic.clone(), channel.clone(), 0)));
            }
            Call::SetReady { sub, count } => {
                if let Some(Some(s)) = subs.get_mut(*sub as usize) {
                    s.2 = *count;
                }
            }
            Call::Unsubscribe { sub } => {
                if let Some(s) = subs.get_mut(*sub as usize) {
                    *s = None;
                }
            }
            _ => {}
        }
    }
    subs
}

fn live_subs(h: &Recorder) -> usize {
    subs(h).iter().flatten().count()
}

/// Every (topic, body) published, batches flattened.
fn published(h: &Recorder) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for c in &h.calls {
        match c {
            Call::Publish { topic, body } => out.push((topic.clone(), body.clone())),
            Call::PublishMany { topic, bodies } => {
                out.extend(bodies.iter().map(|b| (topic.clone(), b.clone())));
            }
            _ => {}
        }
    }
    out
}

/// Every (sub, id) finished (`finish` or `finish-many`).
fn finished(h: &Recorder) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for c in &h.calls {
        match c {
            Call::Finish { sub, id } => out.push((*sub, id.clone())),
            Call::FinishMany { sub, ids } => out.extend(ids.iter().map(|i| (*sub, i.clone()))),
            _ => {}
        }
    }
    out
}

/// Every (sub, id) requeued.
fn requeued(h: &Recorder) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for c in &h.calls {
        match c {
            Call::Requeue { sub, id, .. } => out.push((*sub, id.clone())),
            Call::RequeueMany { sub, ids, .. } => {
                out.extend(ids.iter().map(|i| (*sub, i.clone())));
            }
            _ => {}
        }
    }
    out
}

fn count(h: &Recorder, name: &str) -> usize {
    h.calls.iter().filter(|c| c.name() == name).count()
}

/// What `stats` answers for a topic with these channels and depths.
fn topic(name: &str, channels: &[(&str, u64)]) -> TopicStats {
    TopicStats {
        name: name.into(),
        depth: 0,
        message_count: 0,
        paused: false,
        channels: channels
            .iter()
            .map(|(c, depth)| ChannelStats {
                name: (*c).into(),
                depth: *depth,
                in_flight: 0,
                deferred: 0,
                message_count: 0,
                requeue_count: 0,
                timeout_count: 0,
                clients: 1,
                paused: false,
            })
            .collect(),
    }
}

#[test]
fn connection_commands() {
    let mut s = session();
    assert_eq!(run(&mut s, &["PING"]), "+PONG\r\n");
    assert_eq!(run(&mut s, &["ping", "hi"]), "$2\r\nhi\r\n");
    assert_eq!(run(&mut s, &["ECHO", "x y"]), "$3\r\nx y\r\n");
    assert_eq!(run(&mut s, &["SELECT", "0"]), "+OK\r\n");
    assert_eq!(
        run(&mut s, &["SELECT", "1"]),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        run(&mut s, &["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]),
        "+OK\r\n"
    );
    assert_eq!(run(&mut s, &["client", "setname", "worker-1"]), "+OK\r\n");
    assert_eq!(run(&mut s, &["CLIENT", "GETNAME"]), "$8\r\nworker-1\r\n");
    assert_eq!(run(&mut s, &["CLIENT", "ID"]), ":7\r\n");
    assert!(run(&mut s, &["HELLO", "2"]).starts_with("*14\r\n$6\r\nserver\r\n"));
    assert_eq!(
        run(&mut s, &["HELLO", "4"]),
        "-NOPROTO sorry, this protocol version is not supported.\r\n"
    );
    assert_eq!(
        run(&mut s, &["FLUSHALL", "ASYNC", "x"]),
        "-ERR unknown command 'FLUSHALL', with args beginning with: 'ASYNC' 'x' \r\n"
    );
    assert_eq!(
        run(&mut s, &["PUBLISH", "t"]),
        "-ERR wrong number of arguments for 'publish' command\r\n"
    );
    assert!(!s.host.closed, "errors keep the connection open");
    assert_eq!(run(&mut s, &["QUIT"]), "+OK\r\n");
    assert!(s.host.closed && s.protocol.is_closed());
    assert_eq!(run(&mut s, &["PING"]), "", "nothing after QUIT");
}

#[test]
fn server_commands() {
    let mut s = session();
    assert_eq!(
        run(&mut s, &["SELECT", "x"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(run(&mut s, &["CONFIG", "get", "save"]), "*0\r\n");
    assert_eq!(
        run(&mut s, &["CONFIG", "SET", "a", "b"]),
        "-ERR unknown subcommand 'SET'. Try CONFIG HELP.\r\n"
    );
    assert_eq!(run(&mut s, &["COMMAND", "DOCS"]), "*0\r\n");
    let info =
        "# Server\r\nredis_version:7.2.0\r\nredis_mode:standalone\r\nserver_name:nsq-gateway\r\n";
    assert_eq!(
        run(&mut s, &["INFO"]),
        format!("${}\r\n{info}\r\n", info.len())
    );
    assert!(!s.host.closed);
}

#[test]
fn publish_replies_with_the_channel_count() {
    let mut s = session();
    s.host.channels = 0;
    assert_eq!(run(&mut s, &["PUBLISH", "t", "hello"]), ":0\r\n");
    s.host.channels = 2;
    assert_eq!(run(&mut s, &["PUBLISH", "t", "again"]), ":2\r\n");
    assert_eq!(
        count(&s.host, "stats"),
        0,
        "the count comes with the publish"
    );
    assert_eq!(
        published(&s.host),
        vec![
            ("t".into(), b"hello".to_vec()),
            ("t".into(), b"again".to_vec())
        ]
    );
    s.host
        .fail_next("publish", BrokerError::PublishFailed("empty body".into()));
    assert_eq!(
        run(&mut s, &["PUBLISH", "t", ""]),
        "-ERR publish failed: empty body\r\n"
    );
    // Inline commands work after the first (array) command.
    s.data(b"PUBLISH t \"in line\"\r\n");
    assert_eq!(s.text(), ":2\r\n");
    assert_eq!(published(&s.host)[3].1, b"in line");
}

#[test]
fn subscriber_mode() {
    let mut s = session();
    assert_eq!(
        run(&mut s, &["SUBSCRIBE", "news", "sport"]),
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n"
    );
    assert_eq!(
        subs(&s.host)[0],
        Some(("news".into(), "resp-sub-7#ephemeral".into(), 256))
    );
    assert_eq!(
        run(&mut s, &["PUBLISH", "news", "x"]),
        "-ERR Can't execute 'publish': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
    );
    assert_eq!(run(&mut s, &["PING"]), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    s.messages(1, vec![message(1, b"goal")]);
    assert_eq!(
        s.text(),
        "*3\r\n$7\r\nmessage\r\n$5\r\nsport\r\n$4\r\ngoal\r\n"
    );
    assert_eq!(finished(&s.host), vec![(1, "0000000000000001".into())]);
    assert_eq!(
        run(&mut s, &["SUBSCRIBE", "news"]),
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:2\r\n",
        "a second SUBSCRIBE to a topic is a no-op"
    );
    assert_eq!(
        run(&mut s, &["UNSUBSCRIBE", "news"]),
        "*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    assert_eq!(
        run(&mut s, &["UNSUBSCRIBE"]),
        "*3\r\n$11\r\nunsubscribe\r\n$5\r\nsport\r\n:0\r\n"
    );
    assert_eq!(live_subs(&s.host), 0);
    assert_eq!(
        run(&mut s, &["UNSUBSCRIBE"]),
        "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"
    );
    assert_eq!(run(&mut s, &["PING"]), "+PONG\r\n", "back to normal");
}

#[test]
fn subscriptions_are_limited() {
    let mut s = open(&[("max_subscriptions", "2")]);
    let reply = run(&mut s, &["SUBSCRIBE", "a", "b", "c"]);
    assert!(
        reply.ends_with("-ERR at most 2 subscriptions per connection (max_subscriptions)\r\n"),
        "{reply}"
    );
    assert_eq!(live_subs(&s.host), 2);
}

#[test]
fn brpop_delivers_one_message_and_finishes_it() {
    let mut s = session();
    assert_eq!(run(&mut s, &["BRPOP", "jobs", "0"]), "");
    assert_eq!(subs(&s.host)[0], Some(("jobs".into(), "resp".into(), 1)));
    assert_eq!(s.host.timer, None, "timeout 0 blocks forever (no timer)");
    // Pipelined commands wait behind the block.
    s.data(&cmd(&["PING"]));
    assert_eq!(s.text(), "");
    s.messages(0, vec![message(0xaa, b"job-1")]);
    assert_eq!(s.text(), "*2\r\n$4\r\njobs\r\n$5\r\njob-1\r\n+PONG\r\n");
    assert_eq!(finished(&s.host), vec![(0, "00000000000000aa".into())]);
    assert_eq!(
        subs(&s.host)[0].as_ref().map(|s| s.2),
        Some(0),
        "paused after the pop"
    );
    // The next pop reuses the cached subscription.
    assert_eq!(run(&mut s, &["BLPOP", "jobs", "other", "0.25"]), "");
    assert_eq!(subs(&s.host).len(), 2);
    assert_eq!(s.host.timer, Some(250));
    s.timer();
    assert_eq!(s.text(), "*-1\r\n");
    assert!(subs(&s.host).iter().flatten().all(|s| s.2 == 0));
    // A late delivery after the timeout goes back to the queue.
    s.messages(1, vec![message(0xbb, b"late")]);
    assert_eq!(s.text(), "");
    assert_eq!(requeued(&s.host), vec![(1, "00000000000000bb".into())]);
}

#[test]
fn brpop_arguments() {
    let mut s = session();
    assert_eq!(
        run(&mut s, &["BRPOP", "q", "soon"]),
        "-ERR timeout is not a float or out of range\r\n"
    );
    assert_eq!(
        run(&mut s, &["BRPOP", "q", "-1"]),
        "-ERR timeout is negative\r\n"
    );
    assert_eq!(
        run(&mut s, &["BRPOP", "q"]),
        "-ERR wrong number of arguments for 'brpop' command\r\n"
    );
    assert_eq!(run(&mut s, &["LPUSH", "q", "a", "b", "c"]), ":3\r\n");
    assert_eq!(published(&s.host).len(), 3);
    s.host.stats.push(topic("q", &[("resp", 5)]));
    assert_eq!(run(&mut s, &["LLEN", "q"]), ":5\r\n");
}

#[test]
fn queue_cache_evicts_least_recently_used() {
    let mut s = open(&[("max_subscriptions", "2")]);
    for key in ["a", "b", "c"] {
        run(&mut s, &["BRPOP", key, "1"]);
        s.timer();
        assert_eq!(s.text(), "*-1\r\n");
    }
    assert_eq!(live_subs(&s.host), 2);
    assert!(subs(&s.host)[0].is_none(), "a was evicted");
}

/// BRPOPs pipelined behind one another fetch ahead: one delivery answers
/// them all, the popped messages are finished with one call at the end of
/// the event, and the queue is paused once no BRPOP waits.
#[test]
fn pipelined_brpops_share_one_delivery_and_one_ack() {
    let mut s = session();
    let mut pops = Vec::new();
    for _ in 0..4 {
        pops.extend(cmd(&["BRPOP", "q", "5"]));
    }
    s.data(&pops);
    assert_eq!(s.text(), "");
    assert_eq!(subs(&s.host)[0], Some(("q".into(), "resp".into(), 32)));
    assert_eq!(s.host.timer, Some(5000));
    s.calls();
    let batch: Vec<_> = (1..=4)
        .map(|n| message(n, format!("m{n}").as_bytes()))
        .collect();
    s.messages(0, batch);
    let mut want = String::new();
    for n in 1..=4 {
        want.push_str(&format!("*2\r\n$1\r\nq\r\n$2\r\nm{n}\r\n"));
    }
    assert_eq!(s.text(), want);
    let ids: Vec<String> = (1..=4).map(|n| format!("{n:016x}")).collect();
    assert_eq!(
        s.calls(),
        [
            Call::FinishMany { sub: 0, ids },
            Call::SetReady { sub: 0, count: 0 },
        ]
    );
    assert_eq!(s.host.timer, None, "nothing left ahead, no BRPOP waiting");
}

/// Messages fetched ahead that no BRPOP popped: the next BRPOP takes one
/// without a broker call, the idle timer requeues the rest, and so do a
/// BRPOP blocking on another key and the connection's close. None is
/// finished before a client got it.
#[test]
fn messages_fetched_ahead_are_popped_or_requeued() {
    let mut s = session();
    let mut pops = cmd(&["BRPOP", "q", "0"]);
    pops.extend(cmd(&["BRPOP", "q", "0"]));
    s.data(&pops);
    let batch: Vec<_> = (1..=5).map(|n| message(n, b"m")).collect();
    s.messages(0, batch);
    assert_eq!(s.text().matches("*2\r\n").count(), 2);
    assert_eq!(finished(&s.host).len(), 2);
    assert_eq!(s.host.timer, Some(500), "brpop_idle_ms for the three ahead");
    s.calls();
    // A later BRPOP pops one at once: the only call is its FIN.
    assert_eq!(
        run(&mut s, &["BRPOP", "q", "1"]),
        "*2\r\n$1\r\nq\r\n$1\r\nm\r\n"
    );
    assert_eq!(
        s.calls(),
        [Call::FinishMany {
            sub: 0,
            ids: vec![format!("{:016x}", 3)]
        }]
    );
    s.timer();
    assert_eq!(s.text(), "");
    assert_eq!(
        requeued(&s.host),
        [(0, format!("{:016x}", 4)), (0, format!("{:016x}", 5))]
    );
    s.calls();

    // Blocking on another key sends what is ahead on this one back.
    s.data(&pops);
    s.messages(
        0,
        vec![message(6, b"m"), message(7, b"m"), message(8, b"m")],
    );
    s.text();
    s.calls();
    assert_eq!(run(&mut s, &["BRPOP", "other", "0"]), "");
    assert_eq!(requeued(&s.host), [(0, format!("{:016x}", 8))]);
    s.calls();

    // And the close sends back what is still ahead.
    s.data(&cmd(&["PING"]));
    s.messages(1, vec![message(9, b"m"), message(10, b"m")]);
    assert_eq!(s.text(), "*2\r\n$5\r\nother\r\n$1\r\nm\r\n+PONG\r\n");
    s.calls();
    s.close();
    assert_eq!(requeued(&s.host), [(1, format!("{:016x}", 10))]);
}

/// A multi-key BRPOP takes what one of its keys has ahead, in key order.
#[test]
fn a_brpop_on_several_keys_pops_what_is_ahead_on_any() {
    let mut s = session();
    let mut pops = cmd(&["BRPOP", "b", "0"]);
    pops.extend(cmd(&["BRPOP", "b", "0"]));
    s.data(&pops);
    s.messages(
        0,
        vec![message(1, b"x"), message(2, b"y"), message(3, b"z")],
    );
    s.text();
    s.calls();
    assert_eq!(
        run(&mut s, &["BLPOP", "a", "b", "0"]),
        "*2\r\n$1\r\nb\r\n$1\r\nz\r\n"
    );
    assert_eq!(
        count(&s.host, "subscribe"),
        0,
        "answered before subscribing a"
    );
}

/// The settings the broker bounds follow `connect-info.limits`.
#[test]
fn ready_counts_and_batches_follow_the_broker_limits() {
    let mut info = connect_info(b"*1\r\n", &[("subscribe_rdy", "5000")]);
    info.magic = Vec::new();
    info.limits.max_rdy_count = 100;
    info.limits.max_batch = 2;
    let mut s = Session::<Resp>::open_with(info, Recorder::default());
    run(&mut s, &["SUBSCRIBE", "t"]);
    assert_eq!(subs(&s.host)[0].as_ref().map(|s| s.2), Some(100));
    s.calls();
    s.messages(0, (1..=3).map(|n| message(n, b"m")).collect());
    let sizes: Vec<usize> = s
        .calls()
        .iter()
        .map(|c| match c {
            Call::FinishMany { ids, .. } => ids.len(),
            _ => 0,
        })
        .collect();
    assert_eq!(sizes, [2, 1], "finish-many within limits.max-batch");
    let mut s = open(&[]);
    s.data(b"*5\r\n$5\r\nLPUSH\r\n$1\r\nq\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");
    assert_eq!(s.text(), ":3\r\n");
}

/// The magic the gateway read is the start of the first command.
#[test]
fn the_magic_starts_the_stream() {
    let mut s = Session::<Resp>::open(b"*1\r\n", &[]);
    s.data(b"$4\r\nPING\r\n");
    assert_eq!(s.text(), "+PONG\r\n");
}

/// A protocol error is answered like Redis and closes, whatever the split.
#[test]
fn protocol_errors_at_every_split() {
    let bad = b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n:5\r\n".to_vec();
    let want = "+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n";
    for split in 0..bad.len() {
        let mut s = session();
        s.data(&bad[..split]);
        s.data(&bad[split..]);
        assert_eq!(s.text(), want, "split at {split}");
        assert!(s.host.closed);
    }
    // One byte at a time, too.
    let mut s = session();
    for b in &bad {
        s.data(std::slice::from_ref(b));
    }
    assert_eq!(s.text(), want);
}

#[test]
fn oversized_requests_close() {
    let config = [
        ("max_bulk_len", "8"),
        ("max_array_len", "3"),
        ("max_query_buffer", "1024"),
    ];
    let mut s = open(&config);
    s.data(b"*2\r\n$4\r\nECHO\r\n$9\r\n");
    assert_eq!(s.text(), "-ERR Protocol error: invalid bulk length\r\n");
    assert!(s.host.closed);
    let mut s = open(&config);
    s.data(b"*4\r\n");
    assert_eq!(
        s.text(),
        "-ERR Protocol error: invalid multibulk length\r\n"
    );
    let mut s = open(&config);
    s.data(&cmd(&["BRPOP", "q", "0"]));
    s.data(&vec![b'x'; 2000]);
    assert!(
        s.text()
            .starts_with("-ERR Protocol error: query buffer of 2000 bytes")
    );
    assert!(s.host.closed);
}

/// Every valid command sequence gives the same replies however it is split.
#[test]
fn replies_do_not_depend_on_chunking() {
    let mut stream = Vec::new();
    for c in [
        cmd(&["PING"]),
        cmd(&["ECHO", "hello\r\nworld"]),
        cmd(&["PUBLISH", "t", "m"]),
        b"PING\r\n".to_vec(),
        cmd(&["LPUSH", "q", "1", "2"]),
    ] {
        stream.extend(c);
    }
    let mut s = session();
    s.data(&stream);
    let whole = s.text();
    for split in 0..stream.len() {
        let mut s = session();
        s.data(&stream[..split]);
        s.data(&stream[split..]);
        assert_eq!(s.text(), whole, "split at {split}");
    }
}

#[test]
fn hello_3_switches_to_resp3() {
    let mut s = session();
    let hello = run(&mut s, &["HELLO", "3", "SETNAME", "w"]);
    assert!(hello.starts_with("%7\r\n$6\r\nserver\r\n"), "{hello}");
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello}");
    assert_eq!(run(&mut s, &["CLIENT", "GETNAME"]), "$1\r\nw\r\n");
    assert_eq!(
        run(&mut s, &["SUBSCRIBE", "t"]),
        ">3\r\n$9\r\nsubscribe\r\n$1\r\nt\r\n:1\r\n"
    );
    // RESP3 allows any command while subscribed.
    assert_eq!(run(&mut s, &["PING"]), "+PONG\r\n");
    assert_eq!(run(&mut s, &["PUBLISH", "t", "x"]), ":1\r\n");
    s.messages(0, vec![message(1, b"m")]);
    assert_eq!(s.text(), ">3\r\n$7\r\nmessage\r\n$1\r\nt\r\n$1\r\nm\r\n");
    assert_eq!(
        run(&mut s, &["UNSUBSCRIBE"]),
        ">3\r\n$11\r\nunsubscribe\r\n$1\r\nt\r\n:0\r\n"
    );
    run(&mut s, &["BRPOP", "q", "1"]);
    s.timer();
    assert_eq!(s.text(), "_\r\n");
    assert_eq!(run(&mut s, &["RESET"]), "+RESET\r\n");
    assert_eq!(run(&mut s, &["CLIENT", "GETNAME"]), "$-1\r\n");
}

#[test]
fn resp3_can_be_turned_off() {
    let mut s = open(&[("resp3", "false")]);
    assert_eq!(
        run(&mut s, &["HELLO", "3"]),
        "-NOPROTO sorry, this protocol version is not supported.\r\n"
    );
    assert!(run(&mut s, &["HELLO"]).starts_with("*14\r\n"));
}

/// A pipeline whose replies pass `OUT_SOFT_LIMIT` continues from a 0 ms
/// timer, after the host has flushed what came before.
#[test]
fn long_pipelines_resume_on_the_timer() {
    let mut s = session();
    let big = "x".repeat(100_000);
    let mut input = Vec::new();
    for _ in 0..25 {
        input.extend(cmd(&["ECHO", &big]));
    }
    input.extend(cmd(&["PING"]));
    s.data(&input);
    let first = s.text();
    assert_eq!(s.host.timer, Some(0));
    assert!(first.len() >= OUT_SOFT_LIMIT && first.len() < 2 * OUT_SOFT_LIMIT);
    // More data continues the pipeline too (the host flushed before it),
    // in order.
    s.data(&cmd(&["ECHO", "last"]));
    let mut rest = s.text();
    assert!(rest.len() >= OUT_SOFT_LIMIT, "{}", rest.len());
    while s.host.timer == Some(0) {
        s.timer();
        rest.push_str(&s.text());
    }
    let all = first + &rest;
    assert!(all.ends_with("+PONG\r\n$4\r\nlast\r\n"));
    assert_eq!(all.matches("$100000\r\n").count(), 25);
}

/// Pipelined LPUSH replies come from one stats call per topic per batch,
/// advanced by what the batch itself published; PUBLISH's come from the
/// publish itself.
#[test]
fn a_batch_fetches_stats_once_per_topic() {
    let mut s = session();
    s.host.channels = 2;
    s.host.stats.push(topic("q", &[("resp", 1), ("other", 0)]));
    let mut batch = Vec::new();
    for _ in 0..3 {
        batch.extend(cmd(&["LPUSH", "q", "a", "b"]));
        batch.extend(cmd(&["PUBLISH", "q", "c"]));
    }
    s.data(&batch);
    assert_eq!(count(&s.host, "stats"), 1);
    // The fake's queue depth is 1 (as if a consumer took the rest): the
    // first reply is max(1, 2), then the batch adds its own publishes.
    assert_eq!(s.text(), ":2\r\n:2\r\n:4\r\n:2\r\n:7\r\n:2\r\n");
    s.data(&cmd(&["LLEN", "q"]));
    assert_eq!((count(&s.host, "stats"), s.text().as_str()), (2, ":1\r\n"));
}

/// Pipelined PUBLISHes to one topic go out as one `publish-many`, with one
/// reply each and in order; a refused batch falls back to one at a time so
/// each command gets its own answer.
#[test]
fn pipelined_publishes_are_batched() {
    let mut s = session();
    s.host.stats.push(topic("t", &[("c", 0)]));
    let mut batch = Vec::new();
    for body in ["a", "b", "c"] {
        batch.extend(cmd(&["PUBLISH", "t", body]));
    }
    batch.extend(cmd(&["PING"]));
    batch.extend(cmd(&["RPUSH", "t", "d"]));
    batch.extend(cmd(&["PUBLISH", "u", "e"]));
    s.data(&batch);
    assert_eq!(s.text(), ":1\r\n:1\r\n:1\r\n+PONG\r\n:1\r\n:1\r\n");
    assert_eq!(count(&s.host, "publish-many"), 1);
    let bodies: Vec<Vec<u8>> = published(&s.host).into_iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, [&b"a"[..], b"b", b"c", b"d", b"e"]);

    // An empty body refuses the batch: each goes out on its own, in order,
    // with its own reply.
    s.calls();
    s.host.fail_next(
        "publish-many",
        BrokerError::PublishFailed("empty body".into()),
    );
    s.host
        .fail_next("publish", BrokerError::PublishFailed("empty body".into()));
    let mut batch = Vec::new();
    for body in ["", "x", "y"] {
        batch.extend(cmd(&["PUBLISH", "t", body]));
    }
    s.data(&batch);
    assert_eq!(s.text(), "-ERR publish failed: empty body\r\n:1\r\n:1\r\n");
    let names: Vec<&str> = s.calls().iter().map(Call::name).collect();
    assert_eq!(names, ["publish-many", "publish", "publish", "publish"]);
    // A protocol error after publishes: they are answered first.
    let mut batch = cmd(&["PUBLISH", "t", "z"]);
    batch.extend_from_slice(b"*1\r\n:");
    s.data(&batch);
    assert_eq!(
        s.text(),
        ":1\r\n-ERR Protocol error: expected '$', got ':'\r\n"
    );
    assert_eq!(published(&s.host), [("t".to_string(), b"z".to_vec())]);
}

/// Fuzz target (see `fuzzkit`): any request bytes against a session and the
/// fake host, delivered whole and in small chunks. Nothing panics, and the
/// replies and broker calls do not depend on how the bytes were split, except
/// the integers PUBLISH and LPUSH answer from stats, which are cached for one
/// batch of pipelined commands by design (and the fake's stats are static).
#[test]
fn fuzz_session_in_any_chunking() {
    /// Replies, closed, published (topic, body) pairs, live subscriptions.
    type Seen = (Vec<u8>, bool, Vec<(String, Vec<u8>)>, usize);
    fn run(chunks: &[&[u8]]) -> Seen {
        let mut s = session();
        for c in chunks {
            s.data(c);
        }
        let host = &s.host;
        // Integer replies (`:<n>`) compared by position only.
        let mut out = Vec::new();
        for line in host.output.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b':') {
                out.extend_from_slice(b":#\r\n");
            } else {
                out.extend_from_slice(line);
            }
        }
        (out, host.closed, published(host), live_subs(host))
    }
    fuzzkit::Fuzzer::new("resp_session")
        .seeds([
            &b"\x00*3\r\n$7\r\nPUBLISH\r\n$1\r\nt\r\n$5\r\nhello\r\n"[..],
            b"\x03HELLO 3\r\nSUBSCRIBE a b\r\nPING\r\nUNSUBSCRIBE\r\nQUIT\r\n",
            b"\x01LPUSH q a b c\r\nRPUSH q d\r\nLLEN q\r\nBRPOP q 0\r\nPING\r\n",
            b"\x02*2\r\n$4\r\nECHO\r\n$3\r\nhey\r\nCLIENT SETNAME x\r\nINFO\r\nCOMMAND\r\n",
            b"\x04MULTI\r\nSELECT 0\r\nPUBSUB CHANNELS\r\nRESET\r\n*-1\r\n*1\r\n$-5\r\n",
        ])
        .dict([
            &b"\r\n"[..],
            b"*",
            b"$",
            b"PUBLISH ",
            b"SUBSCRIBE ",
            b"PSUBSCRIBE ",
            b"BRPOP ",
            b"BLPOP ",
            b"LPUSH ",
            b"HELLO ",
            b"\"",
        ])
        .max_len(2048)
        .run(|data| {
            let (step, data) = match data.split_first() {
                Some((s, rest)) => (usize::from(*s % 13) + 1, rest),
                None => (1, data),
            };
            let whole = run(&[data]);
            let chunks: Vec<&[u8]> = data.chunks(step).collect();
            let pieces = run(&chunks);
            assert_eq!(
                String::from_utf8_lossy(&whole.0),
                String::from_utf8_lossy(&pieces.0),
                "replies differ with {step}-byte chunks"
            );
            assert_eq!(whole, pieces);
            (whole.1, whole.2.len(), whole.0.len().min(64))
        });
}

#[test]
fn with_an_auth_server_commands_wait_for_auth_and_the_pipeline_waits_for_the_answer() {
    let mut s = with_auth_server();
    assert_eq!(
        run(&mut s, &["PING"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert!(run(&mut s, &["HELLO", "3"]).starts_with("-NOAUTH HELLO must be called"));
    // AUTH plus a pipelined PUBLISH: nothing runs until the answer.
    let mut pipeline = cmd(&["AUTH", "user", "pw"]);
    pipeline.extend(cmd(&["PUBLISH", "t", "x"]));
    s.data(&pipeline);
    assert_eq!(s.text(), "");
    assert_eq!(
        s.calls(),
        [Call::Authenticate {
            secret: "pw".into()
        }]
    );
    s.authenticated(Err(AuthError::Failed));
    assert_eq!(
        s.text(),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n-NOAUTH Authentication required.\r\n"
    );
    s.data(&pipeline);
    s.authenticated(Ok(identity()));
    assert_eq!(s.text(), "+OK\r\n:1\r\n");
    assert_eq!(published(&s.host).len(), 1);
    assert_eq!(
        run(&mut s, &["AUTH", "pw"]),
        "-ERR this connection is already authenticated\r\n"
    );
}

#[test]
fn hello_auth_answers_the_map_in_the_new_protocol_once_authenticated() {
    let mut s = with_auth_server();
    s.data(&cmd(&["HELLO", "3", "AUTH", "u", "pw", "SETNAME", "n"]));
    assert_eq!(s.text(), "");
    s.authenticated(Ok(identity()));
    assert!(s.text().starts_with("%7\r\n"));
    assert_eq!(run(&mut s, &["CLIENT", "GETNAME"]), "$1\r\nn\r\n");
}

fn with_auth_server() -> Session<Resp> {
    let mut host = Recorder::default();
    host.auth_required = true;
    open_on(&[], host)
}

fn identity() -> Identity {
    Identity {
        identity: "svc".into(),
        identity_url: String::new(),
        permission_count: 1,
    }
}

/// BRPOP's timeout as Redis reads it (seconds, fractions and exponents),
/// without a float parser in the guest.
#[test]
fn brpop_timeouts_parse_like_floats() {
    use super::queue::timeout_ms;
    let ok = |t: &str, want: Option<u32>| assert_eq!(timeout_ms(t.as_bytes()), Ok(want), "{t}");
    ok("0", None);
    ok("0.0", None);
    ok("-0", None);
    ok("5", Some(5000));
    ok(" 0.25 ", Some(250));
    ok("+1.5", Some(1500));
    ok(".5", Some(500));
    ok("2.", Some(2000));
    ok("1e-1", Some(100));
    ok("1E2", Some(100_000));
    ok("0.0004", Some(1));
    ok("0.0015", Some(2));
    ok("00012.3456", Some(12_346));
    ok("1e300", Some(u32::MAX));
    ok("99999999999999999999999999999999999999999", Some(u32::MAX));
    ok("0.000000000000000000000000000000000000000000001", Some(1));
    for bad in [
        "", ".", "x", "1x", "1e", "e5", "inf", "NaN", "1.2.3", "--1", "1e+",
    ] {
        assert_eq!(
            timeout_ms(bad.as_bytes()),
            Err("ERR timeout is not a float or out of range"),
            "{bad:?}"
        );
    }
    assert_eq!(timeout_ms(b"-1"), Err("ERR timeout is negative"));
    assert_eq!(timeout_ms(b"-0.5"), Err("ERR timeout is negative"));
}
