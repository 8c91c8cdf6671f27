//! The handler registry: which 4-byte magic selects which protocol. `"  V2"`
//! is built in; plugins register their magics at startup. One magic maps to
//! one handler; several magics may share a handler.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use thiserror::Error;

use crate::config::Config;
use crate::plugin::Plugin;
use crate::tls::TlsServer;

pub use crate::protocol::MAGIC_V2;

/// What serves a connection once its magic is known.
#[derive(Clone)]
pub enum Handler {
    /// The native NSQ V2 protocol.
    V2,
    /// A WebAssembly protocol plugin.
    Plugin(Arc<Plugin>),
    /// A TLS ClientHello (`16 03 0x`): the server terminates TLS and reads
    /// the real magic inside it.
    Tls,
}

impl Handler {
    /// The protocol's name for logs and stats: "V2" or the plugin's name.
    pub fn name(&self) -> &str {
        match self {
            Handler::V2 => "V2",
            Handler::Plugin(p) => p.name(),
            Handler::Tls => "TLS",
        }
    }
}

/// A registration refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("magic {magic} is already registered to {owner}")]
    Duplicate { magic: String, owner: String },
}

/// Magic → handler.
#[derive(Clone)]
pub struct Registry {
    handlers: HashMap<[u8; 4], Handler>,
    /// The TLS configuration; when set, every ClientHello magic maps to
    /// `Handler::Tls` (its fourth byte is a length, so it is matched by
    /// prefix rather than stored in `handlers`).
    tls: Option<Arc<TlsServer>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry serving only the built-in V2 protocol.
    pub fn new() -> Self {
        let mut handlers = HashMap::new();
        handlers.insert(MAGIC_V2, Handler::V2);
        Registry {
            handlers,
            tls: None,
        }
    }

    /// Registers TLS termination for connections that start with a
    /// ClientHello, with `tls`'s certificate.
    pub fn set_tls(&mut self, tls: Arc<TlsServer>) {
        self.tls = Some(tls);
    }

    /// The TLS configuration, when TLS is on.
    pub fn tls(&self) -> Option<&Arc<TlsServer>> {
        self.tls.as_ref()
    }

    /// Adds `magic` → `handler`. A magic already taken is refused, except
    /// that `replace_v2` lets a plugin take over `"  V2"`.
    pub fn register(
        &mut self,
        magic: [u8; 4],
        handler: Handler,
        replace_v2: bool,
    ) -> Result<(), RegistryError> {
        if let Some(existing) = self.handlers.get(&magic) {
            let may_replace = replace_v2 && matches!(existing, Handler::V2);
            if !may_replace {
                return Err(RegistryError::Duplicate {
                    magic: escape_magic(&magic),
                    owner: existing.name().to_owned(),
                });
            }
        }
        self.handlers.insert(magic, handler);
        Ok(())
    }

    /// The handler of `magic`: an exact registration, else `Handler::Tls`
    /// for a ClientHello when TLS is on.
    pub fn get(&self, magic: &[u8; 4]) -> Option<&Handler> {
        static TLS: Handler = Handler::Tls;
        match self.handlers.get(magic) {
            Some(h) => Some(h),
            None if self.tls.is_some() && crate::tls::is_client_hello(magic) => Some(&TLS),
            None => None,
        }
    }

    /// Every plugin once, however many magics it serves, sorted by name.
    pub fn plugins(&self) -> Vec<Arc<Plugin>> {
        let mut out: Vec<Arc<Plugin>> = Vec::new();
        for h in self.handlers.values() {
            if let Handler::Plugin(p) = h
                && !out.iter().any(|o| Arc::ptr_eq(o, p))
            {
                out.push(p.clone());
            }
        }
        out.sort_by(|a, b| a.name().cmp(b.name()));
        out
    }

    /// Every registered magic with its protocol name, sorted.
    pub fn entries(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .handlers
            .iter()
            .map(|(m, h)| (escape_magic(m), h.name().to_owned()))
            .collect();
        if self.tls.is_some() {
            v.push(("\\x16\\x03\\x0[0-4]*".to_owned(), "TLS".to_owned()));
        }
        v.sort();
        v
    }
}

/// The registry for `config`: built-in V2 plus every configured plugin,
/// each compiled once. Refuses a bad plugin entry with a message naming it.
pub fn build_registry(config: &Config) -> anyhow::Result<Registry> {
    registry_with(TlsServer::from_config(config)?, config)
}

/// Built-in V2, TLS termination when `tls` is set, and `config`'s plugins
/// (compiled through the plugin cache it names).
pub fn registry_with(tls: Option<Arc<TlsServer>>, config: &Config) -> anyhow::Result<Registry> {
    let plugins = &config.plugins;
    let opts = crate::plugin::HostOptions {
        cache_dir: crate::plugin::cache_dir(config),
        ..crate::plugin::HostOptions::default()
    };
    let opts = &opts;
    let mut registry = Registry::new();
    if let Some(tls) = tls {
        registry.set_tls(tls);
    }
    for (magics, plugin) in crate::plugin::load_plugins_with(plugins, opts)? {
        let replace_v2 = plugins
            .iter()
            .any(|p| p.name == plugin.name() && p.override_v2);
        for magic in magics {
            registry
                .register(magic, Handler::Plugin(plugin.clone()), replace_v2)
                .with_context(|| format!("plugin {:?}", plugin.name()))?;
        }
    }
    Ok(registry)
}

/// Renders a magic for logs: printable ASCII as is, the rest as `\xNN`.
pub fn escape_magic(magic: &[u8]) -> String {
    magic.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_is_built_in_and_unknown_is_absent() {
        let r = Registry::new();
        assert!(matches!(r.get(b"  V2"), Some(Handler::V2)));
        assert!(r.get(b"HTTP").is_none());
    }

    #[test]
    fn duplicate_is_refused_unless_replacing_v2() {
        let mut r = Registry::new();
        let err = r.register(MAGIC_V2, Handler::V2, false).expect_err("dup");
        assert_eq!(
            err,
            RegistryError::Duplicate {
                magic: "  V2".into(),
                owner: "V2".into()
            }
        );
        r.register(MAGIC_V2, Handler::V2, true).expect("override");
    }

    #[test]
    fn magics_are_escaped_for_logs() {
        assert_eq!(escape_magic(b"*1\r\n"), "*1\\r\\n");
        assert_eq!(escape_magic(&[0, 0xff, b'A', b' ']), "\\x00\\xffA ");
    }
}
