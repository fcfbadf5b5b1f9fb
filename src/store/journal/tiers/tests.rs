//! The key tiers on a journal of their own: every key found in whichever tier holds it, through
//! flushes, merges, crashes between them, expiry and a key taken back.

use super::*;
use crate::store::dedup::digest;

/// A journal with the server's tables, on disk (the tiers' lookups read it on another
/// connection too), and a stored filter of its (empty) merged tier: the tiers loaded from it
/// look up the merged table only past that filter, which each merge keeps whole.
fn journal() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = crate::store::journal::schema::open(&dir.path().join("journal.db")).unwrap();
    // A slice a step, a thousand steps a merge: no fsync each.
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    store_filter(&conn).unwrap();
    (dir, conn)
}

/// As the writer does for one committed event: the recent row, then the tiers.
fn commit_key(conn: &Connection, tiers: &Tiers, key: &str, event_id: i64, received_ms: i64) {
    let d = digest(key);
    conn.execute(
        "INSERT INTO keys_recent (digest, event_id, received_ms) VALUES (?1, ?2, ?3)",
        params![&d[..], event_id, received_ms],
    )
    .unwrap();
    tiers.added(&[(d, event_id, received_ms)]);
}

/// `n` steps of the writer's upkeep between turns, nothing expired, nothing held.
fn steps(upkeep: &mut Upkeep, conn: &mut Connection, tiers: &Tiers, n: u32) {
    for _ in 0..n {
        upkeep.step(conn, tiers, Between::default()).unwrap();
    }
}

/// Keys `k0..k99` committed in runs of 50, merged two at a time: the merge of the two runs
/// begins with the step after the second.
fn two_runs_merging(conn: &mut Connection, tiers: &Tiers) -> Upkeep {
    let mut upkeep = Upkeep::with_sizes(50, 2);
    for i in 0..100 {
        commit_key(conn, tiers, &format!("k{i}"), i, 1_000);
        if i % 50 == 49 {
            upkeep.step(conn, tiers, Between::default()).unwrap();
        }
    }
    upkeep
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn run_tables(conn: &Connection) -> i64 {
    count(conn, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'keys_run_%'")
}

/// Every key `0..n` is found with its event, through the tiers and from the tables alone,
/// and a key never committed is not.
fn all_found(conn: &Connection, tiers: &Tiers, n: i64) {
    let reader = Connection::open(conn.path().unwrap()).unwrap();
    for i in 0..n {
        let d = digest(&format!("k{i}"));
        assert_eq!(tiers.event_of(&reader, &d).unwrap(), Some(i), "key {i} through the tiers");
        assert_eq!(stored_event(&reader, &d).unwrap(), Some(i), "key {i} from the tables");
    }
    assert_eq!(tiers.event_of(&reader, &digest("never")).unwrap(), None);
    assert_eq!(stored_event(&reader, &digest("never")).unwrap(), None);
}

#[test]
fn a_filter_holds_every_key_it_was_built_from_and_few_others() {
    let keys: Vec<Digest> = (0..10_000).map(|i| digest(&format!("in{i}"))).collect();
    let filter = Filter::build(keys.iter());
    assert!(keys.iter().all(|d| filter.may_contain(d)), "no false negative");
    let others = (0..10_000).filter(|i| filter.may_contain(&digest(&format!("out{i}")))).count();
    assert!(others < 300, "{others} of 10,000 other keys pass (≈ 1 % expected)");
    let back = Filter::from_bytes(&filter.to_bytes()).unwrap();
    assert!(keys.iter().all(|d| back.may_contain(d)), "read back whole");
    assert!(Filter::from_bytes(b"").is_none() && Filter::from_bytes(b"abc").is_none());
}

#[test]
fn keys_move_from_recent_to_runs_to_the_merged_table_and_stay_found() {
    let (_dir, mut conn) = journal();
    let tiers = Tiers::load(&conn).unwrap();
    // Runs of 100 recent keys, merged three at a time; a flush slice is 8,192 keys, so a run
    // is written in one turn and a merge takes MERGE_SLICES turns.
    let mut upkeep = Upkeep::with_sizes(100, 3);
    let mut n = 0;
    let mut saw_runs = 0;
    for _ in 0..6 {
        for _ in 0..100 {
            commit_key(&conn, &tiers, &format!("k{n}"), n, 1_000);
            n += 1;
        }
        upkeep.step(&mut conn, &tiers, Between::default()).unwrap();
        saw_runs = saw_runs.max(tiers.run_tables().len());
        all_found(&conn, &tiers, n);
    }
    assert_eq!(tiers.recent_keys(), 0, "every recent key went into a run");
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM keys_recent"), 0);
    assert_eq!(saw_runs, 6, "runs 1-3 merging (begun with the third), 4-6 listed beside them");
    let mut steps = 0;
    while !tiers.run_tables().is_empty() {
        upkeep.step(&mut conn, &tiers, Between::default()).unwrap();
        steps += 1;
        assert!(steps <= 2 * MERGE_SLICES, "the merges do not end");
        if steps == MERGE_SLICES {
            all_found(&conn, &tiers, n);
        }
    }
    assert_eq!(steps, 2 * MERGE_SLICES - 4, "two merges, four slices of the first done in rounds 3-6");
    all_found(&conn, &tiers, n);
    assert_eq!(run_tables(&conn), 0, "merged runs are dropped");
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM key_runs"), 0);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM processed_keys"), 600);
    for _ in 0..50 {
        commit_key(&conn, &tiers, &format!("k{n}"), n, 1_000);
        n += 1;
    }
    upkeep.step(&mut conn, &tiers, Between::default()).unwrap();

    // What a restart reads back finds the same.
    let reloaded = Tiers::load(&conn).unwrap();
    assert_eq!(reloaded.run_tables(), tiers.run_tables());
    assert_eq!(reloaded.recent_keys(), 50);
    all_found(&conn, &reloaded, n);
}

#[test]
fn a_run_left_unfinished_by_a_crash_is_dropped_and_its_keys_are_still_recent() {
    let (_dir, mut conn) = journal();
    let tiers = Tiers::load(&conn).unwrap();
    for i in 0..10 {
        commit_key(&conn, &tiers, &format!("k{i}"), i, 1_000);
    }
    // The first transaction of a flush (the run's table, unlisted), then a crash.
    start_flush(&mut conn).unwrap();
    assert_eq!(run_tables(&conn), 1);
    let tiers = Tiers::load(&conn).unwrap();
    assert_eq!(run_tables(&conn), 0, "the unfinished run is gone");
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM key_runs"), 0);
    assert_eq!(tiers.recent_keys(), 10);
    all_found(&conn, &tiers, 10);
}

#[test]
fn a_merge_cut_short_by_a_crash_is_done_again_and_loses_nothing() {
    let (_dir, mut conn) = journal();
    let tiers = Tiers::load(&conn).unwrap();
    let mut upkeep = two_runs_merging(&mut conn, &tiers);
    // Two runs: the merge began with that step; half of it, then a crash.
    steps(&mut upkeep, &mut conn, &tiers, MERGE_SLICES / 2);
    let merged = count(&conn, "SELECT COUNT(*) FROM processed_keys");
    assert!(merged > 0 && merged < 100, "half merged: {merged}");
    let tiers = Tiers::load(&conn).unwrap();
    assert_eq!(tiers.run_tables().len(), 2, "both runs still listed");
    all_found(&conn, &tiers, 100);
    let mut upkeep = Upkeep::with_sizes(50, 2);
    steps(&mut upkeep, &mut conn, &tiers, MERGE_SLICES);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM processed_keys"), 100);
    assert_eq!(run_tables(&conn), 0);
    all_found(&conn, &tiers, 100);
}

#[test]
fn keys_past_the_window_leave_the_recent_tier_the_runs_and_the_merge() {
    let (_dir, mut conn) = journal();
    let tiers = Tiers::load(&conn).unwrap();
    let mut upkeep = Upkeep::with_sizes(4, 2);
    // Four keys: two old, two new; they make a run.
    for (i, at) in [(0, 100), (1, 5_000), (2, 100), (3, 5_000)] {
        commit_key(&conn, &tiers, &format!("k{i}"), i, at);
    }
    upkeep.step(&mut conn, &tiers, Between::default()).unwrap();
    assert_eq!(tiers.run_tables().len(), 1);
    // Two more recent ones, one old.
    commit_key(&conn, &tiers, "k4", 4, 100);
    commit_key(&conn, &tiers, "k5", 5, 5_000);
    let reader = Connection::open(conn.path().unwrap()).unwrap();
    assert!(tiers.event_of(&reader, &digest("k0")).unwrap().is_some());
    assert!(tiers.event_of(&reader, &digest("k4")).unwrap().is_some());

    assert!(upkeep.step(&mut conn, &tiers, Between { cutoff: Some(1_000), hold: false }).unwrap());
    for gone in ["k0", "k2", "k4"] {
        assert_eq!(tiers.event_of(&reader, &digest(gone)).unwrap(), None, "{gone} is past the window");
        assert_eq!(stored_event(&reader, &digest(gone)).unwrap(), None, "{gone} is past the window");
    }
    for kept in ["k1", "k3", "k5"] {
        assert!(tiers.event_of(&reader, &digest(kept)).unwrap().is_some(), "{kept} is inside the window");
    }
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM keys_recent"), 1);
    assert!(
        !upkeep.step(&mut conn, &tiers, Between { cutoff: Some(1_000), hold: false }).unwrap(),
        "nothing left to expire, nothing written"
    );
    assert_eq!(Tiers::load(&conn).unwrap().read().recent_oldest_ms, 5_000);
}

#[test]
fn a_key_taken_back_during_a_flush_stays_out_of_the_run() {
    let (_dir, mut conn) = journal();
    let tiers = Tiers::load(&conn).unwrap();
    for i in 0..10 {
        commit_key(&conn, &tiers, &format!("k{i}"), i, 1_000);
    }
    let mut upkeep = Upkeep::with_sizes(10, 5);
    upkeep.flush = Some(start_flush(&mut conn).unwrap());
    // As the writer's mark_failed does: the rows go, then the tiers forget it.
    let d = digest("k3");
    conn.execute("DELETE FROM keys_recent WHERE digest = ?1", [&d[..]]).unwrap();
    upkeep.forget(&d, 3);
    tiers.forget(&d, 3);
    upkeep.step(&mut conn, &tiers, Between::default()).unwrap();
    assert_eq!(tiers.run_tables().len(), 1);
    let reader = Connection::open(conn.path().unwrap()).unwrap();
    assert_eq!(tiers.event_of(&reader, &d).unwrap(), None);
    assert_eq!(stored_event(&reader, &d).unwrap(), None);
    assert_eq!(tiers.event_of(&reader, &digest("k4")).unwrap(), Some(4));
}

#[test]
fn slices_cover_the_digest_space_once() {
    let mut covered = 0;
    for probe in 0..2_000u32 {
        let d = digest(&format!("p{probe}"));
        let hits = (0..MERGE_SLICES)
            .filter(|&n| {
                let (lo, hi) = slice_bounds(n);
                d[..] >= lo[..] && d[..] < hi[..]
            })
            .count();
        assert_eq!(hits, 1, "digest {d:?} in {hits} slices");
        covered += hits;
    }
    assert_eq!(covered, 2_000);
    assert_eq!(slice_bounds(0).0, vec![0, 0]);
    assert_eq!(slice_bounds(MERGE_SLICES - 1).1, vec![0xff; 17]);
}

#[test]
fn a_merge_goes_at_the_pace_keys_arrive_and_at_least_one_slice_each_merge_every() {
    let (_dir, mut conn) = journal();
    let tiers = Tiers::load(&conn).unwrap();
    let mut upkeep = Upkeep { pace: Some((0, std::time::Instant::now())), ..Upkeep::with_sizes(4_096, 2) };
    for i in 0..8_192 {
        commit_key(&conn, &tiers, &format!("k{i}"), i, 1_000);
        // Each run written whole (in slices of FLUSH_SLICE, a step each).
        if i % 4_096 == 4_095 {
            upkeep.step(&mut conn, &tiers, Between::default()).unwrap();
            while upkeep.flush.is_some() {
                upkeep.step(&mut conn, &tiers, Between::default()).unwrap();
            }
        }
    }
    // Two runs of 4,096 keys: a slice is due per 8,192 / MERGE_SLICES / 2 keys arrived (one
    // at least). The clock of the pace starts again before each step that must not slice.
    let per_slice = (8_192 / MERGE_SLICES as usize / 2).max(1);
    let begun = upkeep_slice(&upkeep);
    assert!(upkeep.merge.is_some(), "the merge began");
    let now = |upkeep: &mut Upkeep| upkeep.pace = Some((upkeep.pace.unwrap().0, std::time::Instant::now()));
    now(&mut upkeep);
    upkeep.step(&mut conn, &tiers, Between::default()).unwrap();
    assert_eq!(upkeep_slice(&upkeep), begun, "no key arrived, no time passed: no slice");
    upkeep.arrived(per_slice);
    now(&mut upkeep);
    upkeep.step(&mut conn, &tiers, Between { cutoff: None, hold: true }).unwrap();
    assert_eq!(upkeep_slice(&upkeep), begun, "held while the WAL waits to start again");
    upkeep.step(&mut conn, &tiers, Between::default()).unwrap();
    assert_eq!(upkeep_slice(&upkeep), begun + 1, "a slice's keys arrived: one slice");
    now(&mut upkeep);
    upkeep.step(&mut conn, &tiers, Between::default()).unwrap();
    assert_eq!(upkeep_slice(&upkeep), begun + 1);
    std::thread::sleep(MERGE_EVERY);
    upkeep.step(&mut conn, &tiers, Between::default()).unwrap();
    assert_eq!(upkeep_slice(&upkeep), begun + 2, "MERGE_EVERY passed: one slice");
    all_found(&conn, &tiers, 8_192);
}

fn upkeep_slice(upkeep: &Upkeep) -> u32 {
    upkeep.merge.as_ref().map_or(u32::MAX, |m| m.slice)
}

/// A key put into the merged table behind the filter's back, as an older hookyard's merge
/// would: a lookup through the filter does not find it (the filter is what rules a key out).
fn behind_the_filters_back(conn: &Connection, key: &str, event_id: i64) {
    conn.execute(
        "INSERT INTO processed_keys (digest, event_id, received_ms) VALUES (?1, ?2, 0)",
        params![&digest(key)[..], event_id],
    )
    .unwrap();
}

#[test]
fn the_stored_filter_stands_before_the_merged_table_and_an_older_journal_builds_it_again_by_a_scan() {
    let (dir, conn) = journal();
    let path = dir.path().join("journal.db");
    for i in 0..20_000 {
        behind_the_filters_back(&conn, &format!("k{i}"), i);
    }
    let reader = Connection::open(&path).unwrap();
    let tiers = Tiers::load(&conn).unwrap();
    let found = (0..20_000).filter(|i| tiers.event_of(&reader, &digest(&format!("k{i}"))).unwrap().is_some()).count();
    assert!(found < 200, "the empty table's filter rules out the keys it never saw: {found} of 20,000 looked up");

    // An older hookyard opened the journal (its version is 6 again): the stored filter may
    // lack keys it merged, and opening drops it.
    conn.pragma_update(None, "user_version", 6).unwrap();
    drop(conn);
    let mut conn = crate::store::journal::schema::open(&path).unwrap();
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM key_filter"), 0, "dropped with the migration to version 7");
    let tiers = Tiers::load(&conn).unwrap();
    assert!((0..20_000).all(|i| tiers.event_of(&reader, &digest(&format!("k{i}"))).unwrap() == Some(i)));

    // The server's start builds one by a scan, and its writer stores it once it is ready.
    tiers.start_filter(&conn, &path).unwrap();
    let began = std::time::Instant::now();
    while !tiers.read().building.as_ref().is_some_and(|b| b.ready()) {
        assert!(began.elapsed() < std::time::Duration::from_secs(30), "the scan does not end");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut upkeep = Upkeep::with_sizes(100, 3);
    upkeep.step(&mut conn, &tiers, Between::default()).unwrap();
    {
        let inner = tiers.read();
        assert!(inner.building.is_none() && inner.merged.as_ref().is_some_and(|m| m.ready()));
    }
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM key_filter"), 1, "stored");
    let reloaded = Tiers::load(&conn).unwrap();
    for t in [&tiers, &reloaded] {
        assert!((0..20_000).all(|i| t.event_of(&reader, &digest(&format!("k{i}"))).unwrap() == Some(i)));
        assert_eq!(t.event_of(&reader, &digest("never")).unwrap(), None);
    }
    behind_the_filters_back(&conn, "late", 1);
    assert_eq!(reloaded.event_of(&reader, &digest("late")).unwrap(), None, "the filter is in front again");
}

#[test]
fn keys_merged_after_a_scan_read_the_table_and_before_its_filter_replaces_the_old_are_in_it() {
    let (_dir, mut conn) = journal();
    conn.execute("DELETE FROM key_filter", []).unwrap();
    for i in 0..5_000 {
        behind_the_filters_back(&conn, &format!("old{i}"), 1_000_000 + i);
    }
    let tiers = Tiers::load(&conn).unwrap();
    let mut upkeep = two_runs_merging(&mut conn, &tiers);
    steps(&mut upkeep, &mut conn, &tiers, MERGE_SLICES / 2);
    // As `rebuild_filter` does, with the scan done here at once: it reads the table half-way
    // through the merge; the rest of the merge comes after it, before the writer's next step
    // puts the new filter in place.
    let fresh = Arc::new(merged::fresh(&conn).unwrap());
    tiers.write().building = Some(fresh.clone());
    let reader = Connection::open(conn.path().unwrap()).unwrap();
    merged::scan(&reader, &fresh, false).unwrap();
    while upkeep.merge.is_some() {
        upkeep.work(&mut conn, &tiers, Between::default()).unwrap();
    }
    assert!(tiers.read().building.is_some(), "not yet in place");
    upkeep.step(&mut conn, &tiers, Between::default()).unwrap();
    assert!(tiers.read().building.is_none(), "in place");
    assert_eq!(run_tables(&conn), 0, "merged");
    all_found(&conn, &tiers, 100);
    all_found(&conn, &Tiers::load(&conn).unwrap(), 100);
}

#[test]
fn a_scan_that_failed_is_dropped_and_the_next_merge_starts_another() {
    let (dir, mut conn) = journal();
    conn.execute("DELETE FROM key_filter", []).unwrap();
    let tiers = Tiers::load(&conn).unwrap();
    // A path where no journal is: the scan cannot open it.
    tiers.start_filter(&conn, &dir.path().join("no/such/journal.db")).unwrap();
    let began = std::time::Instant::now();
    let mut upkeep = Upkeep::with_sizes(50, 2);
    while tiers.read().building.is_some() {
        assert!(began.elapsed() < std::time::Duration::from_secs(30), "the failed scan is never dropped");
        std::thread::sleep(std::time::Duration::from_millis(10));
        upkeep.step(&mut conn, &tiers, Between::default()).unwrap();
    }
    assert!(tiers.read().merged.is_none(), "no filter: every lookup probes the table");
    let mut upkeep = two_runs_merging(&mut conn, &tiers);
    while upkeep.merge.is_some() {
        upkeep.work(&mut conn, &tiers, Between::default()).unwrap();
    }
    assert!(tiers.read().building.is_some(), "the merge's end started another scan");
    all_found(&conn, &tiers, 100);
}
