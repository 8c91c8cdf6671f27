//! Name patterns from `limits.topics` / `limits.channels`: which topic and
//! channel names a plugin may touch. `*` matches any run of characters
//! (including none); everything else matches itself.

/// A compiled list of glob patterns; a name is allowed if any matches.
#[derive(Debug, Clone)]
pub(crate) struct NamePatterns {
    /// The patterns as configured; matching is on bytes.
    patterns: Vec<String>,
    /// Shortcut for the common `["*"]`, which allows everything.
    any: bool,
}

impl NamePatterns {
    pub(crate) fn new(patterns: &[String]) -> Self {
        NamePatterns {
            any: patterns.iter().any(|p| p == "*"),
            patterns: patterns.to_vec(),
        }
    }

    pub(crate) fn allows(&self, name: &str) -> bool {
        self.any
            || self
                .patterns
                .iter()
                .any(|p| glob(p.as_bytes(), name.as_bytes()))
    }

    /// The patterns for error messages.
    pub(crate) fn describe(&self) -> String {
        self.patterns.join(", ")
    }
}

/// Iterative glob match with backtracking to the last `*` (linear in
/// practice, never exponential).
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(b"*", b""));
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"app.*", b"app.orders"));
        assert!(!glob(b"app.*", b"other"));
        assert!(glob(b"*#ephemeral", b"x#ephemeral"));
        assert!(glob(b"a*b*c", b"aXXbYYc"));
        assert!(!glob(b"a*b*c", b"aXXbYY"));
        assert!(glob(b"exact", b"exact"));
        assert!(!glob(b"exact", b"exact2"));
        let p = NamePatterns::new(&["allowed".into(), "ok.*".into()]);
        assert!(p.allows("allowed") && p.allows("ok.1") && !p.allows("forbidden"));
    }
}
