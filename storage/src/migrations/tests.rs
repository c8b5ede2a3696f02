//! The canonical-email migration's plan, without a database.

#![allow(clippy::unwrap_used)]

use super::*;

fn row(email: &str, normalized: &str) -> StoredEmail {
    StoredEmail {
        id: Uuid::now_v7(),
        email: email.to_owned(),
        normalized: normalized.to_owned(),
        canonical: Email::parse("email", email)
            .ok()
            .map(|e| e.as_str().to_owned()),
    }
}

fn lower(email: &str) -> StoredEmail {
    row(email, &email.to_lowercase())
}

#[test]
fn a_unique_address_moves_to_its_canonical_form() {
    let rows = [lower("Mixed@Example.COM"), lower("plain@example.com")];
    let CanonicalPlan { moves, conflicts } = plan_canonical_emails(&rows);
    assert_eq!(moves, vec![(0, "mixed@example.com".to_owned())]);
    assert!(conflicts.is_empty());
}

#[test]
fn accounts_that_share_a_mailbox_are_all_left_and_recorded_as_a_collision() {
    let rows = [
        lower("bob@example.com"),
        lower("\u{FF42}ob@example.com"),
        lower("x@bücher.example"),
        lower("x@xn--bcher-kva.example"),
        lower("solo@bücher.example"),
    ];
    let CanonicalPlan { moves, conflicts } = plan_canonical_emails(&rows);
    assert_eq!(moves, vec![(4, "solo@xn--bcher-kva.example".to_owned())]);
    let c = EmailConflictReason::Collision;
    assert_eq!(conflicts, vec![(0, c), (1, c), (2, c), (3, c)]);
}

#[test]
fn an_address_that_no_longer_parses_is_left_as_undeliverable() {
    let rows = [lower("\"a@b\"@example.com"), lower("root@[127.0.0.1]")];
    let CanonicalPlan { moves, conflicts } = plan_canonical_emails(&rows);
    assert!(moves.is_empty());
    let u = EmailConflictReason::Undeliverable;
    assert_eq!(conflicts, vec![(0, u), (1, u)]);
}

#[test]
fn an_account_never_moves_onto_the_key_an_account_left_behind_keeps() {
    // A hand-edited row keeps "carol@example.com" as its key but has an address that no
    // longer parses; the account whose canonical form is that key must not take it.
    let rows = [
        row("carol@[10.0.0.1]", "carol@example.com"),
        lower("\u{FF43}arol@example.com"),
    ];
    let CanonicalPlan { moves, conflicts } = plan_canonical_emails(&rows);
    assert!(moves.is_empty(), "{moves:?}");
    assert_eq!(
        conflicts,
        vec![
            (0, EmailConflictReason::Undeliverable),
            (1, EmailConflictReason::Collision)
        ]
    );
}
