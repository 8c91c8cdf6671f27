//! The guest SDK for nsq-gateway protocol plugins. A plugin is one type that
//! implements [`Protocol`] and one [`export!`] line: the SDK owns the WIT
//! bindings (`wit/gateway.wit`, `nsq:gateway@0.2.0`, generated once here),
//! the per-connection state, the allocator, the `validate-config` export
//! and the translation of each WIT event into a trait call. A protocol talks
//! to the gateway only through [`Host`], which [`Wit`] implements with the
//! real imports and [`testing::Recorder`] with a recording fake, so every
//! session is unit-tested natively with `cargo test`. `plugins/README.md` is
//! the tutorial.

// The bindings' runtime path names this crate, so that the code the export
// macro expands in a plugin resolves `nsq_sdk::wit_bindgen` there and here.
extern crate self as nsq_sdk;

mod config;
mod error;
pub use error::{code, describe, describe_auth};
mod host;
pub mod testing;

pub use config::{Config, ConfigError};
pub use host::{Admin, Host, Wit};

/// The allocator the export macro installs (see the `guest-alloc` crate).
pub use guest_alloc as alloc;
#[doc(hidden)]
pub use wit_bindgen;

/// The generated bindings of `wit/gateway.wit`. Plugins use the re-exported
/// types below and [`Host`]; the raw modules are here for the export macro.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "nsq_sdk::bindings",
        runtime_path: "nsq_sdk::wit_bindgen::rt",
    });
}

pub use bindings::nsq::gateway::connection::WriteError;
pub use bindings::nsq::gateway::types::{
    AuthError, BrokerError, ChannelStats, ConnectInfo, Identity, Limits, Message, TopicStats,
};

/// Appends `n` in decimal to `out` without allocating (`format!` would
/// allocate per call and link the formatting machinery): for numbers in
/// replies written per message.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A subscription handle from [`Host::subscribe`].
pub type Subscription = u32;

/// One wire protocol: what a connection does on each event. One value per
/// connection (each connection has its own component instance), created by
/// [`Protocol::connect`] and dropped after [`Protocol::on_close`]. Every
/// callback but `connect` defaults to doing nothing.
///
/// Effects (writes, close, timer) are applied by the gateway after the
/// callback returns, in call order; no host call blocks.
pub trait Protocol: Sized + 'static {
    /// The plugin's settings, read from gateway.yaml's `config:` map.
    type Settings;

    /// Reads the settings with `config`'s typed getters. Read every key you
    /// know on every call (not only under some condition): a key that was
    /// never read is reported as unknown, and a value that does not parse
    /// as invalid, when the gateway loads the plugin (`validate-config`),
    /// so a typo stops startup instead of being ignored. At connect time the
    /// config was already validated; the getters' defaults then stand for
    /// nothing but themselves.
    fn settings(config: &mut Config<'_>) -> Self::Settings;

    /// A new connection. `info.magic` is the 4 bytes that selected the
    /// plugin; a protocol whose first frame starts with them must treat
    /// them as the start of the stream.
    fn connect(settings: Self::Settings, info: &ConnectInfo, host: &mut impl Host) -> Self;

    /// Bytes from the client, in any chunking, never empty.
    fn on_data(&mut self, host: &mut impl Host, data: &[u8]) {
        let _ = (host, data);
    }

    /// Messages delivered on `sub` (at most its ready count in flight). A
    /// message stays in flight until finished or requeued; unacknowledged,
    /// it is redelivered after the message timeout.
    fn on_messages(&mut self, host: &mut impl Host, sub: Subscription, messages: Vec<Message>) {
        let _ = (host, sub, messages);
    }

    /// The timer armed with [`Host::set_timer`] fired.
    fn on_timer(&mut self, host: &mut impl Host) {
        let _ = host;
    }

    /// The answer to [`Host::authenticate`].
    fn on_authenticated(&mut self, host: &mut impl Host, answer: Result<Identity, AuthError>) {
        let _ = (host, answer);
    }

    /// The client hung up, the protocol closed, or the gateway is shutting
    /// down. Writes are still flushed if the socket is open. Last call.
    fn on_close(&mut self, host: &mut impl Host) {
        let _ = host;
    }
}

/// Exports a [`Protocol`] as the plugin's `tcp-handler`: installs the
/// small-block allocator, keeps the connection's value, implements
/// `validate-config` with [`Protocol::settings`] and [`Config::check`], and
/// routes every event to the value with [`Wit`] as the host.
///
/// ```ignore
/// struct Echo;
/// impl nsq_sdk::Protocol for Echo { /* ... */ }
/// nsq_sdk::export!(Echo);
/// ```
#[macro_export]
macro_rules! export {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[global_allocator]
        static __NSQ_SDK_ALLOC: $crate::alloc::FrontAlloc = $crate::alloc::FrontAlloc::new();

        ::std::thread_local! {
            static __NSQ_SDK_STATE: ::core::cell::RefCell<::core::option::Option<$ty>> =
                const { ::core::cell::RefCell::new(::core::option::Option::None) };
        }

        /// The `tcp-handler` export generated by `nsq_sdk::export!`.
        struct __NsqSdkExport;

        impl $crate::bindings::exports::nsq::gateway::tcp_handler::Guest for __NsqSdkExport {
            fn validate_config(
                config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::core::result::Result<(), ::std::string::String> {
                $crate::__rt::validate::<$ty>(config)
            }
            fn on_connect(info: $crate::ConnectInfo) {
                let value = $crate::__rt::connect::<$ty>(&info);
                __NSQ_SDK_STATE.with_borrow_mut(|s| *s = ::core::option::Option::Some(value));
            }
            fn on_data(data: ::std::vec::Vec<u8>) {
                __NSQ_SDK_STATE.with_borrow_mut(|s| {
                    if let ::core::option::Option::Some(p) = s {
                        $crate::Protocol::on_data(p, &mut $crate::Wit, &data);
                    }
                });
            }
            fn on_messages(sub: u32, messages: ::std::vec::Vec<$crate::Message>) {
                __NSQ_SDK_STATE.with_borrow_mut(|s| {
                    if let ::core::option::Option::Some(p) = s {
                        $crate::Protocol::on_messages(p, &mut $crate::Wit, sub, messages);
                    }
                });
            }
            fn on_timer() {
                __NSQ_SDK_STATE.with_borrow_mut(|s| {
                    if let ::core::option::Option::Some(p) = s {
                        $crate::Protocol::on_timer(p, &mut $crate::Wit);
                    }
                });
            }
            fn on_authenticated(
                answer: ::core::result::Result<$crate::Identity, $crate::AuthError>,
            ) {
                __NSQ_SDK_STATE.with_borrow_mut(|s| {
                    if let ::core::option::Option::Some(p) = s {
                        $crate::Protocol::on_authenticated(p, &mut $crate::Wit, answer);
                    }
                });
            }
            fn on_close() {
                let value = __NSQ_SDK_STATE.with_borrow_mut(|s| s.take());
                if let ::core::option::Option::Some(mut p) = value {
                    $crate::Protocol::on_close(&mut p, &mut $crate::Wit);
                }
            }
        }

        $crate::bindings::export_bindings!(__NsqSdkExport with_types_in $crate::bindings);
    };
}

/// What the export macro calls; not part of the API.
#[doc(hidden)]
pub mod __rt {
    use super::{Config, ConnectInfo, Protocol, Wit};

    /// `validate-config`: the settings' getters, then unknown keys.
    pub fn validate<P: Protocol>(config: Vec<(String, String)>) -> Result<(), String> {
        let mut config = Config::new(&config);
        let _ = P::settings(&mut config);
        config.check().map_err(|e| e.to_string())
    }

    /// `on-connect`: the settings, then the protocol's own `connect`.
    pub fn connect<P: Protocol>(info: &ConnectInfo) -> P {
        let mut config = Config::new(&info.config);
        let settings = P::settings(&mut config);
        P::connect(settings, info, &mut Wit)
    }
}
