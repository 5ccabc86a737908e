//! Path patterns, restic's way: a pattern starting with `/` is matched
//! against the whole absolute path, any other pattern against the trailing
//! components at any depth (`*.log` matches every `.log` file, `cache/tmp`
//! every `tmp` inside a `cache`). `*` does not cross `/`; `**` does. Used
//! by backup's and restore's `--exclude` and by `find`.

use crate::error::{Error, Result};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::path::Path;

/// A compiled set of patterns.
#[derive(Clone, Debug)]
pub struct PatternSet {
    set: GlobSet,
    empty: bool,
}

impl PatternSet {
    /// Compiles patterns; a bad pattern is an error naming it.
    pub fn new(patterns: &[String]) -> Result<PatternSet> {
        PatternSet::build(patterns, false)
    }

    /// Compiles patterns that ignore case (`find -i`).
    pub fn case_insensitive(patterns: &[String]) -> Result<PatternSet> {
        PatternSet::build(patterns, true)
    }

    fn build(patterns: &[String], ignore_case: bool) -> Result<PatternSet> {
        let mut b = GlobSetBuilder::new();
        let mut empty = true;
        for p in patterns {
            let p = p.trim_end_matches('/');
            if p.is_empty() {
                continue;
            }
            empty = false;
            let full = if p.starts_with('/') {
                p.to_string()
            } else {
                format!("**/{p}")
            };
            let g = GlobBuilder::new(&full)
                .literal_separator(true)
                .backslash_escape(true)
                .case_insensitive(ignore_case)
                .build()
                .map_err(|e| Error::InvalidInput(format!("invalid pattern {p:?}: {e}")))?;
            b.add(g);
        }
        let set = b
            .build()
            .map_err(|e| Error::InvalidInput(format!("invalid patterns: {e}")))?;
        Ok(PatternSet { set, empty })
    }

    /// Reads patterns from a file: one per line, `#` comments and blank
    /// lines ignored.
    pub fn read_file(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect())
    }

    /// Whether `path` (absolute) matches any pattern.
    pub fn matches(&self, path: &Path) -> bool {
        !self.empty && self.set.is_match(path)
    }

    /// Whether the set has no patterns.
    pub fn is_empty(&self) -> bool {
        self.empty
    }
}
