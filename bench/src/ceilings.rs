//! The group-commit bound of refresh's writes, shared by the main benchmark and the bearer
//! benchmark.

use std::time::{Duration, Instant};

/// Rotations per transaction in the group-commit measurement: the refresh scenario's
/// concurrency, so a batch is every refresh in flight.
pub const ROTATION_BATCH: usize = 8;

/// The upper bound of group commit for refresh's writes (see [`StoreCeilings`]), through
/// sea-orm on sqlx with the pool Keyward uses (one connection on SQLite).
/// `batch` rotations per transaction.
pub async fn batched_rotations(url: &str, window: Duration, batch: usize) -> anyhow::Result<f64> {
    use sea_orm::{
        ConnectOptions, ConnectionTrait, Database, DbBackend, Statement, TransactionTrait, Value,
    };
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(if url.starts_with("sqlite:") { 1 } else { 16 })
        .sqlx_logging(false);
    let db = Database::connect(opts).await?;
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            format!("SELECT id, session_id FROM refresh_tokens LIMIT {batch}"),
        ))
        .await?;
    let pairs: Vec<(uuid::Uuid, uuid::Uuid)> = rows
        .iter()
        .map(|r| Ok((r.try_get("", "id")?, r.try_get("", "session_id")?)))
        .collect::<Result<_, sea_orm::DbErr>>()?;
    anyhow::ensure!(pairs.len() == batch, "too few refresh tokens to rotate");
    // Placeholders: $n on PostgreSQL, ? on SQLite.
    let args = |count: usize| -> Vec<String> {
        (1..=count)
            .map(|n| {
                if backend == DbBackend::Postgres {
                    format!("${n}")
                } else {
                    "?".to_owned()
                }
            })
            .collect()
    };
    let b = batch;
    let p = args(1 + b);
    let mark = format!(
        "UPDATE refresh_tokens SET rotated_at = {} WHERE id IN ({})",
        p[0],
        p[1..].join(", ")
    );
    let p = args(4 * b);
    let insert = format!(
        "INSERT INTO refresh_tokens (id, session_id, token_hash, created_at) VALUES {}",
        p.chunks(4)
            .map(|c| format!("({})", c.join(", ")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let p = args(2 + b);
    let touch = format!(
        "UPDATE sessions SET last_used_at = {}, idle_expires_at = {} WHERE id IN ({})",
        p[0],
        p[1],
        p[2..].join(", ")
    );
    let deadline = Instant::now() + window;
    let started = Instant::now();
    let mut rotations = 0u64;
    while Instant::now() < deadline {
        let now = chrono::Utc::now();
        let ids = pairs.iter().map(|(id, _)| Value::from(*id));
        let sessions = pairs.iter().map(|(_, s)| Value::from(*s));
        let tx = db.begin().await?;
        let mut v = vec![Value::from(now)];
        v.extend(ids);
        tx.execute_raw(Statement::from_sql_and_values(backend, &mark, v))
            .await?;
        let mut v = Vec::new();
        for (_, session) in &pairs {
            let id = uuid::Uuid::new_v4();
            v.extend([
                Value::from(id),
                Value::from(*session),
                Value::from(id.simple().to_string()),
                Value::from(now),
            ]);
        }
        tx.execute_raw(Statement::from_sql_and_values(backend, &insert, v))
            .await?;
        let mut v = vec![
            Value::from(now),
            Value::from(now + chrono::Duration::days(14)),
        ];
        v.extend(sessions);
        tx.execute_raw(Statement::from_sql_and_values(backend, &touch, v))
            .await?;
        tx.commit().await?;
        rotations += batch as u64;
    }
    Ok(rotations as f64 / started.elapsed().as_secs_f64())
}
