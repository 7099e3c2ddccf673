//! Errors in files users write (config, policies), each with `file:line:col` and a hint.

use std::fmt;
use std::path::Path;

/// One problem in a user's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as given on the command line or found in the policy folder.
    pub file: String,
    /// 1-based line (0 when unknown, e.g. for an environment override).
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is something better to say than the message.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A problem at a position.
    pub fn at(file: &str, line: u64, column: u64, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line,
            column,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Converts a serde-saphyr error into a diagnostic, with a did-you-mean hint for
    /// unknown fields and variants.
    pub fn from_yaml(file: &Path, err: &serde_saphyr::Error) -> Self {
        let (line, column) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let text = err.without_snippet().to_string();
        // serde-saphyr appends the position to the message; we print it in front instead.
        let message = match text.rfind(" at line ") {
            Some(i) => text[..i].to_owned(),
            None => text,
        };
        let hint = did_you_mean_from_serde(&message);
        Self {
            file: file.display().to_string(),
            line,
            column,
            message,
            hint,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Several diagnostics, printed one per entry.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // In file order, whatever order the checks found them in.
        let mut sorted: Vec<&Diagnostic> = self.0.iter().collect();
        sorted.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        for (i, d) in sorted.into_iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "unknown field `tll`, expected one of `ttl`, `key`" → "did you mean `ttl`?"
pub fn did_you_mean_from_serde(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (word, tail) = rest.split_once('`')?;
    let expected = tail.split_once("expected ")?.1;
    let candidates: Vec<&str> = expected
        .trim_start_matches("one of ")
        .split([','])
        .flat_map(|c| c.split(" or "))
        .map(|c| c.trim().trim_matches('`'))
        .filter(|c| !c.is_empty())
        .collect();
    match closest(word, candidates.iter().copied()) {
        Some(best) => Some(format!("did you mean `{best}`?")),
        None => Some(format!("expected one of: {}", candidates.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_field() {
        let hint =
            did_you_mean_from_serde("unknown field `lisen`, expected one of listen, plugins");
        assert_eq!(hint.as_deref(), Some("did you mean `listen`?"));
    }

    #[test]
    fn understands_serdes_two_option_form() {
        let hint = did_you_mean_from_serde(
            "unknown field `default_greting`, expected `default_greeting` or `delay_ms`",
        );
        assert_eq!(hint.as_deref(), Some("did you mean `default_greeting`?"));
    }

    #[test]
    fn lists_fields_when_nothing_is_close() {
        let hint = did_you_mean_from_serde("unknown field `zzz`, expected one of listen, plugins");
        assert_eq!(hint.as_deref(), Some("expected one of: listen, plugins"));
    }
}
