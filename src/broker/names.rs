//! nsqd's naming rules for topics and channels: 1 to 64 characters of
//! `[.a-zA-Z0-9_-]`, optionally ending in `#ephemeral` (still within 64).

const EPHEMERAL_SUFFIX: &str = "#ephemeral";
const MAX_NAME_LEN: usize = 64;

/// True when `name` is a valid topic or channel name.
pub fn is_valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return false;
    }
    let base = name.strip_suffix(EPHEMERAL_SUFFIX).unwrap_or(name);
    !base.is_empty()
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// True when the name marks an ephemeral topic or channel.
pub fn is_ephemeral(name: &str) -> bool {
    name.ends_with(EPHEMERAL_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_nsqd_names() {
        for n in ["a", "test_topic", "a.b-c_d", "x#ephemeral", &"a".repeat(64)] {
            assert!(is_valid_name(n), "{n}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        let long = "a".repeat(65);
        for n in [
            "",
            "a b",
            "a/b",
            "#ephemeral",
            "a#eph",
            "ä",
            "a\n",
            long.as_str(),
        ] {
            assert!(!is_valid_name(n), "{n:?}");
        }
        let long_eph = format!("{}#ephemeral", "a".repeat(55));
        assert!(!is_valid_name(&long_eph));
    }

    #[test]
    fn ephemeral_suffix() {
        assert!(is_ephemeral("t#ephemeral"));
        assert!(!is_ephemeral("t"));
    }
}
