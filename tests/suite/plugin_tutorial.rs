//! The tutorial's one-file protocol (`plugins/tutorial`, TAIL) inside the
//! real gateway: what plugins/README.md promises a reader it does, and that
//! the README shows the file as it is.

use crate::common;

use common::plugins::{LineClient, plugin, small_limits};
use common::v2::V2Client;
use common::{TestServer, clients::repo_root};

#[tokio::test]
async fn tail_publishes_with_a_channel_count_and_tails_what_v2_publishes() {
    let mut tail = plugin("tail", "tutorial", "PUB ", small_limits());
    tail.magics.push("TAIL".into());
    tail.config.insert("prefetch".into(), "10".into());
    let server = TestServer::builder().plugin(tail).start().await;

    let mut tailer = LineClient::connect(server.tcp_addr, b"TAIL").await;
    assert_eq!(tailer.request(" news").await, "OK");

    let mut v2 = V2Client::connect(server.tcp_addr).await;
    v2.publish("news", b"from v2").await;
    assert_eq!(tailer.read_line().await, "from v2");

    // The publishing connection's magic is the start of its first line.
    let mut publisher = LineClient::connect(server.tcp_addr, b"PUB ").await;
    assert_eq!(publisher.request("news hello").await, "OK 1");
    assert_eq!(tailer.read_line().await, "hello");
    assert_eq!(publisher.request("PUB empty-topic x").await, "OK 0");
    assert_eq!(
        publisher.request("PUB bad!name x").await,
        "ERR invalid topic name (1-64 of a-z A-Z 0-9 . _ -, optionally ending in #ephemeral)"
    );
}

#[test]
fn the_readme_shows_the_tutorial_file_as_it_is() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("plugins/README.md")).expect("README");
    let file = std::fs::read_to_string(root.join("plugins/tutorial/src/lib.rs")).expect("lib.rs");
    let block = readme
        .split("```rust\n")
        .skip(1)
        .filter_map(|b| b.split("```\n").next())
        .find(|b| b.starts_with("//! TAIL"))
        .expect("a ```rust block starting with the tutorial's //! TAIL");
    assert_eq!(
        block, file,
        "plugins/README.md's tutorial block and plugins/tutorial/src/lib.rs differ"
    );
}
