//! The condition language of `when:` and `bypass.when`.
//!
//! ```text
//! expr    := or
//! or      := and ( ("or" | "||") and )*
//! and     := unary ( ("and" | "&&") unary )*
//! unary   := ("not" | "!") unary | primary
//! primary := "(" expr ")" | "exists" operand
//!          | operand [ cmp operand | ["not"] "in" "[" literal ("," literal)* "]" ]
//! cmp     := "==" | "!=" | "<" | "<=" | ">" | ">="
//! operand := query.X | path.X | header.X | body.POINTER | tenant | user | method
//!          | ("today" | "now") [ ("+" | "-") DURATION ] | 'string' | "string" | number
//!          | true | false | YYYY-MM-DD
//! ```
//!
//! Conditions are parsed at load. Comparison picks its meaning from the operands: against
//! `today` or a date both sides compare as dates, against `now` as instants, against a
//! number numerically; two request values compare as numbers or dates when both parse as
//! such, else as text. A comparison with an absent value is false.

use crate::request::RequestView;
use crate::template::Var;
use crate::units::Duration;
use std::fmt;

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    source: String,
    node: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Or(Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Exists(Operand),
    Truthy(Operand),
    Cmp(Operand, Cmp, Operand),
    In(Operand, Vec<Operand>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Var(Var),
    Str(String),
    Num(f64),
    Bool(bool),
    Date(i64),
    Time(i64),
    Today(i64),
    Now(i64),
}

/// A condition syntax error with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// What is wrong.
    pub message: String,
    /// Byte offset into the condition text.
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(&'static str),
}

fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let two = src.get(i..i + 2).unwrap_or("");
        let op2 = ["==", "!=", "<=", ">=", "&&", "||"]
            .into_iter()
            .find(|o| *o == two);
        if let Some(o) = op2 {
            out.push((Tok::Op(o), i));
            i += 2;
            continue;
        }
        let op1 = match c {
            b'<' => Some("<"),
            b'>' => Some(">"),
            b'!' => Some("!"),
            b'(' => Some("("),
            b')' => Some(")"),
            b'[' => Some("["),
            b']' => Some("]"),
            b',' => Some(","),
            b'+' => Some("+"),
            b'=' => {
                return Err(ExprError {
                    message: "`=` is not an operator; write `==` to compare".into(),
                    offset: i,
                });
            }
            _ => None,
        };
        if let Some(o) = op1 {
            out.push((Tok::Op(o), i));
            i += 1;
            continue;
        }
        if c == b'\'' || c == b'"' {
            let end = src[i + 1..].find(c as char).ok_or(ExprError {
                message: "unterminated string".into(),
                offset: i,
            })?;
            out.push((Tok::Str(src[i + 1..i + 1 + end].to_owned()), i));
            i += end + 2;
            continue;
        }
        let after_clock = out
            .last()
            .is_some_and(|(t, _)| matches!(t, Tok::Word(w) if w == "today" || w == "now"));
        if c == b'-' && (after_clock || !b.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            out.push((Tok::Op("-"), i));
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len()
            && (b[i].is_ascii_alphanumeric()
                || matches!(b[i], b'_' | b'.' | b'/' | b'-' | b'~' | b':'))
        {
            i += 1;
        }
        if i == start {
            let ch = src[i..].chars().next().unwrap_or('?');
            return Err(ExprError {
                message: format!("unexpected character `{ch}`"),
                offset: i,
            });
        }
        let word = &src[start..i];
        // `today-1d` written without spaces.
        let mut split = false;
        for base in ["today", "now"] {
            if let Some(d) = word.strip_prefix(base).and_then(|r| r.strip_prefix('-')) {
                out.push((Tok::Word(base.into()), start));
                out.push((Tok::Op("-"), start + base.len()));
                out.push((Tok::Word(d.into()), start + base.len() + 1));
                split = true;
                break;
            }
        }
        if !split {
            out.push((Tok::Word(word.to_owned()), start));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }
    fn offset(&self) -> usize {
        self.toks
            .get(self.pos)
            .map(|(_, o)| *o)
            .unwrap_or(self.src.len())
    }
    fn err<T>(&self, message: impl Into<String>) -> Result<T, ExprError> {
        Err(ExprError {
            message: message.into(),
            offset: self.offset(),
        })
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }
    fn is_op(&self, o: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(x)) if *x == o)
    }
    fn expect_op(&mut self, o: &str) -> Result<(), ExprError> {
        if self.is_op(o) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(format!("expected `{o}`"))
        }
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        let mut l = self.and()?;
        while self.is_word("or") || self.is_op("||") {
            self.pos += 1;
            l = Node::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Node, ExprError> {
        let mut l = self.unary()?;
        while self.is_word("and") || self.is_op("&&") {
            self.pos += 1;
            l = Node::And(Box::new(l), Box::new(self.unary()?));
        }
        Ok(l)
    }
    fn unary(&mut self) -> Result<Node, ExprError> {
        if self.is_word("not") || self.is_op("!") {
            self.pos += 1;
            return Ok(Node::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }
    fn primary(&mut self) -> Result<Node, ExprError> {
        if self.is_op("(") {
            self.pos += 1;
            let n = self.or()?;
            self.expect_op(")")?;
            return Ok(n);
        }
        if self.is_word("exists") {
            self.pos += 1;
            let o = self.operand()?;
            if !matches!(o, Operand::Var(_)) {
                return self.err("`exists` takes a request value such as `query.date`");
            }
            return Ok(Node::Exists(o));
        }
        let left = self.operand()?;
        let negate = if self.is_word("not")
            && matches!(self.toks.get(self.pos + 1), Some((Tok::Word(w), _)) if w == "in")
        {
            self.pos += 1;
            true
        } else {
            false
        };
        if self.is_word("in") {
            self.pos += 1;
            self.expect_op("[")?;
            let mut items = Vec::new();
            loop {
                if self.is_op("]") {
                    self.pos += 1;
                    break;
                }
                let o = self.operand()?;
                if matches!(o, Operand::Var(_)) {
                    return self.err("list items must be literals");
                }
                items.push(o);
                if self.is_op(",") {
                    self.pos += 1;
                } else if !self.is_op("]") {
                    return self.err("expected `,` or `]`");
                }
            }
            let n = Node::In(left, items);
            return Ok(if negate { Node::Not(Box::new(n)) } else { n });
        }
        let cmp = match self.peek() {
            Some(Tok::Op("==")) => Some(Cmp::Eq),
            Some(Tok::Op("!=")) => Some(Cmp::Ne),
            Some(Tok::Op("<")) => Some(Cmp::Lt),
            Some(Tok::Op("<=")) => Some(Cmp::Le),
            Some(Tok::Op(">")) => Some(Cmp::Gt),
            Some(Tok::Op(">=")) => Some(Cmp::Ge),
            _ => None,
        };
        match cmp {
            Some(c) => {
                self.pos += 1;
                let right = self.operand()?;
                Ok(Node::Cmp(left, c, right))
            }
            None => Ok(Node::Truthy(left)),
        }
    }

    fn operand(&mut self) -> Result<Operand, ExprError> {
        let tok = match self.toks.get(self.pos) {
            Some((t, _)) => t.clone(),
            None => return self.err("expected a value"),
        };
        self.pos += 1;
        match tok {
            Tok::Str(s) => Ok(Operand::Str(s)),
            Tok::Op(o) => {
                self.pos -= 1;
                self.err(format!("expected a value, found `{o}`"))
            }
            Tok::Word(w) => match w.as_str() {
                "true" => Ok(Operand::Bool(true)),
                "false" => Ok(Operand::Bool(false)),
                "today" | "now" => {
                    let mut offset: i64 = 0;
                    if self.is_op("+") || self.is_op("-") {
                        let sign = if self.is_op("-") { -1 } else { 1 };
                        self.pos += 1;
                        let d = match self.peek() {
                            Some(Tok::Word(d)) => d.clone(),
                            _ => return self.err("expected a duration such as `1d`"),
                        };
                        let dur: Duration = match d.parse() {
                            Ok(x) => x,
                            Err(e) => return self.err(e.to_string()),
                        };
                        self.pos += 1;
                        offset = sign * dur.as_secs() as i64;
                    }
                    if w == "today" {
                        if offset % 86_400 != 0 {
                            self.pos -= 1;
                            return self.err("`today` moves in whole days; use `now` for hours");
                        }
                        Ok(Operand::Today(offset / 86_400))
                    } else {
                        Ok(Operand::Now(offset))
                    }
                }
                _ if w.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
                    if let Some(d) = parse_date(&w) {
                        Ok(Operand::Date(d))
                    } else if let Some(t) = parse_datetime(&w) {
                        Ok(Operand::Time(t))
                    } else if let Ok(n) = w.parse::<f64>() {
                        Ok(Operand::Num(n))
                    } else {
                        self.pos -= 1;
                        self.err(format!("`{w}` is not a number or a YYYY-MM-DD date"))
                    }
                }
                _ => match Var::parse(&w) {
                    Ok(v) => match v {
                        Var::Query | Var::Params | Var::Body | Var::Path | Var::Event(_) => {
                            self.pos -= 1;
                            self.err(format!(
                                "`{w}` cannot be compared; name one value, e.g. `query.date`, \
                                 `body.id`, `path.id`"
                            ))
                        }
                        v => Ok(Operand::Var(v)),
                    },
                    Err(m) => {
                        self.pos -= 1;
                        self.err(format!("{m} (quote text literals: `'{w}'`)"))
                    }
                },
            },
        }
    }
}

/// What an operand evaluates to.
#[derive(Debug, Clone, PartialEq)]
enum Val<'a> {
    Missing,
    Str(&'a str),
    Owned(String),
    Num(f64),
    Bool(bool),
    Date(i64),
    Time(i64),
}

/// "Now" for evaluation: an instant, read from the server's one clock
/// (`server.clock_start` chooses its start) so that tests and `larder explain` are
/// deterministic, and the UTC offset in force there in the time zone a rule evaluates in
/// (UTC unless the rule, its plugin or `defaults` name a zone), which decides the date
/// `today` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix_secs: i64,
    /// The zone's offset from UTC at `unix_secs`, in seconds.
    offset_secs: i32,
}

impl Clock {
    /// A fixed instant, its dates in UTC.
    pub fn at(unix_secs: i64) -> Clock {
        Clock {
            unix_secs,
            offset_secs: 0,
        }
    }

    /// Parses `2025-01-23` or `2025-01-23T10:30:00Z`.
    pub fn parse(s: &str) -> Option<Clock> {
        parse_datetime(s).map(Clock::at)
    }

    /// The same instant with its dates in `zone`: `today` becomes the zone's date (a
    /// daylight-saving change moves the offset, not the date arithmetic).
    pub fn in_zone(self, zone: &jiff::tz::TimeZone) -> Clock {
        let offset_secs = jiff::Timestamp::from_second(self.unix_secs)
            .map(|t| zone.to_offset(t).seconds())
            .unwrap_or(0);
        Clock {
            unix_secs: self.unix_secs,
            offset_secs,
        }
    }

    /// Days since the epoch of the current date in the clock's zone.
    pub fn today(self) -> i64 {
        (self.unix_secs + i64::from(self.offset_secs)).div_euclid(86_400)
    }
}

impl Expr {
    /// Parses a condition.
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        let toks = tokenize(src)?;
        if toks.is_empty() {
            return Err(ExprError {
                message: "empty condition".into(),
                offset: 0,
            });
        }
        let mut p = Parser { toks, pos: 0, src };
        let node = p.or()?;
        if p.pos < p.toks.len() {
            return p.err("unexpected text after the condition; join conditions with `and`/`or`");
        }
        Ok(Expr {
            source: src.to_owned(),
            node,
        })
    }

    /// The source text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Every request variable the condition reads.
    pub fn vars(&self) -> Vec<&Var> {
        fn walk<'a>(n: &'a Node, out: &mut Vec<&'a Var>) {
            let op = |o: &'a Operand, out: &mut Vec<&'a Var>| {
                if let Operand::Var(v) = o {
                    out.push(v);
                }
            };
            match n {
                Node::Or(a, b) | Node::And(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Node::Not(a) => walk(a, out),
                Node::Exists(o) | Node::Truthy(o) => op(o, out),
                Node::Cmp(a, _, b) => {
                    op(a, out);
                    op(b, out);
                }
                Node::In(a, _) => op(a, out),
            }
        }
        let mut v = Vec::new();
        walk(&self.node, &mut v);
        v
    }

    /// Evaluates against a request at `clock`.
    pub fn eval(&self, req: &dyn RequestView, clock: Clock) -> bool {
        eval(&self.node, req, clock)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn value<'a>(o: &'a Operand, req: &'a dyn RequestView, clock: Clock) -> Val<'a> {
    match o {
        Operand::Str(s) => Val::Str(s),
        Operand::Num(n) => Val::Num(*n),
        Operand::Bool(b) => Val::Bool(*b),
        Operand::Date(d) => Val::Date(*d),
        Operand::Time(t) => Val::Time(*t),
        Operand::Today(off) => Val::Date(clock.today() + off),
        Operand::Now(off) => Val::Time(clock.unix_secs + off),
        Operand::Var(v) => {
            let s = match v {
                Var::Plugin => req.plugin(),
                Var::Operation => req.operation(),
                Var::Method => Some(req.method()),
                Var::PathParam(n) => req.path_param(n),
                Var::QueryParam(n) => req.query_param(n),
                Var::Header(n) => req.header(n),
                Var::Tenant => req.tenant(),
                Var::User => req.user(),
                Var::BodyPointer(p) => {
                    return match req.body().and_then(|b| b.pointer(p)) {
                        None | Some(serde_json::Value::Null) => Val::Missing,
                        Some(serde_json::Value::String(s)) => Val::Str(s),
                        Some(serde_json::Value::Bool(b)) => Val::Bool(*b),
                        Some(serde_json::Value::Number(n)) => {
                            n.as_f64().map(Val::Num).unwrap_or(Val::Missing)
                        }
                        Some(other) => Val::Owned(crate::template::canonical_json(other)),
                    };
                }
                _ => None,
            };
            s.map(Val::Str).unwrap_or(Val::Missing)
        }
    }
}

fn as_text<'a>(v: &'a Val<'a>) -> Option<&'a str> {
    match v {
        Val::Str(s) => Some(s),
        Val::Owned(s) => Some(s),
        _ => None,
    }
}

fn truthy(v: &Val<'_>) -> bool {
    match v {
        Val::Missing => false,
        Val::Bool(b) => *b,
        Val::Num(n) => *n != 0.0,
        Val::Date(_) | Val::Time(_) => true,
        Val::Str(_) | Val::Owned(_) => {
            let s = as_text(v).unwrap_or("");
            !(s.is_empty() || s == "0" || s.eq_ignore_ascii_case("false") || s == "no")
        }
    }
}

fn compare(a: &Val<'_>, b: &Val<'_>) -> Option<std::cmp::Ordering> {
    use Val::*;
    let num = |v: &Val<'_>| match v {
        Num(n) => Some(*n),
        _ => as_text(v).and_then(|s| s.trim().parse::<f64>().ok()),
    };
    let date = |v: &Val<'_>| match v {
        Date(d) => Some(*d),
        Time(t) => Some(t.div_euclid(86_400)),
        _ => as_text(v).and_then(|s| parse_date(s.get(..10).unwrap_or(s))),
    };
    let time = |v: &Val<'_>| match v {
        Time(t) => Some(*t),
        Date(d) => Some(d * 86_400),
        Num(n) => Some(*n as i64),
        _ => as_text(v).and_then(|s| parse_datetime(s).or_else(|| s.trim().parse::<i64>().ok())),
    };
    let boolean = |v: &Val<'_>| match v {
        Bool(b) => Some(*b),
        _ => match as_text(v) {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        },
    };
    match (a, b) {
        (Missing, _) | (_, Missing) => None,
        (Time(_), _) | (_, Time(_)) => Some(time(a)?.cmp(&time(b)?)),
        (Date(_), _) | (_, Date(_)) => Some(date(a)?.cmp(&date(b)?)),
        (Num(_), _) | (_, Num(_)) => num(a)?.partial_cmp(&num(b)?),
        (Bool(_), _) | (_, Bool(_)) => Some(boolean(a)?.cmp(&boolean(b)?)),
        _ => {
            let (x, y) = (as_text(a)?, as_text(b)?);
            if let (Ok(p), Ok(q)) = (x.trim().parse::<f64>(), y.trim().parse::<f64>()) {
                return p.partial_cmp(&q);
            }
            if let (Some(p), Some(q)) = (parse_date(x), parse_date(y)) {
                return Some(p.cmp(&q));
            }
            Some(x.cmp(y))
        }
    }
}

fn eval(n: &Node, req: &dyn RequestView, clock: Clock) -> bool {
    use std::cmp::Ordering::*;
    match n {
        Node::Or(a, b) => eval(a, req, clock) || eval(b, req, clock),
        Node::And(a, b) => eval(a, req, clock) && eval(b, req, clock),
        Node::Not(a) => !eval(a, req, clock),
        Node::Exists(o) => !matches!(value(o, req, clock), Val::Missing),
        Node::Truthy(o) => truthy(&value(o, req, clock)),
        Node::Cmp(a, op, b) => {
            let (x, y) = (value(a, req, clock), value(b, req, clock));
            match compare(&x, &y) {
                None => false,
                Some(o) => match op {
                    Cmp::Eq => o == Equal,
                    Cmp::Ne => o != Equal,
                    Cmp::Lt => o == Less,
                    Cmp::Le => o != Greater,
                    Cmp::Gt => o == Greater,
                    Cmp::Ge => o != Less,
                },
            }
        }
        Node::In(a, items) => {
            let x = value(a, req, clock);
            items
                .iter()
                .any(|i| compare(&x, &value(i, req, clock)) == Some(Equal))
        }
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number: (year, month, day).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats a day number as `YYYY-MM-DD`.
pub fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `YYYY-MM-DD` into days since the epoch.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s[0..4].parse().ok()?;
    let m: u32 = s[5..7].parse().ok()?;
    let d: u32 = s[8..10].parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 || d > 31 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Reject 2025-02-30 and friends.
    (civil_from_days(days) == (y, m, d)).then_some(days)
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS][.frac][Z|±HH:MM]` into Unix seconds.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    let date = parse_date(s.get(..10)?)?;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(date * 86_400);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let hh: i64 = rest.get(0..2)?.parse().ok()?;
    if rest.get(2..3)? != ":" {
        return None;
    }
    let mm: i64 = rest.get(3..5)?.parse().ok()?;
    let mut tail = &rest[5..];
    let mut ss = 0;
    if let Some(t) = tail.strip_prefix(':') {
        ss = t.get(0..2)?.parse().ok()?;
        tail = &t[2..];
    }
    if let Some(t) = tail.strip_prefix('.') {
        tail = t.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match tail {
        "" | "Z" | "z" => 0,
        t => {
            let sign = match t.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = t.get(1..3)?.parse().ok()?;
            let om: i64 = t.get(4..6).or(t.get(3..5))?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(date * 86_400 + hh * 3600 + mm * 60 + ss - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Request;

    const JAN_10: i64 = 1_736_467_200; // 2025-01-10T00:00:00Z

    fn check(src: &str, target: &str) -> bool {
        let mut r = Request::new("GET", target).with_header("X-Debug", "1");
        r.path_params.push(("id".into(), "42".into()));
        Expr::parse(src).unwrap().eval(&r, Clock::at(JAN_10 + 3600))
    }

    #[test]
    fn dates_compare_as_dates() {
        assert!(check("query.date < today", "/?date=2025-01-09"));
        assert!(!check("query.date < today", "/?date=2025-01-10"));
        assert!(check("query.date >= today + 1d", "/?date=2025-01-11"));
        assert!(check("query.date == today-1d", "/?date=2025-01-09"));
        assert!(check("query.date > 2024-12-31", "/?date=2025-01-01"));
        assert!(!check("query.date < today", "/?date=garbage"));
        assert!(!check("query.date < today", "/"));
    }

    #[test]
    fn numbers_compare_numerically() {
        assert!(check("query.page > 9", "/?page=10"));
        assert!(check("query.a < query.b", "/?a=9&b=10"));
        assert!(check("query.a < query.b", "/?a=apple&b=banana"));
        assert!(check("path.id == 42", "/"));
    }

    #[test]
    fn exists_in_and_logic() {
        assert!(check("exists header.x-debug", "/"));
        assert!(!check("exists query.x", "/"));
        assert!(check("query.g in ['daily', 'weekly']", "/?g=weekly"));
        assert!(check("query.g not in ['daily']", "/?g=weekly"));
        assert!(check(
            "not exists query.x and (query.a == 1 or query.b == 2)",
            "/?b=2"
        ));
        assert!(check("header.x-debug", "/"));
        assert!(check("now > 2025-01-10T00:30:00Z", "/"));
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "query.date <",
            "qury.date < today",
            "query.date = 1",
            "(query.a",
            "today + 5x",
            "query < 1",
            "a b",
        ] {
            assert!(Expr::parse(bad).is_err(), "{bad}");
        }
        let e = Expr::parse("qury.date < today").unwrap_err();
        assert!(e.message.contains("did you mean `query`"), "{}", e.message);
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(format_date(JAN_10 / 86_400), "2025-01-10");
        assert_eq!(parse_date("2025-02-30"), None);
        assert_eq!(parse_datetime("2025-01-10T01:00:00+01:00"), Some(JAN_10));
    }
}
