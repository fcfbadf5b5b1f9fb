//! A version-4 journal with data opens as version 5 in place: its requests keep their texts
//! on their rows and their bodies deflated without the dictionary, and every event is still
//! shown (data, verification, headers, client, its effect's path and bytes), found in the
//! log, replayed, and deduplicated; requests after the migration keep those texts once, as
//! their shape, and their bodies deflated after the dictionary.

use crate::helpers::{gridx_ping as ping, post_gridx};
use crate::journal_once::checkpointed;
use crate::journal_v4::{VERIFIED, admin, journal, key, seed, start, urlencode};

/// What version 4 kept: each request's spec version and client on its row, the ids of its
/// verification text and headers, each effect's path.
pub const BACK_TO_VERSION_4: &str = r#"
UPDATE requests SET spec = (SELECT s.spec FROM request_shapes s WHERE s.id = shape_id),
    client = (SELECT s.client FROM request_shapes s WHERE s.id = shape_id),
    verification_id = (SELECT s.verification_id FROM request_shapes s WHERE s.id = shape_id),
    headers_id = (SELECT NULLIF(s.headers_id, 0) FROM request_shapes s WHERE s.id = shape_id)
  WHERE shape_id IS NOT NULL;
UPDATE effects SET path = (SELECT text FROM request_texts WHERE id = path_id) WHERE path_id IS NOT NULL;
ALTER TABLE requests DROP COLUMN shape_id;
ALTER TABLE effects DROP COLUMN path_id;
DROP TABLE request_shapes;
PRAGMA user_version = 4;
"#;

/// Version 4 deflated bodies alone (`packed = 1`), without the dictionary.
fn deflate_alone(conn: &rusqlite::Connection) {
    let rows: Vec<(i64, Vec<u8>, i64)> = conn
        .prepare("SELECT id, body, packed FROM requests WHERE packed = 2")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!rows.is_empty(), "bodies deflated after the dictionary to turn back");
    for (id, body, packed) in rows {
        let raw = hookyard::store::journal::unpack_body(id, body, packed).unwrap();
        let mut alone = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut alone, &raw).unwrap();
        let params = rusqlite::params![id, alone.finish().unwrap()];
        conn.execute("UPDATE requests SET body = ?2, packed = 1 WHERE id = ?1", params).unwrap();
    }
}

#[tokio::test]
async fn a_version_4_journal_opens_as_version_5_with_every_event_shown_and_replayable() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    seed(&data).await;
    journal(&data).execute_batch(BACK_TO_VERSION_4).unwrap();
    deflate_alone(&journal(&data));
    let stored = |sql: &str| journal(&data).query_row(sql, [], |r| r.get::<_, String>(0)).unwrap();
    assert_eq!(stored("SELECT client FROM requests WHERE id = 1"), "127.0.0.1", "a version-4 request row");
    assert_eq!(stored("SELECT path FROM effects WHERE id = 1"), "gridx/events.jsonl", "a version-4 effect row");

    let app = start(&data).await;
    let base = app.url("");
    let conn = journal(&data);
    assert_eq!(conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).unwrap(), 7);
    let expected = [(1, "processed", "one"), (2, "processed", "two"), (3, "failed", "boom"), (4, "duplicate", "one")];
    for (id, status, message) in expected {
        let (code, detail) = admin(&app, "GET", &format!("/api/events/{id}")).await;
        assert_eq!((code, detail["event"]["status"].as_str()), (200, Some(status)), "{detail}");
        assert_eq!(detail["data"]["data"]["message"], message, "derived from the old row's body: {detail}");
        assert_eq!(detail["verification"], VERIFIED, "{detail}");
        assert_eq!(detail["headers"][0]["name"], "x-signature", "{detail}");
        assert_eq!(detail["client"], "127.0.0.1", "{detail}");
    }
    let (_, first) = admin(&app, "GET", "/api/events/1").await;
    assert_eq!(first["effects"][0]["path"], "gridx/events.jsonl", "{first}");
    assert_eq!(first["effects"][0]["text"], format!("{}\n", app.lines("gridx/events.jsonl")[0]), "{first}");
    let (code, log) = admin(&app, "GET", "/api/log?protocol=gridx").await;
    assert_eq!(code, 200, "{log}");
    let keys: Vec<&str> = log["entries"].as_array().unwrap().iter().filter_map(|e| e["key"].as_str()).collect();
    assert_eq!(keys, [key(1), key(9), key(2), key(1)], "newest first: {log}");
    let (_, found) = admin(&app, "GET", &format!("/api/log?q={}", urlencode(&key(2)[..40]))).await;
    assert_eq!(found["entries"].as_array().map(Vec::len), Some(4), "a key prefix finds: {found}");

    // Replay and dedup go on across the migration, and new requests keep their shape once.
    let (code, replayed) = admin(&app, "POST", "/api/events/2/replay").await;
    assert_eq!((code, replayed["outcome"].as_str()), (200, Some("processed")), "{replayed}");
    assert_eq!(app.lines("gridx/events.jsonl").len(), 3, "one, two, and two again");
    assert_eq!(post_gridx(&app.client, &base, "s", ping(2, "two")).await.unwrap(), 204);
    assert_eq!(app.lines("gridx/events.jsonl").len(), 3, "a resend after the migration is a duplicate");
    for n in [20, 21] {
        assert_eq!(post_gridx(&app.client, &base, "s", ping(n, "new")).await.unwrap(), 204);
    }
    checkpointed(&app).await;
    for id in [6, 7] {
        let (_, detail) = admin(&app, "GET", &format!("/api/events/{id}")).await;
        assert_eq!(detail["data"]["data"]["message"], "new", "{detail}");
        assert_eq!((&detail["verification"], &detail["client"]), (&VERIFIED.into(), &"127.0.0.1".into()));
        assert_eq!(detail["effects"][0]["path"], "gridx/events.jsonl", "{detail}");
        assert_eq!(detail["effects"][0]["text"], format!("{}\n", app.lines("gridx/events.jsonl")[id - 3]), "{detail}");
    }
    assert_eq!(stored("SELECT spec || client FROM requests WHERE id = 6"), "", "a new row keeps no shared text");
    assert_eq!(stored("SELECT path FROM effects WHERE request_id = 6"), "", "nor its effect its path");
    assert_ne!(stored("SELECT spec FROM requests WHERE id = 1"), "", "an old row keeps its own");
    let packing = |id: i64| conn.query_row("SELECT packed FROM requests WHERE id = ?1", [id], |r| r.get::<_, i64>(0));
    assert_eq!(
        (packing(1).unwrap(), packing(6).unwrap()),
        (1, 2),
        "old bodies deflated alone, new ones after the dictionary"
    );
    let shapes = conn.query_row("SELECT COUNT(*) FROM request_shapes", [], |r| r.get::<_, i64>(0)).unwrap();
    // One sender: one shape for its requests, one for its resends (they keep no body, so no
    // spec version that split it).
    assert_eq!(shapes, 2, "one sender, one shape per kind of request");
}
