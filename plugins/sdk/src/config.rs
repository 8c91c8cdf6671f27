//! Typed getters over a plugin's `config:` map from gateway.yaml. Each
//! getter marks its key as known and records a value that does not parse;
//! [`Config::check`] then reports those and every key no getter asked for,
//! which is how `validate-config` refuses a typo at load instead of
//! ignoring it.

use std::fmt;
use std::str::FromStr;

/// The `config:` map of one plugin, read through typed getters.
pub struct Config<'a> {
    /// The pairs from gateway.yaml, sorted by key.
    pairs: &'a [(String, String)],
    /// Which pairs a getter asked for, index for index.
    known: Vec<bool>,
    /// One line per value that did not parse or was out of range.
    errors: Vec<String>,
}

/// Everything wrong with a plugin's config: unknown keys and bad values,
/// one per line, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in key order for bad values, then unknown keys.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("; "))
    }
}

impl std::error::Error for ConfigError {}

impl<'a> Config<'a> {
    /// Wraps the pairs; nothing is read yet.
    pub fn new(pairs: &'a [(String, String)]) -> Self {
        Config {
            pairs,
            known: vec![false; pairs.len()],
            errors: Vec::new(),
        }
    }

    /// The raw value of `key`, marking it known.
    pub fn raw(&mut self, key: &str) -> Option<&'a str> {
        let i = self.pairs.iter().position(|(k, _)| k == key)?;
        self.known[i] = true;
        Some(self.pairs[i].1.as_str())
    }

    /// `key` parsed as `T`, or `default` when it is absent or bad (a bad
    /// value is recorded for [`Config::check`]).
    pub fn get<T>(&mut self, key: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let Some(value) = self.raw(key) else {
            return default;
        };
        match value.trim().parse::<T>() {
            Ok(v) => v,
            Err(e) => {
                self.errors.push(format!(
                    "config.{key}: {value:?} is not a valid {}: {e}",
                    short_type_name::<T>()
                ));
                default
            }
        }
    }

    /// `key` as a number in `min..=max`; out of range is a bad value.
    pub fn range<T>(&mut self, key: &str, default: T, min: T, max: T) -> T
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
        T::Err: fmt::Display,
    {
        let v = self.get(key, default);
        if v < min || v > max {
            self.errors
                .push(format!("config.{key}: {v} is out of range {min}..={max}"));
            return default;
        }
        v
    }

    /// `key` as `true` or `false`.
    pub fn bool(&mut self, key: &str, default: bool) -> bool {
        match self.raw(key) {
            None => default,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                self.errors
                    .push(format!("config.{key}: {other:?} is not true or false"));
                default
            }
        }
    }

    /// `key` as text.
    pub fn string(&mut self, key: &str, default: &str) -> String {
        self.raw(key).unwrap_or(default).to_string()
    }

    /// `key` as one of `choices`.
    pub fn one_of(
        &mut self,
        key: &str,
        default: &'static str,
        choices: &[&'static str],
    ) -> &'static str {
        let Some(value) = self.raw(key) else {
            return default;
        };
        match choices.iter().find(|c| **c == value) {
            Some(c) => c,
            None => {
                self.errors.push(format!(
                    "config.{key}: {value:?} is not one of {}",
                    choices.join(", ")
                ));
                default
            }
        }
    }

    /// `key` as a comma-separated list, each item trimmed, empty items
    /// dropped; absent is the empty list.
    pub fn list(&mut self, key: &str) -> Vec<String> {
        self.raw(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records a problem the getters cannot see (two settings that
    /// contradict each other, say). Name the key in `problem`.
    pub fn invalid(&mut self, problem: impl Into<String>) {
        self.errors.push(problem.into());
    }

    /// The bad values, then the keys no getter asked for.
    pub fn check(self) -> Result<(), ConfigError> {
        let mut problems = self.errors;
        for (i, (key, _)) in self.pairs.iter().enumerate() {
            if !self.known[i] {
                problems.push(format!("config.{key}: unknown key"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// `u32` rather than `core::primitive::u32`, for messages.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn getters_parse_and_default() {
        let p = pairs(&[("a", "12"), ("b", "true"), ("c", "x, y,,z"), ("d", "auto")]);
        let mut c = Config::new(&p);
        assert_eq!(c.get("a", 1u32), 12);
        assert_eq!(c.get("missing", 7u32), 7);
        assert!(c.bool("b", false));
        assert_eq!(c.list("c"), ["x", "y", "z"]);
        assert_eq!(c.one_of("d", "manual", &["auto", "manual"]), "auto");
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_reported_by_name() {
        let p = pairs(&[
            ("rdy", "lots"),
            ("max", "99"),
            ("typo", "1"),
            ("flag", "yes"),
        ]);
        let mut c = Config::new(&p);
        assert_eq!(c.get("rdy", 1u32), 1);
        assert_eq!(c.range("max", 5u32, 1, 10), 5);
        assert!(!c.bool("flag", false));
        let e = c.check().expect_err("three problems");
        assert_eq!(
            e.problems,
            [
                "config.rdy: \"lots\" is not a valid u32: invalid digit found in string",
                "config.max: 99 is out of range 1..=10",
                "config.flag: \"yes\" is not true or false",
                "config.typo: unknown key",
            ]
        );
    }
}
