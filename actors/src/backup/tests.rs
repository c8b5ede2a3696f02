#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use keyward_config::Settings;
use secrecy::SecretString;

use super::*;

fn settings(dir: &Path, key: Option<[u8; 32]>) -> Settings {
    let data_dir = dir.to_path_buf();
    Settings {
        database_url: format!("sqlite://{}/keyward.db?mode=rwc", data_dir.display()),
        data_dir,
        master_key: key
            .map(|k| SecretString::from(base64::engine::general_purpose::STANDARD.encode(k))),
        ..Settings::default()
    }
}

/// A data dir with a migrated database, one failed login, and two avatar files.
async fn node_dir(root: &Path, key: [u8; 32]) -> Settings {
    let s = settings(&root.join("data"), Some(key));
    fs::create_dir_all(s.data_dir.join("avatars")).unwrap();
    fs::write(s.data_dir.join("avatars/a.webp"), b"first").unwrap();
    fs::write(s.data_dir.join("avatars/.b.webp.tmp"), b"half-written").unwrap();
    fs::write(s.data_dir.join("avatars/c.webp"), b"third").unwrap();
    let store = Store::connect(&s.database_url).await.unwrap();
    store.migrate().await.unwrap();
    store
        .login_failures()
        .record("ip:192.0.2.7", Utc::now())
        .await
        .unwrap();
    s
}

#[tokio::test]
async fn a_backup_restores_into_an_empty_data_dir_without_its_master_key() {
    let root = tempfile::tempdir().unwrap();
    let node = node_dir(root.path(), [7; 32]).await;
    let dir = root.path().join("backup");

    let done = backup(&node, &dir).await.unwrap();

    assert!(
        done.iter().any(|l| l.contains("2 avatar files")),
        "{done:?}"
    );
    assert!(!dir.join("master.key").exists() && !dir.join("keyward.lock").exists());
    let m: Manifest = serde_json::from_slice(&fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(m.migration, migration_names().last().cloned());
    assert_eq!(m.master_key_id, Some(key_id(&[7; 32])));
    assert!(m.seal.is_some());
    let again = backup(&node, &dir).await.unwrap_err().to_string();
    assert!(again.contains("is not empty"), "{again}");

    let fresh = settings(&root.path().join("restored"), Some([7; 32]));
    let done = restore(&fresh, &dir, false).await.unwrap();
    assert!(
        done.iter().any(|l| l.contains("is the backup's")),
        "{done:?}"
    );
    let store = Store::connect(&fresh.database_url).await.unwrap();
    let since = Utc::now() - chrono::Duration::hours(1);
    let n = store.login_failures().since("ip:192.0.2.7", since).await;
    assert_eq!(n.unwrap().0, 1);
    assert_eq!(
        fs::read(fresh.data_dir.join("avatars/c.webp")).unwrap(),
        b"third"
    );
    assert!(!fresh.data_dir.join("avatars/.b.webp.tmp").exists());
}

#[tokio::test]
async fn a_restore_refuses_a_non_empty_or_used_data_dir_unless_forced_and_never_when_in_use() {
    let root = tempfile::tempdir().unwrap();
    let node = node_dir(root.path(), [7; 32]).await;
    let dir = root.path().join("backup");
    backup(&node, &dir).await.unwrap();
    let target = settings(&root.path().join("target"), Some([7; 32]));
    fs::create_dir_all(target.data_dir.join("mail")).unwrap();

    let e = restore(&target, &dir, false).await.unwrap_err().to_string();
    assert!(
        e.contains("is not empty (mail)") && e.contains("--force"),
        "{e}"
    );

    let serving = hold_data_dir(&target.data_dir).unwrap();
    let e = restore(&target, &dir, true).await.unwrap_err().to_string();
    assert!(e.contains("in use by a running keyward node"), "{e}");
    drop(serving);

    let done = restore(&target, &dir, true).await.unwrap();
    assert!(done.iter().any(|l| l.starts_with("--force")), "{done:?}");
    assert!(target.data_dir.join("mail").is_dir(), "left as it was");
    let (one, two) = (
        hold_data_dir(&target.data_dir),
        hold_data_dir(&target.data_dir),
    );
    assert!(
        one.is_ok() && two.is_ok(),
        "nodes share a data dir with each other"
    );
}

#[tokio::test]
async fn a_tampered_backup_or_a_wrong_key_is_refused_and_nothing_is_written() {
    let root = tempfile::tempdir().unwrap();
    let node = node_dir(root.path(), [7; 32]).await;
    let dir = root.path().join("backup");
    backup(&node, &dir).await.unwrap();
    let target = settings(&root.path().join("target"), Some([7; 32]));

    let wrong = settings(&root.path().join("target"), Some([8; 32]));
    let e = restore(&wrong, &dir, false).await.unwrap_err().to_string();
    assert!(e.contains("is not the key of the node"), "{e}");

    let avatar = dir.join("avatars/a.webp");
    fs::write(&avatar, b"swapped").unwrap();
    let e = restore(&target, &dir, false).await.unwrap_err().to_string();
    assert!(e.contains("avatars does not match"), "{e}");
    fs::write(&avatar, b"first").unwrap();

    let manifest = dir.join(MANIFEST);
    let original = fs::read_to_string(&manifest).unwrap();
    let mut m: Manifest = serde_json::from_str(&original).unwrap();
    m.keyward_version = "9.9.9".into();
    fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let e = restore(&target, &dir, false).await.unwrap_err().to_string();
    assert!(e.contains("was altered"), "{e}");
    fs::write(&manifest, &original).unwrap();

    let db = dir.join("keyward.db");
    let mut bytes = fs::read(&db).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&db, bytes).unwrap();
    let e = restore(&target, &dir, false).await.unwrap_err().to_string();
    assert!(e.contains("does not match the checksum"), "{e}");
    assert!(!target.data_dir.join("keyward.db").exists());
}

#[tokio::test]
async fn postgres_is_pointed_at_pg_dump() {
    let s = Settings {
        database_url: "postgres://u:p@db/keyward".into(),
        ..Settings::default()
    };
    let e = backup(&s, Path::new("unused"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("pg_dump") && !e.contains("u:p"), "{e}");
    let e = restore(&s, Path::new("unused"), false).await;
    assert!(e.unwrap_err().to_string().contains("pg_restore"));
}

#[tokio::test]
async fn a_backup_made_without_the_key_at_hand_says_the_key_cannot_be_checked() {
    let root = tempfile::tempdir().unwrap();
    let mut node = node_dir(root.path(), [7; 32]).await;
    node.master_key = None;
    let dir = root.path().join("backup");
    let done = backup(&node, &dir).await.unwrap();
    assert!(
        done.iter().any(|l| l.contains("no master key was found")),
        "{done:?}"
    );

    let fresh = settings(&root.path().join("restored"), Some([9; 32]));
    let done = restore(&fresh, &dir, false).await.unwrap();
    assert!(
        done.iter()
            .any(|l| l.contains("does not name its master key")),
        "{done:?}"
    );
}
