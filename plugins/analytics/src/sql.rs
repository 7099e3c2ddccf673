//! One query interface over SQLite and PostgreSQL.
//!
//! The store writes each query once, in the SQL both engines share (`?N` parameters,
//! `CAST`, `CASE`, row values, `RETURNING`), and asks the [`Dialect`] for the few
//! expressions they spell differently (week starts, day differences). Rows come back as
//! [`Cell`]s, so the code that turns them into answers does not know which engine ran.

use std::collections::HashMap;

use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use rusqlite::types::ValueRef;

use crate::error::AnalyticsError;

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The embedded default.
    Sqlite,
    /// A server named by `database_url`.
    Postgres,
}

impl Dialect {
    /// The Monday that starts the week of a `YYYY-MM-DD` text column, as text.
    pub fn week_start(self, column: &str) -> String {
        match self {
            // `weekday 1` moves forward to the next Monday (or stays): back 6 days first.
            Self::Sqlite => format!("date({column}, '-6 days', 'weekday 1')"),
            Self::Postgres => {
                format!("to_char(date_trunc('week', CAST({column} AS DATE)), 'YYYY-MM-DD')")
            }
        }
    }

    /// Whole days from the date `earlier` to the date `later` (both `YYYY-MM-DD` text).
    pub fn days_between(self, later: &str, earlier: &str) -> String {
        match self {
            Self::Sqlite => format!("CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"),
            Self::Postgres => format!("(CAST({later} AS DATE) - CAST({earlier} AS DATE))"),
        }
    }

    /// Days since 1970-01-01 of a `YYYY-MM-DD` text column, as a 64-bit integer.
    pub fn epoch_day(self, column: &str) -> String {
        match self {
            Self::Sqlite => format!("CAST(julianday({column}) - 2440587.5 AS INTEGER)"),
            Self::Postgres => format!("CAST(CAST({column} AS DATE) - DATE '1970-01-01' AS BIGINT)"),
        }
    }

    /// What a `SELECT` inside a write ends with so the rows it read stay as read until the
    /// commit: `FOR UPDATE` in PostgreSQL; nothing in SQLite, whose `BEGIN IMMEDIATE`
    /// already lets one writer in at a time.
    pub fn lock_rows(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }

    fn begin(self) -> &'static str {
        match self {
            // Take the write lock now: a deferred transaction that reads first can fail to
            // upgrade when another writer got in between.
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }
}

/// A query parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(String),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<i32> for Arg {
    fn from(v: i32) -> Self {
        Self::Int(v.into())
    }
}

impl From<u32> for Arg {
    fn from(v: u32) -> Self {
        Self::Int(v.into())
    }
}

impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Self::Real(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}

impl<T: Into<Arg>> From<Option<T>> for Arg {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// The parameters of a query: `args![tenant, day, None::<String>]`.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        &[$($crate::sql::Arg::from($a)),*][..]
    };
}

/// One value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// An integer (booleans too).
    Int(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(String),
}

/// A result row.
#[derive(Debug, Clone)]
pub struct Row(Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell, AnalyticsError> {
        self.0
            .get(i)
            .ok_or_else(|| AnalyticsError::internal(format!("database row has no column {i}")))
    }

    fn mismatch(&self, i: usize, want: &str) -> AnalyticsError {
        AnalyticsError::internal(format!(
            "database column {i} is {:?}, expected {want}",
            self.0.get(i)
        ))
    }

    /// An integer column that may be NULL.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, AnalyticsError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            _ => Err(self.mismatch(i, "an integer")),
        }
    }

    /// An integer column.
    pub fn int(&self, i: usize) -> Result<i64, AnalyticsError> {
        self.opt_int(i)?
            .ok_or_else(|| self.mismatch(i, "a non-null integer"))
    }

    /// A numeric column that may be NULL (integers widen).
    pub fn opt_real(&self, i: usize) -> Result<Option<f64>, AnalyticsError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Real(v) => Ok(Some(*v)),
            Cell::Int(v) => Ok(Some(*v as f64)),
            Cell::Text(_) => Err(self.mismatch(i, "a number")),
        }
    }

    /// A numeric column.
    pub fn real(&self, i: usize) -> Result<f64, AnalyticsError> {
        self.opt_real(i)?
            .ok_or_else(|| self.mismatch(i, "a non-null number"))
    }

    /// A text column that may be NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, AnalyticsError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Text(v) => Ok(Some(v.clone())),
            _ => Err(self.mismatch(i, "text")),
        }
    }

    /// A text column.
    pub fn text(&self, i: usize) -> Result<String, AnalyticsError> {
        self.opt_text(i)?
            .ok_or_else(|| self.mismatch(i, "non-null text"))
    }
}

/// A connection to either engine. Queries take `&mut self` because a PostgreSQL client
/// needs it; SQLite connections keep their prepared statements the same way.
pub trait Conn {
    /// The engine.
    fn dialect(&self) -> Dialect;
    /// Runs a query and collects its rows.
    fn query(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, AnalyticsError>;
    /// Runs a statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, AnalyticsError>;
    /// Runs several statements without parameters.
    fn batch(&mut self, sql: &str) -> Result<(), AnalyticsError>;
}

impl dyn Conn + '_ {
    /// The first row, if any.
    pub fn query_opt(&mut self, sql: &str, args: &[Arg]) -> Result<Option<Row>, AnalyticsError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The one row a query always returns (an aggregate).
    pub fn query_one(&mut self, sql: &str, args: &[Arg]) -> Result<Row, AnalyticsError> {
        self.query_opt(sql, args)?
            .ok_or_else(|| AnalyticsError::internal("database query returned no row"))
    }

    /// Runs `f` in a transaction: committed when it returns `Ok`, rolled back otherwise, so
    /// a failed write leaves nothing behind.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, AnalyticsError>,
    ) -> Result<T, AnalyticsError> {
        self.batch(self.dialect().begin())?;
        match f(self) {
            Ok(v) => {
                self.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                if let Err(r) = self.batch("ROLLBACK") {
                    tracing::error!(error = %r, "analytics: rolling back a failed write failed");
                }
                Err(e)
            }
        }
    }
}

impl Conn for rusqlite::Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn query(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, AnalyticsError> {
        sqlite_query(self, sql, args)
    }

    fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, AnalyticsError> {
        Ok(self
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(args))? as u64)
    }

    fn batch(&mut self, sql: &str) -> Result<(), AnalyticsError> {
        Ok(self.execute_batch(sql)?)
    }
}

/// A SQLite connection borrowed shared, so statements prepared on it can be held beside it
/// (the generator's bulk inserts).
pub struct SqliteRef<'a>(pub &'a rusqlite::Connection);

impl Conn for SqliteRef<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn query(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, AnalyticsError> {
        sqlite_query(self.0, sql, args)
    }

    fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, AnalyticsError> {
        Ok(self
            .0
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(args))? as u64)
    }

    fn batch(&mut self, sql: &str) -> Result<(), AnalyticsError> {
        Ok(self.0.execute_batch(sql)?)
    }
}

fn sqlite_query(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[Arg],
) -> Result<Vec<Row>, AnalyticsError> {
    let mut st = conn.prepare_cached(sql)?;
    let n = st.column_count();
    let mut rows = st.query(rusqlite::params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut cells = Vec::with_capacity(n);
        for i in 0..n {
            cells.push(match r.get_ref(i)? {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(v) => Cell::Int(v),
                ValueRef::Real(v) => Cell::Real(v),
                ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(_) => {
                    return Err(AnalyticsError::internal(format!(
                        "database column {i} is a blob"
                    )));
                }
            });
        }
        out.push(Row(cells));
    }
    Ok(out)
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value};
        Ok(match self {
            Self::Null => ToSqlOutput::Owned(Value::Null),
            Self::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            Self::Real(v) => ToSqlOutput::Owned(Value::Real(*v)),
            Self::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
        })
    }
}

/// A PostgreSQL connection with its prepared statements (the store's queries are few and
/// repeated, so each is parsed and planned once per connection). A connection the server
/// closed (a restart, an administrator) is opened again by the next call.
pub struct PgConn {
    client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
    config: postgres::Config,
    schema: String,
}

impl PgConn {
    /// Connects and makes `schema` the only one unqualified names resolve in.
    pub fn connect(config: &postgres::Config, schema: &str) -> Result<Self, AnalyticsError> {
        Ok(Self {
            client: Self::open(config, schema)?,
            statements: HashMap::new(),
            config: config.clone(),
            schema: schema.to_owned(),
        })
    }

    fn open(config: &postgres::Config, schema: &str) -> Result<postgres::Client, AnalyticsError> {
        // Named after the schema, so an operator can tell these sessions apart.
        let mut config = config.clone();
        config.application_name(&format!("larder analytics {schema}"));
        let mut client = config
            .connect(postgres::NoTls)
            .map_err(|e| AnalyticsError::internal(format!("cannot connect to PostgreSQL: {e}")))?;
        // Notices (such as "schema already exists") are not worth a log line each; the
        // aggregations sort a few hundred thousand rows, more than the 4 MB default keeps in
        // memory.
        client
            .batch_execute(&format!(
                "SET client_min_messages = warning; SET work_mem = '64MB';
                 CREATE SCHEMA IF NOT EXISTS {s}; SET search_path TO {s}",
                s = quote_ident(schema)
            ))
            .map_err(pg_error)?;
        Ok(client)
    }

    /// Opens the connection again if the server closed it. The call that met the closing
    /// has failed already; this one and the next get a fresh session.
    fn alive(&mut self) -> Result<(), AnalyticsError> {
        if self.client.is_closed() {
            tracing::warn!(schema = %self.schema, "analytics: the PostgreSQL connection was closed; opening it again");
            self.client = Self::open(&self.config, &self.schema)?;
            self.statements.clear();
        }
        Ok(())
    }

    fn prepare(&mut self, sql: &str) -> Result<postgres::Statement, AnalyticsError> {
        self.alive()?;
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self
            .client
            .prepare(&to_dollar_params(sql))
            .map_err(pg_error)?;
        self.statements.insert(sql.to_owned(), st.clone());
        Ok(st)
    }

    /// Sends `data` (rows in COPY text format) into `table (columns)`.
    pub fn copy_in(
        &mut self,
        table: &str,
        columns: &str,
        data: &[u8],
    ) -> Result<(), AnalyticsError> {
        use std::io::Write as _;
        self.alive()?;
        let mut w = self
            .client
            .copy_in(&format!("COPY {table} ({columns}) FROM STDIN"))
            .map_err(pg_error)?;
        w.write_all(data)
            .map_err(|e| AnalyticsError::internal(format!("COPY into {table}: {e}")))?;
        w.finish().map_err(pg_error)?;
        Ok(())
    }
}

impl Conn for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn query(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, AnalyticsError> {
        let st = self.prepare(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        let rows = self.client.query(&st, &params).map_err(pg_error)?;
        rows.iter().map(pg_row).collect()
    }

    fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, AnalyticsError> {
        let st = self.prepare(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        self.client.execute(&st, &params).map_err(pg_error)
    }

    fn batch(&mut self, sql: &str) -> Result<(), AnalyticsError> {
        self.alive()?;
        self.client.batch_execute(sql).map_err(pg_error)
    }
}

fn pg_error(e: postgres::Error) -> AnalyticsError {
    match e.as_db_error() {
        Some(db) => AnalyticsError::internal(format!("database error: {}", db.message())),
        None => AnalyticsError::internal(format!("database error: {e}")),
    }
}

fn pg_row(r: &postgres::Row) -> Result<Row, AnalyticsError> {
    let mut cells = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let cell = match *ty {
            Type::INT8 => r.try_get::<_, Option<i64>>(i).map(|v| v.map(Cell::Int)),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|v| Cell::Int(v.into()))),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)
                .map(|v| v.map(|v| Cell::Int(v.into()))),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|v| Cell::Int(v.into()))),
            Type::FLOAT8 => r.try_get::<_, Option<f64>>(i).map(|v| v.map(Cell::Real)),
            Type::FLOAT4 => r
                .try_get::<_, Option<f32>>(i)
                .map(|v| v.map(|v| Cell::Real(v.into()))),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                r.try_get::<_, Option<String>>(i).map(|v| v.map(Cell::Text))
            }
            _ => {
                // NUMERIC (what SUM and AVG of integers give) has no lossless Rust type here:
                // the query casts instead.
                return Err(AnalyticsError::internal(format!(
                    "database column `{}` has type {ty}; cast it to BIGINT or DOUBLE PRECISION",
                    col.name()
                )));
            }
        };
        cells.push(cell.map_err(pg_error)?.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

impl ToSql for Arg {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // PostgreSQL infers each parameter's type from where it stands (an INTEGER
        // expression, a TEXT column); convert to that type rather than fail.
        match self {
            Self::Null => Ok(IsNull::Yes),
            Self::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => v.to_string().to_sql(ty, out),
            },
            Self::Real(v) => match *ty {
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                Type::FLOAT8 => v.to_sql(ty, out),
                _ => v.to_string().to_sql(ty, out),
            },
            Self::Text(v) => v.as_str().to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::FLOAT8
                | Type::FLOAT4
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
        )
    }

    to_sql_checked!();
}

/// `"name"`, with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Rewrites SQLite-style parameters (`?N`, and bare `?` numbered after the largest so far,
/// as SQLite numbers them) into PostgreSQL's `$N`, leaving string literals alone.
pub fn to_dollar_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut in_quote = false;
    let mut largest = 0u32;
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_quote = !in_quote;
            out.push(c);
            continue;
        }
        if c != '?' || in_quote {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let n = if digits.is_empty() {
            largest + 1
        } else {
            digits.parse().unwrap_or(largest + 1)
        };
        largest = largest.max(n);
        out.push('$');
        out.push_str(&n.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_as_sqlite_numbers_them() {
        assert_eq!(
            to_dollar_params("a = ? AND b = ? AND c = ?1 AND d = '?' AND e = ?"),
            "a = $1 AND b = $2 AND c = $1 AND d = '?' AND e = $3"
        );
        assert_eq!(
            to_dollar_params("x BETWEEN ?2 AND ?4 AND y = ?"),
            "x BETWEEN $2 AND $4 AND y = $5"
        );
    }
}
