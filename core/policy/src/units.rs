//! Durations, sizes and jitter: the unit-bearing scalars of the policy language.
//!
//! They are written as strings with a unit suffix (`30s`, `5m`, `256MiB`, `10%`) so that a
//! policy never has to guess whether `300` means seconds or milliseconds.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// Why a duration, size or jitter string was rejected. The message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("empty {0}; write a number followed by a unit, e.g. {1}")]
    Empty(&'static str, &'static str),
    #[error("`{0}` has no unit; write e.g. `{0}s` (units: ms, s, m, h, d)")]
    MissingDurationUnit(String),
    #[error("`{0}` has no unit; write e.g. `{0}KiB` (units: B, KB, KiB, MB, MiB, GB, GiB)")]
    MissingSizeUnit(String),
    #[error("unknown duration unit `{unit}` in `{input}`; use ms, s, m, h or d")]
    DurationUnit { input: String, unit: String },
    #[error("unknown size unit `{unit}` in `{input}`; use B, KB, KiB, MB, MiB, GB or GiB")]
    SizeUnit { input: String, unit: String },
    #[error("`{0}` is not a number followed by a unit")]
    NotANumber(String),
    #[error("`{0}` is too large")]
    Overflow(String),
    #[error("jitter `{0}` must be a percentage below 100% (e.g. `10%`) or a duration (e.g. `30s`)")]
    Jitter(String),
}

fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '_'))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    (&s[..end], s[end..].trim_start())
}

fn parse_u64(digits: &str, input: &str) -> Result<u64, UnitError> {
    if digits.is_empty() {
        return Err(UnitError::NotANumber(input.to_owned()));
    }
    let cleaned: String = digits.chars().filter(|c| *c != '_').collect();
    cleaned
        .parse::<u64>()
        .map_err(|_| UnitError::Overflow(input.to_owned()))
}

/// A span of time written with a unit: `250ms`, `30s`, `5m`, `2h`, `1d`, or a sum such as
/// `1h30m`. Stored with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

impl Duration {
    /// The zero duration (`0s`): for a TTL it means "do not store".
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    /// The standard-library duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// Whole seconds (rounded down).
    pub const fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// Milliseconds.
    pub fn as_millis(self) -> u64 {
        self.0.as_millis() as u64
    }

    /// True for `0s`.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = UnitError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Err(UnitError::Empty("duration", "`30s`"));
        }
        let mut rest = s;
        let mut total_ms: u64 = 0;
        while !rest.is_empty() {
            let (digits, after) = split_number(rest);
            let n = parse_u64(digits, input)?;
            let unit_end = after
                .char_indices()
                .find(|(_, c)| c.is_ascii_digit())
                .map(|(i, _)| i)
                .unwrap_or(after.len());
            let unit = after[..unit_end].trim();
            if unit.is_empty() {
                if s == digits && n == 0 {
                    return Ok(Duration::ZERO);
                }
                return Err(UnitError::MissingDurationUnit(input.trim().to_owned()));
            }
            let factor: u64 = match unit {
                "ms" => 1,
                "s" | "sec" | "secs" => 1_000,
                "m" | "min" | "mins" => 60_000,
                "h" | "hr" | "hrs" => 3_600_000,
                "d" | "day" | "days" => 86_400_000,
                _ => {
                    return Err(UnitError::DurationUnit {
                        input: input.trim().to_owned(),
                        unit: unit.to_owned(),
                    });
                }
            };
            let part = n
                .checked_mul(factor)
                .ok_or_else(|| UnitError::Overflow(input.to_owned()))?;
            total_ms = total_ms
                .checked_add(part)
                .ok_or_else(|| UnitError::Overflow(input.to_owned()))?;
            rest = &after[unit_end..];
        }
        Ok(Duration::from_millis(total_ms))
    }
}

impl fmt::Display for Duration {
    /// The shortest exact form: `1d`, `90m`, `1500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

/// A size in bytes written with a unit: `512B`, `1KiB`, `256MiB`, `1GB`. `K`/`KB` are decimal
/// (1000), `KiB` binary (1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Size(u64);

impl Size {
    /// A size of `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        Size(bytes)
    }

    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = UnitError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Err(UnitError::Empty("size", "`1KiB`"));
        }
        let (digits, unit) = split_number(s);
        let n = parse_u64(digits, input)?;
        if unit.is_empty() {
            if n == 0 {
                return Ok(Size(0));
            }
            return Err(UnitError::MissingSizeUnit(s.to_owned()));
        }
        let factor: u64 = match unit {
            "B" | "b" => 1,
            "K" | "KB" | "kB" => 1_000,
            "KiB" => 1 << 10,
            "M" | "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "G" | "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            _ => {
                return Err(UnitError::SizeUnit {
                    input: s.to_owned(),
                    unit: unit.to_owned(),
                });
            }
        };
        n.checked_mul(factor)
            .map(Size)
            .ok_or_else(|| UnitError::Overflow(s.to_owned()))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if b >= size && b.is_multiple_of(size) {
                return write!(f, "{}{unit}", b / size);
            }
        }
        write!(f, "{b}B")
    }
}

/// Random-looking spread added to a TTL so that entries written together do not expire
/// together: a percentage of the TTL (`10%`) or an absolute duration (`30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Up to this percentage of the TTL is added (0–99).
    Percent(u8),
    /// Up to this duration is added.
    Fixed(Duration),
}

impl Jitter {
    /// The largest extra time this jitter adds to `ttl`.
    pub fn max_extra(self, ttl: Duration) -> Duration {
        match self {
            Jitter::Percent(p) => Duration::from_millis(ttl.as_millis() / 100 * u64::from(p)),
            Jitter::Fixed(d) => d,
        }
    }
}

impl FromStr for Jitter {
    type Err = UnitError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if let Some(p) = s.strip_suffix('%') {
            return match p.trim().parse::<u8>() {
                Ok(n) if n < 100 => Ok(Jitter::Percent(n)),
                _ => Err(UnitError::Jitter(s.to_owned())),
            };
        }
        s.parse::<Duration>()
            .map(Jitter::Fixed)
            .map_err(|_| UnitError::Jitter(s.to_owned()))
    }
}

impl fmt::Display for Jitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Jitter::Percent(p) => write!(f, "{p}%"),
            Jitter::Fixed(d) => d.fmt(f),
        }
    }
}

/// A corrected spelling of a duration written with words: `10 minutes` → `10m`,
/// `2 weeks` → `14d`, `300` → `300s`.
pub fn suggest_duration(input: &str) -> Option<String> {
    let s = input.trim();
    let (digits, unit) = split_number(s);
    let n: u64 = digits.replace('_', "").parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let out = match unit.as_str() {
        "" => format!("{n}s"),
        u if u.starts_with("ms") || u.starts_with("milli") => format!("{n}ms"),
        u if u.starts_with("sec") || u == "s" => format!("{n}s"),
        u if u.starts_with("min") || u == "m" => format!("{n}m"),
        u if u.starts_with('h') => format!("{n}h"),
        u if u.starts_with('d') => format!("{n}d"),
        u if u.starts_with('w') => format!("{}d", n * 7),
        _ => return None,
    };
    (out.parse::<Duration>().is_ok() && out != s).then_some(out)
}

/// A corrected spelling of a size: `1kib` → `1KiB`, `10 mb` → `10MB`, `512` → `512B`.
pub fn suggest_size(input: &str) -> Option<String> {
    let s = input.trim();
    let (digits, unit) = split_number(s);
    let n: u64 = digits.replace('_', "").parse().ok()?;
    let out = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" | "byte" => format!("{n}B"),
        "k" | "kb" => format!("{n}KB"),
        "kib" => format!("{n}KiB"),
        "m" | "mb" => format!("{n}MB"),
        "mib" => format!("{n}MiB"),
        "g" | "gb" => format!("{n}GB"),
        "gib" => format!("{n}GiB"),
        _ => return None,
    };
    (out != s).then_some(out)
}

macro_rules! string_unit {
    ($ty:ty, $name:literal, $format:literal, $pattern:literal, $desc:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "format": $format,
                    "pattern": $pattern,
                    "description": $desc,
                })
            }
        }
    };
}

string_unit!(
    Duration,
    "Duration",
    "duration",
    "^\\s*[0-9][0-9_]*\\s*(ms|s|sec|secs|m|min|mins|h|hr|hrs|d|day|days)?(\\s*[0-9][0-9_]*\\s*(ms|s|sec|secs|m|min|mins|h|hr|hrs|d|day|days))*\\s*$",
    "A duration: a number and a unit (ms, s, m, h, d), e.g. `30s`, `5m`, `2h`, `1d`, `1h30m`."
);
string_unit!(
    Size,
    "Size",
    "size",
    "^\\s*[0-9][0-9_]*\\s*(B|b|K|KB|kB|KiB|M|MB|MiB|G|GB|GiB)?\\s*$",
    "A size: a number and a unit (B, KB, KiB, MB, MiB, GB, GiB), e.g. `1KiB`, `256MiB`."
);
string_unit!(
    Jitter,
    "Jitter",
    "jitter",
    "^\\s*([0-9]{1,2}\\s*%|[0-9][0-9_]*\\s*(ms|s|m|h|d))\\s*$",
    "Extra random-looking time added to a TTL: a percentage of it (`10%`) or a duration (`30s`)."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!("30s".parse::<Duration>().unwrap(), Duration::from_secs(30));
        assert_eq!("5m".parse::<Duration>().unwrap(), Duration::from_secs(300));
        assert_eq!("2h".parse::<Duration>().unwrap(), Duration::from_secs(7200));
        assert_eq!(
            "1d".parse::<Duration>().unwrap(),
            Duration::from_secs(86400)
        );
        assert_eq!(
            "1h30m".parse::<Duration>().unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            "250ms".parse::<Duration>().unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!("0".parse::<Duration>().unwrap(), Duration::ZERO);
    }

    #[test]
    fn duration_errors_say_what_to_write() {
        let e = "30".parse::<Duration>().unwrap_err().to_string();
        assert_eq!(
            e,
            "`30` has no unit; write e.g. `30s` (units: ms, s, m, h, d)"
        );
        let e = "5w".parse::<Duration>().unwrap_err().to_string();
        assert_eq!(e, "unknown duration unit `w` in `5w`; use ms, s, m, h or d");
        assert!("fast".parse::<Duration>().is_err());
        assert!("".parse::<Duration>().is_err());
    }

    #[test]
    fn durations_display_shortest() {
        assert_eq!(Duration::from_secs(86400).to_string(), "1d");
        assert_eq!(Duration::from_secs(5400).to_string(), "90m");
        assert_eq!(Duration::from_millis(1500).to_string(), "1500ms");
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest_duration("10 minutes").as_deref(), Some("10m"));
        assert_eq!(suggest_duration("2 weeks").as_deref(), Some("14d"));
        assert_eq!(suggest_duration("300").as_deref(), Some("300s"));
        assert_eq!(suggest_duration("fast"), None);
        assert_eq!(suggest_size("1kib").as_deref(), Some("1KiB"));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!("1KiB".parse::<Size>().unwrap().bytes(), 1024);
        assert_eq!("256MiB".parse::<Size>().unwrap().bytes(), 256 << 20);
        assert_eq!("1KB".parse::<Size>().unwrap().bytes(), 1000);
        assert_eq!("512B".parse::<Size>().unwrap().bytes(), 512);
        assert_eq!(Size::from_bytes(1024).to_string(), "1KiB");
        let e = "1kib".parse::<Size>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown size unit `kib` in `1kib`; use B, KB, KiB, MB, MiB, GB or GiB"
        );
        assert!("1024".parse::<Size>().is_err());
    }

    #[test]
    fn jitter_parses() {
        assert_eq!("10%".parse::<Jitter>().unwrap(), Jitter::Percent(10));
        assert_eq!(
            "30s".parse::<Jitter>().unwrap(),
            Jitter::Fixed(Duration::from_secs(30))
        );
        assert!("150%".parse::<Jitter>().is_err());
        assert_eq!(
            Jitter::Percent(10).max_extra(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
    }
}
