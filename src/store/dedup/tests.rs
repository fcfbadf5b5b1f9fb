//! The dedup memory against a real journal file: the cache forgets, the disk does not.

use super::*;

fn journal_with(keys: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let conn = crate::store::journal::schema::open(&path).unwrap();
    for (n, key) in keys.iter().enumerate() {
        conn.execute(
            "INSERT INTO processed_keys (digest, event_id, received_ms) VALUES (?1, ?2, 0)",
            rusqlite::params![&digest(key)[..], n as i64 + 1],
        )
        .unwrap();
    }
    (dir, path)
}

#[test]
fn claims_exclude_each_other_until_committed_or_released() {
    let keys = SeenKeys::default();
    assert_eq!(keys.claim("a"), Claim::New);
    assert_eq!(keys.claim("a"), Claim::InFlight);
    keys.commit(&["a".into()]);
    assert_eq!(keys.claim("a"), Claim::Seen);
    assert_eq!(keys.claim("b"), Claim::New);
    keys.release(&["b".into()]);
    assert_eq!(keys.claim("b"), Claim::New);
}

#[test]
fn a_key_the_cache_forgot_is_still_seen_on_disk() {
    let (_dir, path) = journal_with(&["k1", "k2", "k3", "k4"]);
    let keys = SeenKeys::on_disk(KeyIndex::new(&path, Default::default()), 2);
    assert_eq!(keys.claim("k1"), Claim::Seen, "found on disk, not in memory");
    for k in ["k2", "k3", "k4"] {
        assert_eq!(keys.claim(k), Claim::Seen);
    }
    assert_eq!(keys.state.lock().unwrap().recent.set.len(), 2, "the cache stays bounded");
    assert_eq!(keys.claim("k1"), Claim::Seen, "evicted from the cache, still seen");
    assert_eq!(keys.claim("new"), Claim::New);
    assert_eq!(keys.claim("new"), Claim::InFlight);
}

#[test]
fn an_unreadable_index_asks_for_a_retry_and_holds_nothing() {
    let (_dir, path) = journal_with(&["k1"]);
    let keys = SeenKeys::on_disk(KeyIndex::new(&path, Default::default()), 2);
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("ALTER TABLE processed_keys RENAME TO unreadable").unwrap();
    assert_eq!(keys.claim("k1"), Claim::InFlight, "an error is not read as 'not processed'");
    conn.execute_batch("ALTER TABLE unreadable RENAME TO processed_keys").unwrap();
    assert_eq!(keys.claim("k1"), Claim::Seen, "the failed lookup left no claim behind");
    assert_eq!(keys.claim("k2"), Claim::New);
}
