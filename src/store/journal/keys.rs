//! How an event's idempotency key is stored: a key is a JSON array that begins with its
//! request's protocol and operation (`["gridx","events","…"]`), which the request row holds
//! already, so the events row keeps only the rest (`,"…"]`, told apart by its leading comma)
//! and reads put the two names back ([`KEY`]). A key that does not begin with them is kept
//! whole.

/// The full key of the events row `e` of the request row `r`, as SQL.
pub const KEY: &str = "CASE WHEN substr(e.idem_key, 1, 1) = ',' \
     THEN '[\"' || r.protocol || '\",\"' || r.operation || '\"' || e.idem_key ELSE e.idem_key END";

/// The form of `key` kept in an events row of a `protocol`/`operation` request.
pub fn stored<'k>(protocol: &str, operation: &str, key: &'k str) -> &'k str {
    // A name JSON escapes is spelled otherwise in the key: no match, the key is kept whole.
    let rest = key
        .strip_prefix("[\"")
        .and_then(|k| k.strip_prefix(protocol))
        .and_then(|k| k.strip_prefix("\",\""))
        .and_then(|k| k.strip_prefix(operation))
        .and_then(|k| k.strip_prefix('"'));
    rest.filter(|r| r.starts_with(',')).unwrap_or(key)
}

/// Version 4: the keys of every events row in the stored form of [`stored`].
pub const MIGRATE_V4: &str = "
UPDATE events SET idem_key = substr(idem_key, length(k.prefix) + 1)
FROM (SELECT id, '[\"' || protocol || '\",\"' || operation || '\"' AS prefix FROM requests) AS k
WHERE k.id = events.request_id AND substr(events.idem_key, 1, length(k.prefix) + 1) = k.prefix || ',';
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_keeps_only_what_its_request_does_not_say() {
        let key = r#"["gridx","events","5a1e"]"#;
        assert_eq!(stored("gridx", "events", key), r#","5a1e"]"#);
        assert_eq!(stored("wattmon", "export", key), key, "another request's names");
        assert_eq!(stored("grid", "x", r#"["grid","xevents",1]"#), r#"["grid","xevents",1]"#);
        assert_eq!(stored("gr\"x", "events", r#"["gr\"x","events",1]"#), r#"["gr\"x","events",1]"#);
    }

    #[test]
    fn the_sql_puts_the_names_back() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE requests (id INTEGER PRIMARY KEY, protocol TEXT, operation TEXT);
             CREATE TABLE events (id INTEGER PRIMARY KEY, request_id INTEGER, idem_key TEXT);
             INSERT INTO requests VALUES (1, 'gridx', 'events');
             INSERT INTO events VALUES (1, 1, '[\"gridx\",\"events\",\"a\"]'), (2, 1, '[\"other\",\"events\",\"b\"]'),
                 (3, 1, NULL), (4, 1, '[\"gridx\",\"events\"]');",
        )
        .unwrap();
        conn.execute_batch(MIGRATE_V4).unwrap();
        let stored: Vec<Option<String>> = conn
            .prepare("SELECT idem_key FROM events ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(stored[0].as_deref(), Some(",\"a\"]"));
        let full: Vec<Option<String>> = conn
            .prepare(&format!("SELECT {KEY} FROM events e JOIN requests r ON r.id = e.request_id ORDER BY e.id"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected =
            [Some(r#"["gridx","events","a"]"#), Some(r#"["other","events","b"]"#), None, Some(r#"["gridx","events"]"#)];
        assert_eq!(full.iter().map(Option::as_deref).collect::<Vec<_>>(), expected);
    }
}
