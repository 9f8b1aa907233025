//! Diagnostics for rule loading: every problem, with file and line.

use std::fmt;

/// Where in which rule file a problem sits (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The file name as given to the loader.
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `source`.
    pub fn at(file: &str, source: &str, offset: usize) -> Self {
        let offset = offset.min(source.len());
        let before = &source.as_bytes()[..offset];
        let line = memchr::memchr_iter(b'\n', before).count() + 1;
        let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        Location {
            file: file.to_string(),
            line,
            column,
        }
    }

    /// A location naming only the file.
    pub fn file(file: &str) -> Self {
        Location {
            file: file.to_string(),
            line: 0,
            column: 0,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// One problem found while loading or compiling rule files.
///
/// The loader collects all of them rather than stopping at the first, so an
/// operator fixes a whole pack in one round.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The file could not be read (only from the filesystem helper).
    #[error("{loc}: cannot read: {message}")]
    Read {
        /// The file.
        loc: Location,
        /// The OS error.
        message: String,
    },
    /// Not valid TOML, or a key/value of the wrong shape.
    #[error("{loc}: {message}")]
    Syntax {
        /// Where.
        loc: Location,
        /// What the TOML parser or the rule schema said.
        message: String,
    },
    /// Two rules (or two dictionaries) share one id.
    #[error("{loc}: duplicate id `{id}` (first defined at {first})")]
    DuplicateId {
        /// The second definition.
        loc: Location,
        /// The id.
        id: String,
        /// The first definition.
        first: Location,
    },
    /// A rule names a dictionary no file defines.
    #[error("{loc}: rule `{rule}` references unknown dictionary `{dictionary}`")]
    UnknownDictionary {
        /// Where the reference is.
        loc: Location,
        /// The rule.
        rule: String,
        /// The missing dictionary id.
        dictionary: String,
    },
    /// A regular expression (pattern or exclusion) does not compile.
    #[error("{loc}: rule `{rule}`: invalid regex: {message}")]
    Regex {
        /// Where the regex is.
        loc: Location,
        /// The rule.
        rule: String,
        /// The regex compiler's message.
        message: String,
    },
    /// The rule is well-formed TOML but makes no sense (no matcher, bad window…).
    #[error("{loc}: rule `{rule}`: {message}")]
    Invalid {
        /// Where.
        loc: Location,
        /// The rule.
        rule: String,
        /// Why.
        message: String,
    },
}

impl RuleError {
    /// The location the error points at.
    pub fn location(&self) -> &Location {
        match self {
            RuleError::Read { loc, .. }
            | RuleError::Syntax { loc, .. }
            | RuleError::DuplicateId { loc, .. }
            | RuleError::UnknownDictionary { loc, .. }
            | RuleError::Regex { loc, .. }
            | RuleError::Invalid { loc, .. } => loc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_columns_from_one() {
        let src = "a = 1\nbé = 2\n";
        let off = src.find('=').unwrap();
        assert_eq!(Location::at("f.toml", src, off).to_string(), "f.toml:1:3");
        let off = src.rfind('=').unwrap();
        let loc = Location::at("f.toml", src, off);
        assert_eq!((loc.line, loc.column), (2, 4));
    }
}
