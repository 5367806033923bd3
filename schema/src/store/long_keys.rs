//! Long keys on PostgreSQL.
//!
//! PostgreSQL's B-tree entries hold about 2.7 KB; paths, prefixes and tag values may be
//! 4 KB. Its indexes hold the first 2,000 characters of a path or prefix and the first 500
//! of a tag value (migrations/postgres/…_long_keys), so every query
//! on those columns also states its condition on the truncated key: an equality as an
//! equality of truncations, a range as the (wider) range of truncations, and an order as
//! (truncation, full value), which is the same order. SQLite indexes whole values; the
//! equalities are added there too (a check on rows already found), ranges and orders only
//! on PostgreSQL.
//!

use diesel::prelude::*;

use super::query::prefix_upper_bound;
use super::AnyConnection;

pub(super) fn is_postgres(conn: &AnyConnection) -> bool {
    matches!(conn, AnyConnection::Postgresql(_))
}

pub(super) type Key = diesel::expression::SqlLiteral<diesel::sql_types::Text>;

/// A column PostgreSQL indexes by its first `chars` characters.
pub(super) struct LongKey {
    column: &'static str,
    chars: usize,
}

impl LongKey {
    /// The indexed expression, spelled as the migration spells it (literal constants, so
    /// the planner matches the index).
    pub(super) fn indexed(&self) -> Key {
        diesel::dsl::sql(&format!("substr({}, 1, {})", self.column, self.chars))
    }

    /// `value` cut as the column is cut.
    pub(super) fn cut(&self, value: &str) -> String {
        value.chars().take(self.chars).collect()
    }

    /// `column = value` implies this.
    pub(super) fn eq(&self, value: &str) -> diesel::dsl::Eq<Key, String> {
        self.indexed().eq(self.cut(value))
    }

    /// `column >= value` (or `>`) implies this.
    pub(super) fn ge(&self, value: &str) -> diesel::dsl::GtEq<Key, String> {
        self.indexed().ge(self.cut(value))
    }

    /// `column < value` (or `<=`) implies this.
    pub(super) fn le(&self, value: &str) -> diesel::dsl::LtEq<Key, String> {
        self.indexed().le(self.cut(value))
    }

    /// `column` starting with `start` (an ASCII name) implies this.
    pub(super) fn starts_with(
        &self,
        start: &str,
    ) -> diesel::dsl::And<diesel::dsl::GtEq<Key, String>, diesel::dsl::LtEq<Key, String>> {
        self.ge(start).and(self.le(&prefix_upper_bound(start)))
    }
}

/// Prefixes and paths are ASCII: 2,000 bytes.
pub(super) const PREFIX_KEY: LongKey = LongKey {
    column: "\"prefixes\".\"prefix\"",
    chars: 2000,
};
pub(super) const PATH_KEY: LongKey = LongKey {
    column: "\"streams\".\"path\"",
    chars: 2000,
};
/// Tag values are UTF-8, up to four bytes a character.
pub(super) const TAG_VALUE_KEY: LongKey = LongKey {
    column: "\"stream_tags\".\"value\"",
    chars: 500,
};
