//! The one `bindgen!` for `wit/gateway.wit`: Rust types and traits for the
//! `nsq:gateway/plugin` world. Host imports are synchronous and trappable
//! (a broker import returns `broker::Fail`, which is either the WIT
//! `broker-error` or a trap), and so are
//! the exported event callbacks: a guest runs on the connection's tokio
//! worker without a fiber, and the WASI it links never blocks (`wasi_io`).

wasmtime::component::bindgen!({
    path: "wit",
    world: "plugin",
    imports: { default: trappable },
    trappable_error_type: {
        "nsq:gateway/types.broker-error" => crate::plugin::broker::Fail,
    },
});
