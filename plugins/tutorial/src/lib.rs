//! TAIL, the tutorial protocol of plugins/README.md, whole in this file: a
//! line `PUB <topic> <text>` publishes and answers `OK <channels>`, a line
//! `TAIL <topic>` prints every later message of the topic, one per line.

use nsq_sdk::{Config, ConnectInfo, Host, Message, Protocol, Subscription, describe};

/// Settings from the plugin's `config:` map in gateway.yaml.
pub struct Settings {
    /// Messages in flight at once while tailing.
    prefetch: u32,
    /// Longest line accepted.
    max_line: usize,
}

/// One connection.
pub struct Tail {
    settings: Settings,
    /// An incomplete line, kept until its newline arrives.
    pending: Vec<u8>,
    /// This connection's own channel, so that every tailer sees every message.
    channel: String,
}

impl Protocol for Tail {
    type Settings = Settings;

    fn settings(config: &mut Config<'_>) -> Settings {
        Settings {
            prefetch: config.range("prefetch", 100, 1, 2500),
            max_line: config.range("max_line_bytes", 65536, 64, 1 << 20),
        }
    }

    fn connect(settings: Settings, info: &ConnectInfo, _host: &mut impl Host) -> Self {
        Tail {
            settings,
            // The 4 bytes that chose this plugin ("PUB " or "TAIL") are the
            // start of the first line.
            pending: info.magic.clone(),
            channel: format!("tail-{}#ephemeral", info.client_id),
        }
    }

    fn on_data(&mut self, host: &mut impl Host, data: &[u8]) {
        self.pending.extend_from_slice(data);
        while let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            let reply = self.command(host, String::from_utf8_lossy(&line).trim());
            let _ = host.write(format!("{reply}\n").as_bytes());
        }
        if self.pending.len() > self.settings.max_line {
            let _ = host.write(b"ERR line too long\n");
            host.close();
        }
    }

    fn on_messages(&mut self, host: &mut impl Host, sub: Subscription, messages: Vec<Message>) {
        let mut out = Vec::new();
        for m in &messages {
            out.extend_from_slice(&m.body);
            out.push(b'\n');
        }
        let _ = host.write(&out);
        let ids: Vec<String> = messages.into_iter().map(|m| m.id).collect();
        let _ = host.finish_many(sub, &ids);
    }
}

impl Tail {
    /// Runs one command line and returns its reply.
    fn command(&mut self, host: &mut impl Host, line: &str) -> String {
        let mut words = line.splitn(3, ' ');
        let result = match (words.next(), words.next(), words.next()) {
            (Some("PUB"), Some(topic), Some(text)) => host
                .publish(topic, text.as_bytes())
                .map(|channels| format!("OK {channels}")),
            (Some("TAIL"), Some(topic), None) => host
                .subscribe(topic, &self.channel)
                .and_then(|sub| host.set_ready(sub, self.settings.prefetch))
                .map(|()| "OK".to_string()),
            _ => return "ERR expected PUB <topic> <text> or TAIL <topic>".into(),
        };
        result.unwrap_or_else(|e| format!("ERR {}", describe(&e)))
    }
}

nsq_sdk::export!(Tail);

#[cfg(test)]
mod tests {
    use super::Tail;
    use nsq_sdk::testing::{Call, Session, message, validate};

    #[test]
    fn publishes_and_tails() {
        let mut s = Session::<Tail>::open(b"PUB ", &[("prefetch", "10")]);
        s.host.channels = 2;
        s.data(b"news hello\nTA").data(b"IL news\n");
        assert_eq!(s.text(), "OK 2\nOK\n");
        s.calls();
        s.messages(0, vec![message(1, b"one"), message(2, b"two")]);
        assert_eq!(s.text(), "one\ntwo\n");
        let acked = vec![format!("{:016x}", 1), format!("{:016x}", 2)];
        assert_eq!(s.calls(), [Call::FinishMany { sub: 0, ids: acked }]);
    }

    #[test]
    fn a_typo_in_the_config_is_refused() {
        let e = validate::<Tail>(&[("prefech", "10")]).expect_err("unknown key");
        assert_eq!(e.to_string(), "config.prefech: unknown key");
    }
}
