//! CLS: the client wants to close cleanly; stop delivering, answer
//! `CLOSE_WAIT`, and let it finish what it holds.

/// `CLS\n`. nsqd 1.3 ignores any parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cls;
