//! The `plugins:` section of gateway.yaml (`PluginConfig`, `PluginLimits`),
//! magic escape parsing, and `load_plugins`, which compiles every plugin once
//! and refuses a bad registry entry with a message naming the plugin.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::{HostOptions, Plugin, PluginEngine};

use crate::protocol::MAGIC_V2;

/// One entry of `plugins:` in gateway.yaml.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Shown in logs, stats and errors.
    pub name: String,
    /// Path of the `.wasm` component (relative paths are relative to the
    /// working directory).
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

/// A loaded plugin with the magics that select it.
pub type LoadedPlugin = (Vec<[u8; 4]>, Arc<Plugin>);

/// Compiles every configured plugin into an `InstancePre` on one shared
/// engine, and returns each plugin with its magics, ready for the registry.
///
/// Refuses, naming the plugin: a duplicate magic (within the plugins or
/// against `"  V2"` without `override_v2`), a magic that is not 4 bytes, a
/// missing file, a file that is not a component or does not implement the
/// `nsq:gateway/plugin` world, and limits that are out of range.
pub fn load_plugins(configs: &[PluginConfig]) -> anyhow::Result<Vec<LoadedPlugin>> {
    load_plugins_with(configs, &HostOptions::default())
}

/// `load_plugins` with explicit engine options (used by the benches).
pub fn load_plugins_with(
    configs: &[PluginConfig],
    opts: &HostOptions,
) -> anyhow::Result<Vec<LoadedPlugin>> {
    if configs.is_empty() {
        return Ok(Vec::new());
    }
    let mut owners: HashMap<[u8; 4], &str> = HashMap::new();
    let mut names: HashMap<&str, ()> = HashMap::new();
    let mut all_magics = Vec::with_capacity(configs.len());
    for cfg in configs {
        if cfg.name.is_empty() {
            bail!("a plugin has an empty name");
        }
        if names.insert(&cfg.name, ()).is_some() {
            bail!("plugin {:?}: the name is used by another plugin", cfg.name);
        }
        check_limits(cfg)?;
        if cfg.magics.is_empty() {
            bail!(
                "plugin {:?}: `magics` is empty; give it at least one 4-byte magic",
                cfg.name
            );
        }
        let mut magics = Vec::with_capacity(cfg.magics.len());
        for text in &cfg.magics {
            let magic = parse_magic(text)
                .with_context(|| format!("plugin {:?}: magic {text:?}", cfg.name))?;
            if magic == MAGIC_V2 && !cfg.override_v2 {
                bail!(
                    "plugin {:?}: magic \"  V2\" belongs to the native NSQ V2 protocol; \
                     set `override_v2: true` to replace it",
                    cfg.name
                );
            }
            if let Some(owner) = owners.insert(magic, &cfg.name) {
                bail!(
                    "plugin {:?}: magic {:?} is already used by plugin {owner:?}",
                    cfg.name,
                    magic.escape_ascii().to_string()
                );
            }
            magics.push(magic);
        }
        if !cfg.component.is_file() {
            bail!(
                "plugin {:?}: component file {} does not exist (build the plugins with `cargo build`)",
                cfg.name,
                cfg.component.display()
            );
        }
        all_magics.push(magics);
    }
    let engine = PluginEngine::new(configs, opts)?;
    tracing::info!(capacity = %engine.gate.capacity(), "plugin host sized");
    let mut out = Vec::with_capacity(configs.len());
    for (cfg, magics) in configs.iter().zip(all_magics) {
        let plugin =
            Plugin::load(&engine, cfg).with_context(|| format!("plugin {:?}", cfg.name))?;
        out.push((magics, Arc::new(plugin)));
    }
    Ok(out)
}

fn check_limits(cfg: &PluginConfig) -> anyhow::Result<()> {
    let l = &cfg.limits;
    let name = &cfg.name;
    if l.memory < 64 << 10 || l.memory > 4 << 30 {
        bail!(
            "plugin {name:?}: limits.memory must be between 64 KiB and 4 GiB, got {}",
            l.memory
        );
    }
    if l.call_timeout_ms == 0 || l.call_timeout_ms > 60_000 {
        bail!(
            "plugin {name:?}: limits.call_timeout_ms must be 1..=60000, got {}",
            l.call_timeout_ms
        );
    }
    if l.max_connections == 0 || l.max_connections > 1_000_000 {
        bail!(
            "plugin {name:?}: limits.max_connections must be 1..=1000000, got {}",
            l.max_connections
        );
    }
    if l.max_batch == 0 || l.max_subscriptions == 0 || l.output_buffer == 0 || l.max_msg_size == 0 {
        bail!(
            "plugin {name:?}: limits.max_batch, max_subscriptions, output_buffer and max_msg_size must be > 0"
        );
    }
    for p in l.topics.iter().chain(&l.channels) {
        if p.is_empty() {
            bail!("plugin {name:?}: empty name pattern in limits.topics/channels");
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magics_parse_with_escapes() {
        assert_eq!(parse_magic("LINE").ok(), Some(*b"LINE"));
        assert_eq!(parse_magic("\\x00\\x01ab").ok(), Some([0, 1, b'a', b'b']));
        assert_eq!(parse_magic("\r\n\r\n").ok(), Some(*b"\r\n\r\n"));
        assert_eq!(parse_magic("\\r\\n\\\\x").ok(), Some(*b"\r\n\\x"));
        assert!(parse_magic("LIN").is_err());
        assert!(parse_magic("LINES").is_err());
        assert!(parse_magic("\\xZZab").is_err());
    }

    #[test]
    fn yaml_defaults_and_unknown_fields() {
        let cfg: PluginConfig =
            serde_yaml::from_str("name: line\ncomponent: x.wasm\nmagics: [LINE]\n")
                .expect("valid yaml");
        assert_eq!(cfg.limits, PluginLimits::default());
        assert!(!cfg.override_v2);
        let bad = serde_yaml::from_str::<PluginConfig>(
            "name: a\ncomponent: x\nmagics: [LINE]\nmagic: x\n",
        );
        assert!(bad.is_err());
        let bad = serde_yaml::from_str::<PluginConfig>(
            "name: a\ncomponent: x\nmagics: [LINE]\nlimits: {memroy: 1}\n",
        );
        assert!(bad.is_err());
    }
}
