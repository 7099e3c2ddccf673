//! Diagnostics: what `larder check` prints.
//!
//! Every problem found while loading policies becomes one [`Diagnostic`] with a file, a line,
//! a column, a message and, where we can guess the intent, a hint. Loading never stops at
//! the first problem: [`Diagnostics`] holds all of them.

use std::fmt;
use std::path::PathBuf;

/// A position in a policy file (1-based line and column, in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Location {
    /// 1-based line; 0 when unknown.
    pub line: u32,
    /// 1-based column; 0 when unknown.
    pub col: u32,
}

/// One problem in the policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as given to the loader.
    pub file: PathBuf,
    /// Where in the file.
    pub location: Location,
    /// What is wrong.
    pub message: String,
    /// What the author probably meant, or how to fix it.
    pub hint: Option<String>,
    /// The source line, for the excerpt under the message.
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// A diagnostic without a hint.
    pub fn new(file: impl Into<PathBuf>, location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            location,
            message: message.into(),
            hint: None,
            source_line: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// Adds a hint.
    pub fn hint(self, hint: impl Into<String>) -> Self {
        self.with_hint(Some(hint.into()))
    }

    /// Shows the line of `text` the diagnostic points at under it.
    pub fn with_source(mut self, text: &str) -> Self {
        if self.location.line > 0 {
            self.source_line = text
                .lines()
                .nth(self.location.line as usize - 1)
                .map(str::to_owned);
        }
        self
    }

    /// The first line of the rendering: `file:line:col: error: message`.
    pub fn headline(&self) -> String {
        format!(
            "{}:{}:{}: error: {}",
            self.file.display(),
            self.location.line,
            self.location.col,
            self.message
        )
    }
}

impl fmt::Display for Diagnostic {
    /// ```text
    /// policies/booking.yaml:12:5: error: unknown field `tll`
    ///    |
    /// 12 |     tll: 5m
    ///    |     ^
    ///    = hint: did you mean `ttl`?
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())?;
        let gutter = self.location.line.to_string().len();
        if let Some(line) = &self.source_line {
            let pad = " ".repeat(gutter);
            let caret_pad = " ".repeat(self.location.col.saturating_sub(1) as usize);
            write!(
                f,
                "\n{pad} |\n{} | {}\n{pad} | {caret_pad}^",
                self.location.line,
                line.trim_end()
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n{} = hint: {hint}", " ".repeat(gutter))?;
        }
        Ok(())
    }
}

/// All problems found in one load, sorted by file and position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Sorts by file and position, dropping repeats.
    pub fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.file, a.location).cmp(&(&b.file, b.location)));
        self.0.dedup();
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}\n")?;
        }
        let n = self.0.len();
        write!(f, "{n} error{} found", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Diagnostics {}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The closest candidate to `word`, when it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(&word.to_ascii_lowercase(), &c.to_ascii_lowercase());
        let close = score > 0.8 || strsim::damerau_levenshtein(word, c) <= 2 && c.len() > 2;
        if close && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c.to_owned())
}

/// A "did you mean" hint for `word`.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    suggest(word, candidates).map(|s| format!("did you mean `{s}`?"))
}
