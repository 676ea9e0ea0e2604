//! The values that cross between the store's SQL and its two back ends: the
//! three column types Kiln uses (BIGINT, TEXT, BLOB/BYTEA), each possibly
//! NULL. NULLs keep their type, because PostgreSQL checks the type of every
//! parameter, NULL included.

use crate::db::DbError;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}
impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(Some(i64::from(v)))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(Some(v.to_owned()))
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(Some(v.clone()))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(Some(v))
    }
}
impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Self {
        Value::Text(v.map(str::to_owned))
    }
}
impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Value::Text(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Blob(Some(v.to_vec()))
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(Some(v))
    }
}

/// A statement and its parameters. The SQL uses PostgreSQL's `$1…$n`
/// placeholders; the SQLite back end rewrites them to `?1…?n`.
#[derive(Clone, Debug)]
pub struct Stmt {
    pub sql: &'static str,
    pub params: Vec<Value>,
}

/// `stmt!("UPDATE … WHERE id = $1", id)`: a statement with its parameters.
#[macro_export]
macro_rules! stmt {
    ($sql:expr $(, $param:expr)* $(,)?) => {
        $crate::db::Stmt { sql: $sql, params: vec![$($crate::db::Value::from($param)),*] }
    };
}

/// One result row, with its column names.
#[derive(Clone, Debug)]
pub struct Row {
    pub(crate) columns: std::sync::Arc<[String]>,
    pub(crate) values: Vec<Value>,
}

impl Row {
    fn value(&self, column: &str) -> Result<&Value, DbError> {
        self.columns
            .iter()
            .position(|c| c == column)
            .map(|i| &self.values[i])
            .ok_or_else(|| DbError::Decode(format!("no column {column}")))
    }

    pub fn opt_i64(&self, column: &str) -> Result<Option<i64>, DbError> {
        match self.value(column)? {
            Value::Int(v) => Ok(*v),
            Value::Text(None) | Value::Blob(None) => Ok(None),
            other => Err(DbError::Decode(format!(
                "{column}: expected an integer, got {other:?}"
            ))),
        }
    }

    pub fn i64(&self, column: &str) -> Result<i64, DbError> {
        self.opt_i64(column)?
            .ok_or_else(|| DbError::Decode(format!("{column} is NULL")))
    }

    pub fn opt_text(&self, column: &str) -> Result<Option<String>, DbError> {
        match self.value(column)? {
            Value::Text(v) => Ok(v.clone()),
            Value::Int(None) | Value::Blob(None) => Ok(None),
            other => Err(DbError::Decode(format!(
                "{column}: expected text, got {other:?}"
            ))),
        }
    }

    pub fn text(&self, column: &str) -> Result<String, DbError> {
        self.opt_text(column)?
            .ok_or_else(|| DbError::Decode(format!("{column} is NULL")))
    }

    pub fn opt_blob(&self, column: &str) -> Result<Option<Vec<u8>>, DbError> {
        match self.value(column)? {
            Value::Blob(v) => Ok(v.clone()),
            Value::Int(None) | Value::Text(None) => Ok(None),
            other => Err(DbError::Decode(format!(
                "{column}: expected bytes, got {other:?}"
            ))),
        }
    }

    pub fn blob(&self, column: &str) -> Result<Vec<u8>, DbError> {
        self.opt_blob(column)?
            .ok_or_else(|| DbError::Decode(format!("{column} is NULL")))
    }
}
