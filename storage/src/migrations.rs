//! Schema migrations. Each runs in one transaction on every backend; none is ever rolled back
//! (`down` refuses), so a deployed schema only moves forward.

use std::collections::{BTreeMap, HashMap, HashSet};

use keyward_messages::Email;
use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;
use uuid::Uuid;

use crate::accounts::EmailConflictReason;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(M0001Initial),
            Box::new(M0002LoginFailures),
            Box::new(M0003AuditLog),
            Box::new(M0004CanonicalEmail),
            Box::new(crate::profiles::migration::M0005Profiles),
            Box::new(crate::search::migration::M0006ProfileSearch),
            Box::new(crate::access::migration::M0007Access),
            Box::new(crate::search::migration::M0008ProfileSearchTierIndexes),
            Box::new(crate::notify::migration::M0009Notify),
            Box::new(crate::notify::migration::M0010InboxUnread),
            Box::new(crate::profiles::migration::M0011PhoneVerifications),
            Box::new(crate::mfa::migration::M0012Mfa),
            Box::new(crate::mfa::migration::M0013MfaCodes),
            Box::new(crate::mfa::migration::M0014Webauthn),
            Box::new(crate::federation::migration::M0015Federation),
            Box::new(crate::federation::migration_links::M0016OAuthLinks),
            Box::new(crate::retention::migration::M0017Retention),
            Box::new(crate::keys::migration::M0018KeyLead),
            Box::new(crate::audit::migration::M0019AuditClientActor),
            Box::new(crate::search::migration::M0020ProfileSearchWithoutRowid),
            Box::new(crate::search::migration::M0021ProfileSearchVocabAdded),
        ]
    }
}

// NOTE: names are explicit: DeriveMigrationName names a migration after its module, so two
// migrations in one file would share a name. A name, once released, never changes.
struct M0001Initial;

impl MigrationName for M0001Initial {
    fn name(&self) -> &str {
        "m0001_initial"
    }
}

pub(crate) fn uuid_pk(c: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(c))
        .uuid()
        .not_null()
        .primary_key()
        .to_owned()
}
pub(crate) fn uuid_col(c: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(c)).uuid().not_null().to_owned()
}
pub(crate) fn text(c: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(c)).text().not_null().to_owned()
}
pub(crate) fn text_null(c: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(c)).text().null().to_owned()
}
pub(crate) fn ts(c: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(c))
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}
pub(crate) fn ts_null(c: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(c))
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}
pub(crate) fn boolean(c: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(c))
        .boolean()
        .not_null()
        .default(false)
        .to_owned()
}
pub(crate) fn table(name: &str, cols: Vec<ColumnDef>) -> TableCreateStatement {
    let mut t = Table::create();
    t.table(Alias::new(name));
    for c in cols {
        t.col(c);
    }
    t.to_owned()
}
pub(crate) fn index(table: &str, name: &str, cols: &[&str], unique: bool) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(Alias::new(table));
    for c in cols {
        i.col(Alias::new(*c));
    }
    if unique {
        i.unique();
    }
    i.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for M0001Initial {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(table(
            "users",
            vec![
                uuid_pk("id"),
                text("email"),
                text("email_normalized"),
                text_null("username"),
                text_null("username_normalized"),
                text("password_hash"),
                boolean("email_verified"),
                text("locale"),
                boolean("blocked"),
                ts("created_at"),
                ts("updated_at"),
            ],
        ))
        .await?;
        // NOTE: uniqueness on the lower-cased copies makes email and username
        // case-insensitively unique on SQLite and PostgreSQL alike.
        m.create_index(index(
            "users",
            "users_email_normalized_key",
            &["email_normalized"],
            true,
        ))
        .await?;
        m.create_index(index(
            "users",
            "users_username_normalized_key",
            &["username_normalized"],
            true,
        ))
        .await?;

        let mut roles = table(
            "user_roles",
            vec![uuid_col("user_id"), text("role"), ts("granted_at")],
        );
        roles.primary_key(
            Index::create()
                .col(Alias::new("user_id"))
                .col(Alias::new("role")),
        );
        m.create_table(roles).await?;

        m.create_table(table(
            "email_tokens",
            vec![
                uuid_pk("id"),
                uuid_col("user_id"),
                text("purpose"),
                text("token_hash"),
                ts("created_at"),
                ts("expires_at"),
                ts_null("used_at"),
            ],
        ))
        .await?;
        m.create_index(index(
            "email_tokens",
            "email_tokens_hash_key",
            &["token_hash"],
            true,
        ))
        .await?;
        m.create_index(index(
            "email_tokens",
            "email_tokens_user_idx",
            &["user_id", "purpose"],
            false,
        ))
        .await?;

        m.create_table(table(
            "sessions",
            vec![
                uuid_pk("id"),
                uuid_col("user_id"),
                ts("created_at"),
                ts("last_used_at"),
                ts("idle_expires_at"),
                ts("expires_at"),
                ts_null("revoked_at"),
                text_null("revoke_reason"),
                text_null("user_agent"),
                text_null("ip"),
            ],
        ))
        .await?;
        m.create_index(index("sessions", "sessions_user_idx", &["user_id"], false))
            .await?;

        m.create_table(table(
            "refresh_tokens",
            vec![
                uuid_pk("id"),
                uuid_col("session_id"),
                text("token_hash"),
                ts("created_at"),
                ts_null("rotated_at"),
            ],
        ))
        .await?;
        m.create_index(index(
            "refresh_tokens",
            "refresh_tokens_hash_key",
            &["token_hash"],
            true,
        ))
        .await?;
        m.create_index(index(
            "refresh_tokens",
            "refresh_tokens_session_idx",
            &["session_id"],
            false,
        ))
        .await?;

        m.create_table(table(
            "signing_keys",
            vec![
                ColumnDef::new(Alias::new("kid"))
                    .text()
                    .not_null()
                    .primary_key()
                    .to_owned(),
                text("algorithm"),
                text("public_key"),
                text("private_key_enc"),
                ts("created_at"),
                ts_null("retired_at"),
            ],
        ))
        .await?;

        m.create_table(table(
            "outbox",
            vec![
                uuid_pk("id"),
                text("message_type"),
                text("payload"),
                ts("created_at"),
                ts_null("published_at"),
                ColumnDef::new(Alias::new("attempts"))
                    .integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
            ],
        ))
        .await?;
        m.create_index(index(
            "outbox",
            "outbox_pending_idx",
            &["published_at", "id"],
            false,
        ))
        .await?;

        let mut inbox = table(
            "inbox",
            vec![text("consumer"), uuid_col("message_id"), ts("processed_at")],
        );
        inbox.primary_key(
            Index::create()
                .col(Alias::new("consumer"))
                .col(Alias::new("message_id")),
        );
        m.create_table(inbox).await?;
        Ok(())
    }
}

struct M0002LoginFailures;

impl MigrationName for M0002LoginFailures {
    fn name(&self) -> &str {
        "m0002_login_failures"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0002LoginFailures {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One row per failed login, keyed by "account:<id or login>" and "ip:<address>".
        m.create_table(table(
            "login_failures",
            vec![uuid_pk("id"), text("key"), ts("at")],
        ))
        .await?;
        m.create_index(index(
            "login_failures",
            "login_failures_key_at_idx",
            &["key", "at"],
            false,
        ))
        .await?;
        Ok(())
    }
}

struct M0003AuditLog;

impl MigrationName for M0003AuditLog {
    fn name(&self) -> &str {
        "m0003_audit_log"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0003AuditLog {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(table(
            "audit_log",
            vec![
                uuid_pk("id"),
                ts("at"),
                text("kind"),
                ColumnDef::new(Alias::new("user_id"))
                    .uuid()
                    .null()
                    .to_owned(),
                text_null("ip"),
                text_null("user_agent"),
                text_null("request_id"),
                text("details"),
            ],
        ))
        .await?;
        m.create_index(index(
            "audit_log",
            "audit_log_user_at_idx",
            &["user_id", "at"],
            false,
        ))
        .await?;
        // Append-only, enforced by the database itself, not just by the code that writes it.
        let db = m.get_connection();
        match m.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE FUNCTION keyward_audit_log_append_only() RETURNS trigger AS $$ \
                     BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log \
                     FOR EACH ROW EXECUTE FUNCTION keyward_audit_log_append_only()",
                )
                .await?;
            }
            _ => {
                for op in ["UPDATE", "DELETE"] {
                    db.execute_unprepared(&format!(
                        "CREATE TRIGGER audit_log_no_{} BEFORE {op} ON audit_log \
                         BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
                        op.to_lowercase()
                    ))
                    .await?;
                }
            }
        }
        Ok(())
    }
}

struct M0004CanonicalEmail;

impl MigrationName for M0004CanonicalEmail {
    fn name(&self) -> &str {
        "m0004_canonical_email"
    }
}

/// One stored account, as the canonical-email migration sees it.
struct StoredEmail {
    id: Uuid,
    email: String,
    normalized: String,
    canonical: Option<String>,
}

/// What the canonical-email migration does, by index into its rows.
#[derive(Debug, Default, PartialEq)]
struct CanonicalPlan {
    /// Accounts that move to their canonical address.
    moves: Vec<(usize, String)>,
    /// Accounts left as they are, and why.
    conflicts: Vec<(usize, EmailConflictReason)>,
}

/// What the canonical-email migration does with each account: move it to its canonical
/// address, or leave it and record why. Pure, so its rules are unit-tested.
fn plan_canonical_emails(rows: &[StoredEmail]) -> CanonicalPlan {
    let mut by_canonical: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut conflicts: BTreeMap<usize, EmailConflictReason> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        match &r.canonical {
            Some(c) => by_canonical.entry(c.as_str()).or_default().push(i),
            None => {
                conflicts.insert(i, EmailConflictReason::Undeliverable);
            }
        }
    }
    for group in by_canonical.values().filter(|g| g.len() > 1) {
        for &i in group {
            conflicts.insert(i, EmailConflictReason::Collision);
        }
    }
    // An account left as it is keeps its lookup key; an account whose canonical form is that
    // key cannot take it, so it is left too (and that can repeat).
    loop {
        let kept: HashSet<&str> = conflicts
            .keys()
            .map(|&i| rows[i].normalized.as_str())
            .collect();
        let blocked: Vec<usize> = rows
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                !conflicts.contains_key(i)
                    && r.canonical
                        .as_deref()
                        .is_some_and(|c| c != r.normalized && kept.contains(c))
            })
            .map(|(i, _)| i)
            .collect();
        if blocked.is_empty() {
            break;
        }
        for i in blocked {
            conflicts.insert(i, EmailConflictReason::Collision);
        }
    }
    let moves = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| !conflicts.contains_key(i))
        .filter_map(|(i, r)| {
            let c = r.canonical.as_ref()?;
            (*c != r.email || *c != r.normalized).then(|| (i, c.clone()))
        })
        .collect();
    CanonicalPlan {
        moves,
        conflicts: conflicts.into_iter().collect(),
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0004CanonicalEmail {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // A registration's payload rides on its verify-email token until the mailbox proves it.
        for c in ["password_hash", "username", "username_normalized"] {
            m.alter_table(
                Table::alter()
                    .table(Alias::new("email_tokens"))
                    .add_column(text_null(c))
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(table(
            "email_canonical_conflicts",
            vec![
                uuid_pk("user_id"),
                text("email"),
                text_null("canonical"),
                text("reason"),
                ts("created_at"),
            ],
        ))
        .await?;

        let db = m.get_connection();
        let backend = m.get_database_backend();
        let users = Alias::new("users");
        let (id, email, email_normalized) = (
            Alias::new("id"),
            Alias::new("email"),
            Alias::new("email_normalized"),
        );
        let select = Query::select()
            .columns([id.clone(), email.clone(), email_normalized.clone()])
            .from(users.clone())
            .order_by(id.clone(), Order::Asc)
            .to_owned();
        let mut rows = Vec::new();
        for r in db.query_all_raw(backend.build(&select)).await? {
            let email: String = r.try_get("", "email")?;
            let canonical = Email::parse("email", &email)
                .ok()
                .map(|e| e.as_str().to_owned());
            rows.push(StoredEmail {
                id: r.try_get("", "id")?,
                normalized: r.try_get("", "email_normalized")?,
                email,
                canonical,
            });
        }
        let CanonicalPlan { moves, conflicts } = plan_canonical_emails(&rows);

        // Two steps, so that no move meets a key another move is about to give up.
        let set_key = |i: usize, address: &str, key: String| {
            Query::update()
                .table(users.clone())
                .value(email.clone(), address)
                .value(email_normalized.clone(), key)
                .and_where(Expr::col(id.clone()).eq(rows[i].id))
                .to_owned()
        };
        for (i, _) in &moves {
            let r = &rows[*i];
            let temporary = format!("migrating:{}", r.id);
            db.execute_raw(backend.build(&set_key(*i, &r.email, temporary)))
                .await?;
        }
        for (i, canonical) in &moves {
            db.execute_raw(backend.build(&set_key(*i, canonical, canonical.clone())))
                .await?;
        }

        let now = chrono::Utc::now();
        for (i, reason) in &conflicts {
            let r = &rows[*i];
            tracing::warn!(
                user_id = %r.id,
                email = %r.email,
                canonical = r.canonical.as_deref().unwrap_or("-"),
                reason = reason.as_str(),
                "account left at its stored email address: run `keyward migrate` for the report"
            );
            let mut insert = Query::insert();
            insert
                .into_table(Alias::new("email_canonical_conflicts"))
                .columns([
                    Alias::new("user_id"),
                    Alias::new("email"),
                    Alias::new("canonical"),
                    Alias::new("reason"),
                    Alias::new("created_at"),
                ])
                .values([
                    r.id.into(),
                    r.email.clone().into(),
                    r.canonical.clone().into(),
                    reason.as_str().into(),
                    now.into(),
                ])
                .map_err(|e| DbErr::Custom(e.to_string()))?;
            db.execute_raw(backend.build(&insert)).await?;
        }
        if !moves.is_empty() {
            tracing::info!(
                accounts = moves.len(),
                "email addresses moved to their canonical form"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
