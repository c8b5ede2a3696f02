//! The one error type of this crate.

use std::path::PathBuf;

/// Why the configuration was refused.
///
/// Every variant renders as ONE line that starts with the offending key,
/// spelled as its environment variable (e.g. `KEYWARD_BIND`), and says how to
/// fix it. Values of secret settings never appear in the message.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting holds a value Keyward cannot use.
    #[error("{key}: {message}")]
    Invalid {
        /// The setting, as its environment variable name.
        key: String,
        /// What is wrong and how to fix it; never contains a secret.
        message: String,
    },
    /// The configuration file is missing, unreadable or not valid TOML.
    #[error("{key}: cannot use config file \"{}\": {message}", path.display())]
    File {
        /// Always `KEYWARD_CONFIG` (an explicit path stands in for it).
        key: String,
        /// The file that was asked for.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl ConfigError {
    /// The setting the error is about, as its environment variable name.
    pub fn key(&self) -> &str {
        match self {
            ConfigError::Invalid { key, .. } | ConfigError::File { key, .. } => key,
        }
    }

    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: one_line(&message.into()),
        }
    }
}

/// Squash a possibly multi-line message (TOML parse errors draw source
/// snippets) into one line, dropping the snippet lines.
pub(crate) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .filter(|line| !is_snippet_line(line))
        .collect::<Vec<_>>()
        .join("; ")
}

fn is_snippet_line(line: &str) -> bool {
    let rest = line
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_start();
    rest.starts_with('|')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_line_parse_error_becomes_one_line_without_the_snippet() {
        let text =
            "TOML parse error at line 1, column 5\n  |\n1 | a = \n  |     ^\ninvalid string\n";
        assert_eq!(
            one_line(text),
            "TOML parse error at line 1, column 5; invalid string"
        );
    }

    #[test]
    fn the_display_starts_with_the_key() {
        let err = ConfigError::invalid("KEYWARD_BIND", "bad\nvalue");
        assert_eq!(err.to_string(), "KEYWARD_BIND: bad; value");
        assert_eq!(err.key(), "KEYWARD_BIND");
    }
}
