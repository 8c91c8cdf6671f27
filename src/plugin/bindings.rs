//! The one `bindgen!` for `wit/gateway.wit`: Rust types and traits for the
//! `nsq:gateway/plugin` world. Host imports are synchronous and trappable
//! (outer `Err` traps the guest, inner `Result` is the WIT error); the
//! exported event callbacks are called with `call_async` so that the WASI
//! imports a Rust guest links (stderr for panics) never block a tokio worker.

wasmtime::component::bindgen!({
    path: "wit",
    world: "plugin",
    imports: { default: trappable },
    exports: { default: async },
});
