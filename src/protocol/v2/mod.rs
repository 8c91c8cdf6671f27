//! NSQ's TCP protocol V2, wire-compatible with nsqd 1.3: a pure codec
//! (`codec`, `command`), IDENTIFY negotiation (`identify`), stream
//! compression (`compress`), typed wire errors (`error`), and the one place
//! that touches the socket, the per-connection `session`.

pub mod codec;
pub mod command;
pub mod compress;
pub mod error;
pub mod identify;
pub mod session;

pub use codec::{Check, Limits};
pub use command::Command;
pub use error::{ErrorCode, ProtocolError};
pub use session::SessionError;

/// Serves one V2 connection whose magic has been read, until the client
/// leaves, a fatal error, or shutdown. Errors are for the caller to log in the
/// connection's span; nothing here panics on client input.
pub async fn serve(conn: super::Accepted, env: super::Env) -> Result<(), SessionError> {
    session::Session::new(conn, env).run().await
}
