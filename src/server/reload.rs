//! Hot reload of the plugin set: SIGHUP and `POST /plugins/reload` re-read
//! the `plugins:` section of the config file, load every component afresh
//! and swap the registry in one step. New connections get the new set;
//! open ones keep the plugin instance they were accepted with until they
//! close. A set that fails to load (a missing or bad component, a bad
//! config, a duplicate magic) is refused whole: the old set stays, and the
//! error is logged and shown in `/stats`.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::Context;
use super::registry::{Registry, registry_with};
use crate::config::{Config, PluginConfig};

/// The registry in use, swapped whole by a reload. Readers take an `Arc`
/// under a read lock held for a pointer copy.
pub struct RegistryCell(RwLock<Arc<Registry>>);

impl RegistryCell {
    pub fn new(registry: Registry) -> RegistryCell {
        RegistryCell(RwLock::new(Arc::new(registry)))
    }

    /// The current registry.
    pub fn load(&self) -> Arc<Registry> {
        crate::sync::read(&self.0).clone()
    }

    fn store(&self, registry: Registry) {
        *crate::sync::write(&self.0) = Arc::new(registry);
    }
}

/// One loaded plugin as `/stats` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginOrigin {
    pub name: String,
    pub component: String,
    /// SHA-256 of the component file, hex.
    pub component_hash: String,
    /// When this set was loaded, seconds since the Unix epoch.
    pub loaded_at: i64,
}

/// The plugin set's history, for `/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PluginSetStatus {
    /// 0 for the set loaded at startup, then one more per successful reload.
    pub generation: u64,
    pub plugins: Vec<PluginOrigin>,
    /// The last reload that was refused, if it came after the last success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ReloadError>,
}

/// A refused reload.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadError {
    pub at: i64,
    pub error: String,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What `/stats` shows of each plugin in `configs`.
pub fn origins(configs: &[PluginConfig]) -> Vec<PluginOrigin> {
    let at = now();
    configs
        .iter()
        .map(|c| PluginOrigin {
            name: c.name.clone(),
            component: c.component.display().to_string(),
            component_hash: match c.builtin_name() {
                Some(name) => crate::plugin::builtin::get(name)
                    .map(hash)
                    .unwrap_or_default(),
                None => std::fs::read(&c.component)
                    .map(|b| hash(&b))
                    .unwrap_or_default(),
            },
            loaded_at: at,
        })
        .collect()
}

/// SHA-256 of a component, hex.
fn hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Re-reads the config file's `plugins:` section and swaps the plugin set.
/// Concurrent reloads run one after the other.
pub async fn reload_plugins(ctx: &Arc<Context>) -> anyhow::Result<PluginSetStatus> {
    let _one_at_a_time = ctx.reload_lock.lock().await;
    let result = load_new_set(ctx).await;
    let mut status = crate::sync::lock(&ctx.plugin_set);
    match result {
        Ok((registry, origins)) => {
            ctx.registry.store(registry);
            status.generation += 1;
            status.plugins = origins;
            status.last_error = None;
            info!(
                generation = status.generation,
                plugins = ?status.plugins.iter().map(|p| &p.name).collect::<Vec<_>>(),
                "plugins reloaded; new connections use the new set"
            );
            Ok(status.clone())
        }
        Err(e) => {
            let error = format!("{e:#}");
            warn!(%error, "plugin reload refused; the previous set stays");
            status.last_error = Some(ReloadError { at: now(), error });
            Err(e)
        }
    }
}

async fn load_new_set(ctx: &Arc<Context>) -> anyhow::Result<(Registry, Vec<PluginOrigin>)> {
    let path: PathBuf = ctx
        .config_path
        .get()
        .cloned()
        .context("the gateway was started without a config file to reload from")?;
    let tls = ctx.registry.load().tls().cloned();
    // Compiling components is CPU work: off the async workers.
    let running = ctx.config.clone();
    tokio::task::spawn_blocking(move || {
        let file = Config::load(&path)?;
        file.validate(&path.display().to_string())?;
        // Only the `plugins:` section is reloaded; every other setting
        // (flags included, such as the data path and its compile cache)
        // stays as the process started with it.
        let config = Config {
            plugins: file.plugins,
            ..(*running).clone()
        };
        let registry = registry_with(tls, &config)?;
        Ok((registry, origins(&config.plugins)))
    })
    .await
    .context("the reload task failed")?
}
