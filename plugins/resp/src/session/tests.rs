//! Session tests against a fake host that records every call: command
//! replies byte for byte, subscriber mode, blocking pops with their timer,
//! pipelining behind a block, limits, and protocol errors fed one byte at a
//! time.

use super::*;

/// A fake gateway: topics with channels, subscriptions, and a log of output.
#[derive(Default)]
struct Fake {
    out: Vec<u8>,
    closed: bool,
    timer: Option<Option<u32>>,
    published: Vec<(String, Vec<u8>)>,
    /// (topic, channel, ready) per subscription handle; None = unsubscribed.
    subs: Vec<Option<(String, String, u32)>>,
    finished: Vec<(u32, String)>,
    requeued: Vec<(u32, String)>,
    /// Channels per topic, as stats would list them.
    channels: Vec<(String, Vec<(String, u64)>)>,
    /// Successful `publish_many` calls.
    batches: usize,
    /// Secrets passed to `authenticate`.
    secrets: Vec<Vec<u8>>,
}

impl Host for Fake {
    fn write(&mut self, data: &[u8]) -> bool {
        self.out.extend_from_slice(data);
        true
    }
    fn close(&mut self) {
        self.closed = true;
    }
    fn set_timer(&mut self, delay_ms: Option<u32>) {
        self.timer = Some(delay_ms);
    }
    fn publish(&mut self, topic: &str, body: &[u8]) -> Result<(), Failure> {
        if body.is_empty() {
            return Err(Failure("ERR a message body must not be empty".into()));
        }
        if topic.contains('/') {
            return Err(Failure("ERR invalid topic name".into()));
        }
        self.published.push((topic.into(), body.to_vec()));
        Ok(())
    }
    fn publish_many(&mut self, topic: &str, bodies: &[Vec<u8>]) -> Result<(), Failure> {
        // All or nothing, like the broker.
        if bodies.iter().any(Vec::is_empty) {
            return Err(Failure("ERR a message body must not be empty".into()));
        }
        self.batches += 1;
        for b in bodies {
            self.publish(topic, b)?;
        }
        Ok(())
    }
    fn topic_info(&mut self, topic: &str) -> Result<Option<TopicInfo>, Failure> {
        Ok(self
            .channels
            .iter()
            .find(|(t, _)| t == topic)
            .map(|(_, c)| TopicInfo {
                depth: 0,
                channels: c.clone(),
            }))
    }
    fn subscribe(&mut self, topic: &str, channel: &str) -> Result<u32, Failure> {
        if topic.contains('/') {
            return Err(Failure("ERR invalid topic name".into()));
        }
        self.subs.push(Some((topic.into(), channel.into(), 0)));
        Ok(u32::try_from(self.subs.len() - 1).unwrap_or(0))
    }
    fn set_ready(&mut self, sub: u32, count: u32) -> Result<(), Failure> {
        match self.subs.get_mut(sub as usize) {
            Some(Some(s)) => {
                s.2 = count;
                Ok(())
            }
            _ => Err(Failure("ERR unknown subscription".into())),
        }
    }
    fn unsubscribe(&mut self, sub: u32) {
        if let Some(s) = self.subs.get_mut(sub as usize) {
            *s = None;
        }
    }
    fn finish(&mut self, sub: u32, id: &str) -> Result<(), Failure> {
        self.finished.push((sub, id.into()));
        Ok(())
    }
    fn requeue(&mut self, sub: u32, id: &str) -> Result<(), Failure> {
        self.requeued.push((sub, id.into()));
        Ok(())
    }
    fn authenticate(&mut self, secret: &[u8]) -> Result<(), Failure> {
        self.secrets.push(secret.to_vec());
        Ok(())
    }
}

impl Fake {
    /// Output so far, as text, then cleared.
    fn take(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.out)).into_owned()
    }
    fn live_subs(&self) -> usize {
        self.subs.iter().flatten().count()
    }
}

/// A RESP request array.
fn cmd(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    v
}

fn session() -> (Session, Fake) {
    (Session::new(Settings::default(), 7), Fake::default())
}

fn run(s: &mut Session, h: &mut Fake, args: &[&str]) -> String {
    s.on_data(h, &cmd(args));
    h.take()
}

fn delivery(id: &str, body: &str) -> Delivery {
    Delivery {
        id: id.into(),
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn connection_commands() {
    let (mut s, mut h) = session();
    assert_eq!(run(&mut s, &mut h, &["PING"]), "+PONG\r\n");
    assert_eq!(run(&mut s, &mut h, &["ping", "hi"]), "$2\r\nhi\r\n");
    assert_eq!(run(&mut s, &mut h, &["ECHO", "x y"]), "$3\r\nx y\r\n");
    assert_eq!(run(&mut s, &mut h, &["SELECT", "0"]), "+OK\r\n");
    assert_eq!(
        run(&mut s, &mut h, &["SELECT", "1"]),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        run(
            &mut s,
            &mut h,
            &["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]
        ),
        "+OK\r\n"
    );
    assert_eq!(
        run(&mut s, &mut h, &["client", "setname", "worker-1"]),
        "+OK\r\n"
    );
    assert_eq!(
        run(&mut s, &mut h, &["CLIENT", "GETNAME"]),
        "$8\r\nworker-1\r\n"
    );
    assert_eq!(run(&mut s, &mut h, &["CLIENT", "ID"]), ":7\r\n");
    assert!(run(&mut s, &mut h, &["HELLO", "2"]).starts_with("*14\r\n$6\r\nserver\r\n"));
    assert_eq!(
        run(&mut s, &mut h, &["HELLO", "4"]),
        "-NOPROTO sorry, this protocol version is not supported.\r\n"
    );
    assert_eq!(
        run(&mut s, &mut h, &["FLUSHALL", "ASYNC", "x"]),
        "-ERR unknown command 'FLUSHALL', with args beginning with: 'ASYNC' 'x' \r\n"
    );
    assert_eq!(
        run(&mut s, &mut h, &["PUBLISH", "t"]),
        "-ERR wrong number of arguments for 'publish' command\r\n"
    );
    assert!(!h.closed, "errors keep the connection open");
    assert_eq!(run(&mut s, &mut h, &["QUIT"]), "+OK\r\n");
    assert!(h.closed && s.is_closed());
    assert_eq!(run(&mut s, &mut h, &["PING"]), "", "nothing after QUIT");
}

#[test]
fn server_commands() {
    let (mut s, mut h) = session();
    assert_eq!(
        run(&mut s, &mut h, &["SELECT", "x"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(run(&mut s, &mut h, &["CONFIG", "get", "save"]), "*0\r\n");
    assert_eq!(
        run(&mut s, &mut h, &["CONFIG", "SET", "a", "b"]),
        "-ERR unknown subcommand 'SET'. Try CONFIG HELP.\r\n"
    );
    assert_eq!(run(&mut s, &mut h, &["COMMAND", "DOCS"]), "*0\r\n");
    let info =
        "# Server\r\nredis_version:7.2.0\r\nredis_mode:standalone\r\nserver_name:nsq-gateway\r\n";
    assert_eq!(
        run(&mut s, &mut h, &["INFO"]),
        format!("${}\r\n{info}\r\n", info.len())
    );
    assert!(!h.closed);
}

#[test]
fn publish_replies_with_the_channel_count() {
    let (mut s, mut h) = session();
    assert_eq!(run(&mut s, &mut h, &["PUBLISH", "t", "hello"]), ":0\r\n");
    h.channels
        .push(("t".into(), vec![("a".into(), 0), ("b".into(), 3)]));
    assert_eq!(run(&mut s, &mut h, &["PUBLISH", "t", "again"]), ":2\r\n");
    assert_eq!(
        h.published,
        vec![
            ("t".into(), b"hello".to_vec()),
            ("t".into(), b"again".to_vec())
        ]
    );
    assert_eq!(
        run(&mut s, &mut h, &["PUBLISH", "t", ""]),
        "-ERR a message body must not be empty\r\n"
    );
    // Inline commands work after the first (array) command.
    s.on_data(&mut h, b"PUBLISH t \"in line\"\r\n");
    assert_eq!(h.take(), ":2\r\n");
    assert_eq!(h.published[2].1, b"in line");
}

#[test]
fn subscriber_mode() {
    let (mut s, mut h) = session();
    assert_eq!(
        run(&mut s, &mut h, &["SUBSCRIBE", "news", "sport"]),
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n"
    );
    assert_eq!(
        h.subs[0],
        Some(("news".into(), "resp-sub-7#ephemeral".into(), 256))
    );
    assert_eq!(
        run(&mut s, &mut h, &["PUBLISH", "news", "x"]),
        "-ERR Can't execute 'publish': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
    );
    assert_eq!(
        run(&mut s, &mut h, &["PING"]),
        "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    );
    s.on_messages(&mut h, 1, vec![delivery("0000000000000001", "goal")]);
    assert_eq!(
        h.take(),
        "*3\r\n$7\r\nmessage\r\n$5\r\nsport\r\n$4\r\ngoal\r\n"
    );
    assert_eq!(h.finished, vec![(1, "0000000000000001".into())]);
    assert_eq!(
        run(&mut s, &mut h, &["SUBSCRIBE", "news"]),
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:2\r\n",
        "a second SUBSCRIBE to a topic is a no-op"
    );
    assert_eq!(
        run(&mut s, &mut h, &["UNSUBSCRIBE", "news"]),
        "*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    assert_eq!(
        run(&mut s, &mut h, &["UNSUBSCRIBE"]),
        "*3\r\n$11\r\nunsubscribe\r\n$5\r\nsport\r\n:0\r\n"
    );
    assert_eq!(h.live_subs(), 0);
    assert_eq!(
        run(&mut s, &mut h, &["UNSUBSCRIBE"]),
        "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"
    );
    assert_eq!(
        run(&mut s, &mut h, &["PING"]),
        "+PONG\r\n",
        "back to normal"
    );
}

#[test]
fn subscriptions_are_limited() {
    let settings = Settings {
        max_subscriptions: 2,
        ..Settings::default()
    };
    let mut s = Session::new(settings, 1);
    let mut h = Fake::default();
    let reply = run(&mut s, &mut h, &["SUBSCRIBE", "a", "b", "c"]);
    assert!(
        reply.ends_with("-ERR at most 2 subscriptions per connection (max_subscriptions)\r\n"),
        "{reply}"
    );
    assert_eq!(h.live_subs(), 2);
}

#[test]
fn brpop_delivers_one_message_and_finishes_it() {
    let (mut s, mut h) = session();
    assert_eq!(run(&mut s, &mut h, &["BRPOP", "jobs", "0"]), "");
    assert_eq!(h.subs[0], Some(("jobs".into(), "resp".into(), 1)));
    assert_eq!(h.timer, None, "timeout 0 blocks forever (no timer)");
    // Pipelined commands wait behind the block.
    s.on_data(&mut h, &cmd(&["PING"]));
    assert_eq!(h.take(), "");
    s.on_messages(&mut h, 0, vec![delivery("00000000000000aa", "job-1")]);
    assert_eq!(h.take(), "*2\r\n$4\r\njobs\r\n$5\r\njob-1\r\n+PONG\r\n");
    assert_eq!(h.finished, vec![(0, "00000000000000aa".into())]);
    assert_eq!(
        h.subs[0].as_ref().map(|s| s.2),
        Some(0),
        "paused after the pop"
    );
    // The next pop reuses the cached subscription.
    assert_eq!(run(&mut s, &mut h, &["BLPOP", "jobs", "other", "0.25"]), "");
    assert_eq!(h.subs.len(), 2);
    assert_eq!(h.timer, Some(Some(250)));
    s.on_timer(&mut h);
    assert_eq!(h.take(), "*-1\r\n");
    assert!(h.subs.iter().flatten().all(|s| s.2 == 0));
    // A late delivery after the timeout goes back to the queue.
    s.on_messages(&mut h, 1, vec![delivery("00000000000000bb", "late")]);
    assert_eq!(h.take(), "");
    assert_eq!(h.requeued, vec![(1, "00000000000000bb".into())]);
}

#[test]
fn brpop_arguments() {
    let (mut s, mut h) = session();
    assert_eq!(
        run(&mut s, &mut h, &["BRPOP", "q", "soon"]),
        "-ERR timeout is not a float or out of range\r\n"
    );
    assert_eq!(
        run(&mut s, &mut h, &["BRPOP", "q", "-1"]),
        "-ERR timeout is negative\r\n"
    );
    assert_eq!(
        run(&mut s, &mut h, &["BRPOP", "q"]),
        "-ERR wrong number of arguments for 'brpop' command\r\n"
    );
    assert_eq!(
        run(&mut s, &mut h, &["LPUSH", "q", "a", "b", "c"]),
        ":3\r\n"
    );
    assert_eq!(h.published.len(), 3);
    h.channels.push(("q".into(), vec![("resp".into(), 5)]));
    assert_eq!(run(&mut s, &mut h, &["LLEN", "q"]), ":5\r\n");
}

#[test]
fn queue_cache_evicts_least_recently_used() {
    let settings = Settings {
        max_subscriptions: 2,
        ..Settings::default()
    };
    let mut s = Session::new(settings, 1);
    let mut h = Fake::default();
    for key in ["a", "b", "c"] {
        run(&mut s, &mut h, &["BRPOP", key, "1"]);
        s.on_timer(&mut h);
        assert_eq!(h.take(), "*-1\r\n");
    }
    assert_eq!(h.live_subs(), 2);
    assert!(h.subs[0].is_none(), "a was evicted");
}

/// A protocol error is answered like Redis and closes, whatever the split.
#[test]
fn protocol_errors_at_every_split() {
    let bad = b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n:5\r\n".to_vec();
    let want = "+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n";
    for split in 0..bad.len() {
        let (mut s, mut h) = session();
        s.on_data(&mut h, &bad[..split]);
        s.on_data(&mut h, &bad[split..]);
        assert_eq!(h.take(), want, "split at {split}");
        assert!(h.closed);
    }
    // One byte at a time, too.
    let (mut s, mut h) = session();
    for b in &bad {
        s.on_data(&mut h, std::slice::from_ref(b));
    }
    assert_eq!(h.take(), want);
}

#[test]
fn oversized_requests_close() {
    let settings = Settings {
        max_bulk: 8,
        max_array: 3,
        max_query_buffer: 1024,
        ..Settings::default()
    };
    let (mut s, mut h) = (Session::new(settings.clone(), 1), Fake::default());
    s.on_data(&mut h, b"*2\r\n$4\r\nECHO\r\n$9\r\n");
    assert_eq!(h.take(), "-ERR Protocol error: invalid bulk length\r\n");
    assert!(h.closed);
    let (mut s, mut h) = (Session::new(settings.clone(), 1), Fake::default());
    s.on_data(&mut h, b"*4\r\n");
    assert_eq!(
        h.take(),
        "-ERR Protocol error: invalid multibulk length\r\n"
    );
    let (mut s, mut h) = (Session::new(settings, 1), Fake::default());
    s.on_data(&mut h, &cmd(&["BRPOP", "q", "0"]));
    s.on_data(&mut h, &vec![b'x'; 2000]);
    assert!(
        h.take()
            .starts_with("-ERR Protocol error: query buffer of 2000 bytes")
    );
    assert!(h.closed);
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
    let (mut s, mut h) = session();
    s.on_data(&mut h, &stream);
    let whole = h.take();
    for split in 0..stream.len() {
        let (mut s, mut h) = session();
        s.on_data(&mut h, &stream[..split]);
        s.on_data(&mut h, &stream[split..]);
        assert_eq!(h.take(), whole, "split at {split}");
    }
}

#[test]
fn hello_3_switches_to_resp3() {
    let (mut s, mut h) = session();
    let hello = run(&mut s, &mut h, &["HELLO", "3", "SETNAME", "w"]);
    assert!(hello.starts_with("%7\r\n$6\r\nserver\r\n"), "{hello}");
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello}");
    assert_eq!(run(&mut s, &mut h, &["CLIENT", "GETNAME"]), "$1\r\nw\r\n");
    assert_eq!(
        run(&mut s, &mut h, &["SUBSCRIBE", "t"]),
        ">3\r\n$9\r\nsubscribe\r\n$1\r\nt\r\n:1\r\n"
    );
    // RESP3 allows any command while subscribed.
    assert_eq!(run(&mut s, &mut h, &["PING"]), "+PONG\r\n");
    assert_eq!(run(&mut s, &mut h, &["PUBLISH", "t", "x"]), ":0\r\n");
    s.on_messages(&mut h, 0, vec![delivery("0000000000000001", "m")]);
    assert_eq!(h.take(), ">3\r\n$7\r\nmessage\r\n$1\r\nt\r\n$1\r\nm\r\n");
    assert_eq!(
        run(&mut s, &mut h, &["UNSUBSCRIBE"]),
        ">3\r\n$11\r\nunsubscribe\r\n$1\r\nt\r\n:0\r\n"
    );
    run(&mut s, &mut h, &["BRPOP", "q", "1"]);
    s.on_timer(&mut h);
    assert_eq!(h.take(), "_\r\n");
    assert_eq!(run(&mut s, &mut h, &["RESET"]), "+RESET\r\n");
    assert_eq!(run(&mut s, &mut h, &["CLIENT", "GETNAME"]), "$-1\r\n");
}

#[test]
fn resp3_can_be_turned_off() {
    let settings = Settings::from_pairs(&[("resp3".into(), "false".into())]);
    let mut s = Session::new(settings, 1);
    let mut h = Fake::default();
    assert_eq!(
        run(&mut s, &mut h, &["HELLO", "3"]),
        "-NOPROTO sorry, this protocol version is not supported.\r\n"
    );
    assert!(run(&mut s, &mut h, &["HELLO"]).starts_with("*14\r\n"));
}

/// A pipeline whose replies pass `OUT_SOFT_LIMIT` continues from a 0 ms
/// timer, after the host has flushed what came before.
#[test]
fn long_pipelines_resume_on_the_timer() {
    let (mut s, mut h) = session();
    let big = "x".repeat(100_000);
    let mut input = Vec::new();
    for _ in 0..25 {
        input.extend(cmd(&["ECHO", &big]));
    }
    input.extend(cmd(&["PING"]));
    s.on_data(&mut h, &input);
    let first = h.take();
    assert_eq!(h.timer, Some(Some(0)));
    assert!(first.len() >= OUT_SOFT_LIMIT && first.len() < 2 * OUT_SOFT_LIMIT);
    // More data continues the pipeline too (the host flushed before it),
    // in order.
    s.on_data(&mut h, &cmd(&["ECHO", "last"]));
    let mut rest = h.take();
    assert!(rest.len() >= OUT_SOFT_LIMIT, "{}", rest.len());
    while h.timer == Some(Some(0)) {
        h.timer = None;
        s.on_timer(&mut h);
        rest.push_str(&h.take());
    }
    let all = first + &rest;
    assert!(all.ends_with("+PONG\r\n$4\r\nlast\r\n"));
    assert_eq!(all.matches("$100000\r\n").count(), 25);
}

/// Pipelined PUBLISH/LPUSH replies come from one stats call per topic per
/// batch, advanced by what the batch itself published.
#[test]
fn a_batch_fetches_stats_once_per_topic() {
    #[derive(Default)]
    struct Counting {
        inner: Fake,
        stats_calls: usize,
    }
    impl Host for Counting {
        fn write(&mut self, d: &[u8]) -> bool {
            self.inner.write(d)
        }
        fn close(&mut self) {
            self.inner.close()
        }
        fn set_timer(&mut self, d: Option<u32>) {
            self.inner.set_timer(d)
        }
        fn publish(&mut self, t: &str, b: &[u8]) -> Result<(), Failure> {
            self.inner.publish(t, b)
        }
        fn publish_many(&mut self, t: &str, b: &[Vec<u8>]) -> Result<(), Failure> {
            self.inner.publish_many(t, b)
        }
        fn topic_info(&mut self, t: &str) -> Result<Option<TopicInfo>, Failure> {
            self.stats_calls += 1;
            self.inner.topic_info(t)
        }
        fn subscribe(&mut self, t: &str, c: &str) -> Result<u32, Failure> {
            self.inner.subscribe(t, c)
        }
        fn set_ready(&mut self, s: u32, n: u32) -> Result<(), Failure> {
            self.inner.set_ready(s, n)
        }
        fn unsubscribe(&mut self, s: u32) {
            self.inner.unsubscribe(s)
        }
        fn finish(&mut self, s: u32, id: &str) -> Result<(), Failure> {
            self.inner.finish(s, id)
        }
        fn requeue(&mut self, s: u32, id: &str) -> Result<(), Failure> {
            self.inner.requeue(s, id)
        }
    }
    let mut s = Session::new(Settings::default(), 1);
    let mut h = Counting::default();
    h.inner
        .channels
        .push(("q".into(), vec![("resp".into(), 1), ("other".into(), 0)]));
    let mut batch = Vec::new();
    for _ in 0..3 {
        batch.extend(cmd(&["LPUSH", "q", "a", "b"]));
        batch.extend(cmd(&["PUBLISH", "q", "c"]));
    }
    s.on_data(&mut h, &batch);
    assert_eq!(h.stats_calls, 1);
    // The fake's queue depth is 1 (as if a consumer took the rest): the
    // first reply is max(1, 2), then the batch adds its own publishes.
    assert_eq!(h.inner.take(), ":2\r\n:2\r\n:4\r\n:2\r\n:7\r\n:2\r\n");
    s.on_data(&mut h, &cmd(&["LLEN", "q"]));
    assert_eq!((h.stats_calls, h.inner.take().as_str()), (2, ":1\r\n"));
}

/// Pipelined PUBLISHes to one topic go out as one `publish-many`, with one
/// reply each and in order; a refused batch falls back to one at a time so
/// each command gets its own answer.
#[test]
fn pipelined_publishes_are_batched() {
    let (mut s, mut h) = session();
    h.channels.push(("t".into(), vec![("c".into(), 0)]));
    let mut batch = Vec::new();
    for body in ["a", "b", "c"] {
        batch.extend(cmd(&["PUBLISH", "t", body]));
    }
    batch.extend(cmd(&["PING"]));
    batch.extend(cmd(&["RPUSH", "t", "d"]));
    batch.extend(cmd(&["PUBLISH", "u", "e"]));
    s.on_data(&mut h, &batch);
    assert_eq!(h.take(), ":1\r\n:1\r\n:1\r\n+PONG\r\n:1\r\n:0\r\n");
    assert_eq!(h.batches, 1);
    let bodies: Vec<&[u8]> = h.published.iter().map(|(_, b)| b.as_slice()).collect();
    assert_eq!(bodies, [&b"a"[..], b"b", b"c", b"d", b"e"]);

    // An empty body refuses the batch: the others still go out, in order.
    let mut batch = Vec::new();
    for body in ["x", "", "y"] {
        batch.extend(cmd(&["PUBLISH", "t", body]));
    }
    s.on_data(&mut h, &batch);
    assert_eq!(
        h.take(),
        ":1\r\n-ERR a message body must not be empty\r\n:1\r\n"
    );
    assert_eq!(h.published.len(), 7);
    // A protocol error after publishes: they are answered first.
    let mut batch = cmd(&["PUBLISH", "t", "z"]);
    batch.extend_from_slice(b"*1\r\n:");
    s.on_data(&mut h, &batch);
    assert_eq!(
        h.take(),
        ":1\r\n-ERR Protocol error: expected '$', got ':'\r\n"
    );
    assert_eq!(h.published.len(), 8);
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
        let (mut s, mut host) = session();
        for c in chunks {
            s.on_data(&mut host, c);
        }
        let subs = host.subs.iter().flatten().count();
        // Integer replies (`:<n>`) compared by position only.
        let mut out = Vec::new();
        for line in host.out.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b':') {
                out.extend_from_slice(b":#\r\n");
            } else {
                out.extend_from_slice(line);
            }
        }
        (out, host.closed, host.published, subs)
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
    let (mut s, mut h) = session();
    s.require_auth();
    assert_eq!(
        run(&mut s, &mut h, &["PING"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert!(run(&mut s, &mut h, &["HELLO", "3"]).starts_with("-NOAUTH HELLO must be called"));
    // AUTH plus a pipelined PUBLISH: nothing runs until the answer.
    let mut pipeline = cmd(&["AUTH", "user", "pw"]);
    pipeline.extend(cmd(&["PUBLISH", "t", "x"]));
    s.on_data(&mut h, &pipeline);
    assert_eq!(h.take(), "");
    assert_eq!(h.secrets, [b"pw".to_vec()]);
    assert!(h.published.is_empty());
    s.on_authenticated(&mut h, false);
    assert_eq!(
        h.take(),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n-NOAUTH Authentication required.\r\n"
    );
    s.on_data(&mut h, &pipeline);
    s.on_authenticated(&mut h, true);
    assert_eq!(h.take(), "+OK\r\n:0\r\n");
    assert_eq!(h.published.len(), 1);
    assert_eq!(
        run(&mut s, &mut h, &["AUTH", "pw"]),
        "-ERR this connection is already authenticated\r\n"
    );
}

#[test]
fn hello_auth_answers_the_map_in_the_new_protocol_once_authenticated() {
    let (mut s, mut h) = session();
    s.require_auth();
    s.on_data(
        &mut h,
        &cmd(&["HELLO", "3", "AUTH", "u", "pw", "SETNAME", "n"]),
    );
    assert_eq!(h.take(), "");
    s.on_authenticated(&mut h, true);
    assert!(h.take().starts_with("%7\r\n"));
    assert_eq!(run(&mut s, &mut h, &["CLIENT", "GETNAME"]), "$1\r\nn\r\n");
}
