//! The `plugins:` section of gateway.yaml: each plugin's component, magics,
//! guest configuration and limits, and the magic escape syntax. Loading
//! (compiling the components) is the plugin host's job, not the config's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::bail;
use serde::{Deserialize, Serialize};

/// One entry of `plugins:` in gateway.yaml.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Shown in logs, stats and errors.
    pub name: String,
    /// Path of the `.wasm` component, relative to the config file's
    /// directory; or `builtin:<name>` for a plugin embedded in the binary;
    /// left out, the built-in plugin of the same `name`.
    #[serde(default)]
    pub component: PathBuf,
    /// The 4-byte magics that select this plugin; escapes `\x00`, `\r`,
    /// `\n`, `\t`, `\\` allowed (YAML double quotes already handle most).
    pub magics: Vec<String>,
    /// Free-form settings handed to the guest in `on-connect`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// What the plugin may use.
    #[serde(default)]
    pub limits: PluginLimits,
    /// Lets this plugin take the magic `"  V2"` from the native protocol.
    #[serde(default)]
    pub override_v2: bool,
}

/// How `component` names a plugin embedded in the binary.
pub const BUILTIN_PREFIX: &str = "builtin:";

impl PluginConfig {
    /// The embedded plugin this entry names: `builtin:<name>`, or its own
    /// `name` when `component` is left out. `None` for a file.
    pub fn builtin_name(&self) -> Option<&str> {
        if self.component.as_os_str().is_empty() {
            return Some(&self.name);
        }
        self.component.to_str()?.strip_prefix(BUILTIN_PREFIX)
    }

    /// Makes a relative component path relative to `dir` (the config file's
    /// directory) instead of the working directory.
    pub fn resolve_relative_to(&mut self, dir: &Path) {
        if self.builtin_name().is_none() && self.component.is_relative() {
            self.component = dir.join(&self.component);
        }
    }

    /// How errors name the component: its path or `builtin:<name>`.
    pub fn component_label(&self) -> String {
        match self.builtin_name() {
            Some(name) => format!("{BUILTIN_PREFIX}{name}"),
            None => self.component.display().to_string(),
        }
    }
}

/// Per-plugin resource limits; each bounds what one connection can take.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Linear memory per connection, in bytes; growing past it fails
    /// (a Rust guest then aborts, which ends the connection).
    pub memory: u64,
    /// Time one event call may run, in milliseconds, before it is
    /// interrupted and the connection ended. Measured by epoch ticks, so it
    /// is elapsed time including host calls, not CPU time: keep it well
    /// above what a busy host may add.
    pub call_timeout_ms: u64,
    /// Concurrent connections; more are closed right after the magic.
    pub max_connections: usize,
    /// Topic names the plugin may touch; `*` matches any run of characters.
    pub topics: Vec<String>,
    /// Channel names the plugin may touch; `*` matches any run of characters.
    pub channels: Vec<String>,
    /// Denied broker calls a connection may make before it is ended.
    pub max_denied: u32,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// Bytes a guest may queue with `write` during one event call.
    pub output_buffer: usize,
    /// Largest message body a guest may publish.
    pub max_msg_size: usize,
    /// Messages per `publish-many` call and per `on-messages` delivery.
    pub max_batch: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory: 16 << 20,
            call_timeout_ms: 500,
            max_connections: 10_000,
            topics: vec!["*".into()],
            channels: vec!["*".into()],
            max_denied: 100,
            max_subscriptions: 16,
            output_buffer: 4 << 20,
            max_msg_size: 1 << 20,
            max_batch: 256,
        }
    }
}

/// Turns a configured magic into its 4 bytes, processing backslash escapes
/// (`\xNN`, `\r`, `\n`, `\t`, `\0`, `\\`) left in by single-quoted YAML.
pub fn parse_magic(text: &str) -> anyhow::Result<[u8; 4]> {
    let raw = text.as_bytes();
    let mut out = Vec::with_capacity(4);
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let Some(&next) = raw.get(i + 1) else {
            bail!("ends with a lone backslash");
        };
        match next {
            b'x' => {
                let hex = raw
                    .get(i + 2..i + 4)
                    .and_then(|h| std::str::from_utf8(h).ok());
                let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                    bail!("`\\x` must be followed by two hex digits");
                };
                out.push(v);
                i += 4;
                continue;
            }
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'0' => out.push(0),
            b'\\' => out.push(b'\\'),
            other => bail!("unknown escape `\\{}`", other as char),
        }
        i += 2;
    }
    <[u8; 4]>::try_from(out.as_slice())
        .map_err(|_| anyhow::anyhow!("a magic must be exactly 4 bytes, this one is {}", out.len()))
}
