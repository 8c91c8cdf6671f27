//! NOP: no operation and no response; clients send it to answer heartbeats.

/// `NOP\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nop;
