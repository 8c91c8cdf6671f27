//! `load_plugins`: compiles every plugin of the `plugins:` section (its
//! types live in `crate::config::plugins`) once, and refuses a bad registry
//! entry with a message naming the plugin.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context as _, bail};

use super::{HostOptions, Plugin, PluginEngine};
pub use crate::config::plugins::{PluginConfig, PluginLimits, parse_magic};
use crate::protocol::MAGIC_V2;

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
        match cfg.builtin_name() {
            Some(name) if super::builtin::get(name).is_none() => bail!(
                "plugin {:?}: no built-in plugin {name:?} (built in: {}); \
                 name a .wasm file in `component`",
                cfg.name,
                super::builtin::names().join(", ")
            ),
            Some(_) => {}
            None if !cfg.component.is_file() => bail!(
                "plugin {:?}: component file {} does not exist (build the plugins with `cargo build`)",
                cfg.name,
                cfg.component.display()
            ),
            None => {}
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
    if let Some(cache) = &engine.cache {
        cache.seal();
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
