//! Values bound as one list, so that a query has one statement text whatever their count.

use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{ColumnTrait, DbBackend};
use uuid::Uuid;

/// Groups of values (refresh tokens, users, outbox rows) up to this many are read and written
/// with a placeholder per value: a statement text per size, few enough for sqlx's cache of 100
/// prepared statements per connection. Larger ones (a stampede's groups, up to 256) bind
/// their values as one list, one text for every size. The list form measured slower for the
/// small groups of 8 clients on PostgreSQL, and faster for 64 clients' groups.
pub(crate) const ROWS_INLINE: usize = 16;

/// `column` among `ids`; `quoted` is its name in SQL (`"table"."column"`). Over
/// [`ROWS_INLINE`] ids they go as one value: a comma-joined text on PostgreSQL, a JSON array
/// of the 16-byte blobs' hex on SQLite.
pub(crate) fn uuid_among(
    backend: DbBackend,
    column: impl ColumnTrait,
    quoted: &str,
    ids: &[Uuid],
) -> SimpleExpr {
    if ids.len() <= ROWS_INLINE {
        column.is_in(ids.iter().copied())
    } else if backend == DbBackend::Postgres {
        let list: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        Expr::cust_with_values(
            format!("{quoted} = ANY(string_to_array($1, ',')::uuid[])"),
            [list.join(",")],
        )
    } else {
        let list: Vec<String> = ids.iter().map(|u| u.simple().to_string()).collect();
        Expr::cust_with_values(
            format!("{quoted} IN (SELECT unhex(value) FROM json_each(?))"),
            [serde_json::Value::from(list).to_string()],
        )
    }
}
