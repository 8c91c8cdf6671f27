//! The example plugins (line, stomp, resp, web) embedded in the binary by the
//! build script, so that an installed gateway needs no checkout:
//! `component: builtin:<name>` in gateway.yaml, or no `component` at all,
//! selects one of them.

/// `(name, component bytes)` of every embedded plugin; empty when the build
/// skipped the plugins (`NSQ_GATEWAY_SKIP_PLUGINS`).
const BUILTIN: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The embedded component called `name`.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The names of the embedded plugins, for error messages.
pub fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_plugins_are_embedded() {
        if std::env::var_os("NSQ_GATEWAY_SKIP_PLUGINS").is_some() {
            return;
        }
        for name in ["line", "stomp", "resp", "web"] {
            let bytes = super::get(name).unwrap_or_else(|| panic!("{name} embedded"));
            assert!(bytes.starts_with(b"\0asm"), "{name} is WebAssembly");
        }
        assert!(super::get("test-trap").is_none());
    }
}
