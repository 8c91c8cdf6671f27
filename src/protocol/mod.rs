//! Wire protocols served natively. Plugins live in `crate::plugin`.

pub mod v2;
