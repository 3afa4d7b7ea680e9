//! The configuration error: which setting is wrong, where it was made, and why.
//! Callers treat it as the "config" class: exit 78 (EX_CONFIG) or deferral.

use std::fmt;
use std::path::PathBuf;

/// Stands in for a file name when a setting came from a `-o name=value` option.
pub const OVERRIDE_ORIGIN: &str = "command line -o";

/// A bad configuration setting.
///
/// Displays as `FILE, line N: parameter NAME: MESSAGE`; parts that are not
/// known are left out (no line for a default value, no parameter for a
/// main.cf syntax error). For `-o` settings `file` is [`OVERRIDE_ORIGIN`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub param: String,
    pub message: String,
}

impl ConfigError {
    /// An error about `param` with no known location.
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            line: None,
            param: param.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ", line {line}")?;
            }
            write!(f, ": ")?;
        }
        if !self.param.is_empty() {
            write!(f, "parameter {}: ", self.param)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_forms() {
        let mut e = ConfigError::new("smtp_helo_timeout", "bad time value or unit: \"10x\"");
        assert_eq!(
            e.to_string(),
            "parameter smtp_helo_timeout: bad time value or unit: \"10x\""
        );
        e.file = Some("/etc/postfix/main.cf".into());
        e.line = Some(12);
        assert_eq!(
            e.to_string(),
            "/etc/postfix/main.cf, line 12: parameter smtp_helo_timeout: bad time value or unit: \"10x\""
        );
        e.file = Some(OVERRIDE_ORIGIN.into());
        e.line = None;
        assert!(
            e.to_string()
                .starts_with("command line -o: parameter smtp_helo_timeout: ")
        );
        e.param.clear();
        assert_eq!(
            e.to_string(),
            "command line -o: bad time value or unit: \"10x\""
        );
    }
}
