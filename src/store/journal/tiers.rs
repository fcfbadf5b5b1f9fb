//! Processed keys in tiers, so that a new key costs the same however many keys the journal
//! holds.
//!
//! One B-tree of random 128-bit digests (`processed_keys`) puts every new key on a random
//! leaf page: with millions of keys, each commit dirties one page of it per key, and the WAL
//! and its copy into the database write that page twice. So a key goes through three tiers:
//!
//! - **recent** (`keys_recent`): appended in the transaction of its event (rowid order, a
//!   page holds ~100 keys), and held in memory (digest → event) by [`Tiers`], where lookups
//!   find it. At most about two [`RUN_KEYS`] keys; read back into memory at start-up.
//! - **runs** (`keys_run_<id>`, listed in `key_runs`): every [`RUN_KEYS`] recent keys are
//!   written, sorted, into a run table of their own (pages filled one after the other), in
//!   slices of [`FLUSH_SLICE`] between the writer's turns; the last slice lists the run, with
//!   a Bloom filter of its keys kept in memory, and drops the flushed recent rows. A lookup
//!   probes only the runs whose filter may hold the key (~1 % false positives).
//! - **merged** (`processed_keys`): once [`MERGE_RUNS`] runs are listed, they are merged into
//!   it in [`MERGE_SLICES`] slices of the digest space (each slice one ordered pass over that
//!   range of every run): a million sorted keys touch each of its leaves about once, where
//!   one at a time each would have cost a page. Slices go at the pace keys arrive (twice
//!   as many merged as arrive, at least one each [`MERGE_EVERY`]), so no turn of the writer
//!   is held long. The runs are dropped after the last slice.
//!
//! A key is visible in one tier or another at every moment: a run is listed (and its keys
//! dropped from memory) in the transaction that completes it, and merged runs are unlisted
//! only after every slice of the merge committed. A crash leaves at most an unlisted run
//! table (dropped at start-up; its keys are still recent) or a merge half done (done again:
//! `INSERT OR IGNORE`). Keys past the retention window leave the recent tier and the runs as
//! soon as the oldest of them is past it (both know their oldest key), and the merged table
//! by the key sweep (`sweep.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard};

use rusqlite::{Connection, OptionalExtension, params};

mod merged;
use merged::Merged;

/// The tables of the recent keys and of the runs (journal version 6), and the merged tier's
/// filter (version 7, `tiers/merged.rs`).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keys_recent (
    seq INTEGER PRIMARY KEY,
    digest BLOB NOT NULL,
    event_id INTEGER NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS key_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    filter BLOB NOT NULL,
    keys INTEGER NOT NULL,
    oldest_ms INTEGER NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS key_filter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    bits BLOB NOT NULL,
    probes INTEGER NOT NULL,
    capacity INTEGER NOT NULL,
    added INTEGER NOT NULL
);
";

/// Recent keys that make a run.
pub const RUN_KEYS: usize = 65_536;
/// Runs that are merged into `processed_keys` together.
pub const MERGE_RUNS: usize = 16;
/// Keys written into a run per slice (one slice per writer turn).
const FLUSH_SLICE: usize = 1_024;
/// A merge goes through the digest space in this many slices (~128 keys each of 16 runs of
/// 65,536). With 1,024 slices of ~1,000 keys, one slice into a merged table of 10 M keys held
/// the writer 5–29 ms, three to four times a second; now about a millisecond each.
const MERGE_SLICES: u32 = 8192;
/// A merge slice is due at least this often, and sooner while keys arrive: a slice's keys are
/// merged for every half a slice's worth that arrive, so a merge ends in half the time the
/// next one's runs take to come, and no turn is held long. With no keys arriving the writer
/// wakes four times a second, a slice each: what is left of a merge then takes up to ~35 min
/// (its runs stay listed, behind their filters, until it ends).
const MERGE_EVERY: std::time::Duration = std::time::Duration::from_millis(30);

type Digest = [u8; 16];

/// A Bloom filter over digests. Digests are uniform already (SHA-256), so the probes are
/// taken from their bits (double hashing of the two halves), not hashed again.
struct Filter {
    words: Vec<u64>,
}

const BITS_PER_KEY: usize = 10;
const PROBES: u64 = 7;

impl Filter {
    fn build<'d>(digests: impl ExactSizeIterator<Item = &'d Digest>) -> Self {
        let bits = (digests.len() * BITS_PER_KEY).max(64);
        let mut filter = Self { words: vec![0; bits.div_ceil(64)] };
        let bits = filter.bits();
        for d in digests {
            for bit in probes(bits, d, PROBES) {
                filter.words[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
        filter
    }

    fn bits(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    fn may_contain(&self, d: &Digest) -> bool {
        probes(self.bits(), d, PROBES).all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    fn to_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// A filter read back; `None` when the stored bytes are not one (its run is probed always).
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(8) {
            return None;
        }
        Some(Self {
            words: bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect(),
        })
    }
}

/// The `k` bits of a filter of `bits` that `d` sets.
fn probes(bits: u64, d: &Digest, k: u64) -> impl Iterator<Item = u64> {
    let h1 = u64::from_le_bytes(d[..8].try_into().unwrap_or_default());
    let h2 = u64::from_le_bytes(d[8..].try_into().unwrap_or_default()) | 1;
    (0..k).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
}

struct Run {
    id: i64,
    /// The lookup of a digest in its table.
    probe: String,
    filter: Option<Filter>,
    oldest_ms: i64,
    keys: i64,
}

#[derive(Default)]
struct Inner {
    /// The recent tier: digest → the event that processed it.
    recent: HashMap<Digest, i64, foldhash::fast::RandomState>,
    /// No recent key is older than this (`i64::MAX`: none).
    recent_oldest_ms: i64,
    runs: Vec<Run>,
    /// The merged tier's filter (`None`: every lookup probes the table).
    merged: Option<Arc<Merged>>,
    /// A filter being built by a scan, to replace `merged` once it is ready.
    building: Option<Arc<Merged>>,
}

/// The recent keys, the runs' filters and the merged tier's, shared by the writer (which
/// changes them after its commits) and the lookups.
pub struct Tiers {
    inner: RwLock<Inner>,
    /// The journal's file, for a scan that builds the merged tier's filter (none: no scan).
    path: OnceLock<PathBuf>,
}

impl Default for Tiers {
    /// No recent keys, no runs, no filter: lookups go to `processed_keys` alone.
    fn default() -> Self {
        Self { inner: RwLock::new(Inner { recent_oldest_ms: i64::MAX, ..Inner::default() }), path: OnceLock::new() }
    }
}

fn run_table(id: i64) -> String {
    format!("keys_run_{id}")
}

impl Tiers {
    /// Reads the tiers of the journal on the write connection `conn`: the recent keys, the
    /// listed runs; drops a run a crash left unfinished (its keys are still recent).
    pub fn load(conn: &Connection) -> rusqlite::Result<Self> {
        let unfinished: Vec<i64> = conn
            .prepare("SELECT id FROM key_runs WHERE complete = 0")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for id in unfinished {
            conn.execute_batch(&format!(
                "DROP TABLE IF EXISTS {}; DELETE FROM key_runs WHERE id = {id};",
                run_table(id)
            ))?;
        }
        let mut inner = Inner { recent_oldest_ms: i64::MAX, ..Inner::default() };
        let mut stmt = conn.prepare("SELECT digest, event_id, received_ms FROM keys_recent ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            if let Some(d) = as_digest(&row.get::<_, Vec<u8>>(0)?) {
                inner.recent.insert(d, row.get(1)?);
                inner.recent_oldest_ms = inner.recent_oldest_ms.min(row.get(2)?);
            }
        }
        let mut stmt =
            conn.prepare("SELECT id, filter, oldest_ms, keys FROM key_runs WHERE complete = 1 ORDER BY id")?;
        inner.runs = stmt
            .query_map([], |r| {
                let filter = Filter::from_bytes(&r.get::<_, Vec<u8>>(1)?);
                let id = r.get(0)?;
                Ok(Run { id, probe: probe_sql(&run_table(id)), filter, oldest_ms: r.get(2)?, keys: r.get(3)? })
            })?
            .collect::<Result<_, _>>()?;
        inner.merged = Merged::load(conn).map(Arc::new);
        Ok(Self { inner: RwLock::new(inner), path: OnceLock::new() })
    }

    /// Lets the merged tier's filter be built by scans of the journal at `path` (`conn`, the
    /// write connection, sizes it), and starts one now when no filter was stored.
    pub fn start_filter(&self, conn: &Connection, path: &Path) -> rusqlite::Result<()> {
        let _ = self.path.set(path.to_owned());
        if self.read().merged.is_none() {
            self.rebuild_filter(conn)?;
        }
        Ok(())
    }

    /// Starts a scan building a new filter of the merged tier (none while one is under way,
    /// or without a journal's path).
    fn rebuild_filter(&self, conn: &Connection) -> rusqlite::Result<()> {
        let Some(path) = self.path.get() else { return Ok(()) };
        if self.read().building.is_some() {
            return Ok(());
        }
        let fresh = Arc::new(merged::fresh(conn)?);
        // Listed before the scan's first query: every key a merge adds from now on sets its
        // bits too, so none falls between the scan's snapshots.
        self.write().building = Some(fresh.clone());
        merged::scan_in_background(path.clone(), fresh);
        Ok(())
    }

    /// The filter a scan finished, if one did: it replaces the merged tier's filter (one whose
    /// scan failed is dropped). Only the writer sets or takes `building`, and a scan's flags
    /// only turn on, so what the read lock saw still holds under the write lock.
    fn built_filter(&self) -> Option<Arc<Merged>> {
        if !self.read().building.as_ref().is_some_and(|b| b.ready() || b.failed()) {
            return None;
        }
        let mut inner = self.write();
        let built = inner.building.take().filter(|b| !b.failed())?;
        inner.merged = Some(built.clone());
        Some(built)
    }

    /// Sets the bits of `digests` (keys going into the merged table) in its filters.
    fn merging(&self, digests: &[Digest]) {
        let inner = self.read();
        for filter in inner.merged.iter().chain(inner.building.iter()) {
            for d in digests {
                filter.insert(d);
            }
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The event that processed `digest`, in whichever tier holds it; `conn` reads the runs
    /// and the merged table. The tiers are held while the disk is asked, so no run is dropped
    /// under a lookup.
    pub fn event_of(&self, conn: &Connection, digest: &Digest) -> rusqlite::Result<Option<i64>> {
        let inner = self.read();
        if let Some(&id) = inner.recent.get(digest) {
            return Ok(Some(id));
        }
        for run in inner.runs.iter().rev() {
            if run.filter.as_ref().is_none_or(|f| f.may_contain(digest))
                && let Some(id) = probe(conn, &run.probe, digest)?
            {
                return Ok(Some(id));
            }
        }
        if inner.merged.as_ref().is_some_and(|m| !m.may_contain(digest)) {
            return Ok(None);
        }
        probe(conn, MERGED_PROBE, digest)
    }

    /// Keys the writer committed (digest, event): recent now.
    pub fn added(&self, keys: &[(Digest, i64, i64)]) {
        if keys.is_empty() {
            return;
        }
        let mut inner = self.write();
        for (d, event_id, received_ms) in keys {
            inner.recent.insert(*d, *event_id);
            inner.recent_oldest_ms = inner.recent_oldest_ms.min(*received_ms);
        }
    }

    /// A key the writer took back (its event failed after all).
    pub fn forget(&self, digest: &Digest, event_id: i64) {
        let mut inner = self.write();
        if inner.recent.get(digest) == Some(&event_id) {
            inner.recent.remove(digest);
        }
    }

    /// The listed runs (their tables hold keys the writer may have to take back).
    pub fn run_tables(&self) -> Vec<String> {
        self.read().runs.iter().map(|r| run_table(r.id)).collect()
    }

    /// Recent keys held in memory now.
    pub fn recent_keys(&self) -> usize {
        self.read().recent.len()
    }
}

fn as_digest(bytes: &[u8]) -> Option<Digest> {
    bytes.try_into().ok()
}

const MERGED_PROBE: &str = "SELECT event_id FROM processed_keys WHERE digest = ?1";

fn probe_sql(table: &str) -> String {
    format!("SELECT event_id FROM {table} WHERE digest = ?1")
}

/// The event of `digest` by the lookup `sql` ([`probe_sql`]).
fn probe(conn: &Connection, sql: &str, digest: &Digest) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(sql)?.query_row([&digest[..]], |r| r.get(0)).optional()
}

/// The event that processed `digest`, read from the tables alone (a reader without the
/// server's tiers: the management API, tools): the merged table, the runs, then the recent
/// rows (no index by digest: a scan of at most a few hundred thousand small rows).
pub fn stored_event(conn: &Connection, digest: &Digest) -> rusqlite::Result<Option<i64>> {
    if let Some(id) = probe(conn, MERGED_PROBE, digest)? {
        return Ok(Some(id));
    }
    let runs: Vec<i64> = conn
        .prepare_cached("SELECT id FROM key_runs WHERE complete = 1 ORDER BY id DESC")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in runs {
        if let Some(id) = probe(conn, &probe_sql(&run_table(id)), digest)? {
            return Ok(Some(id));
        }
    }
    conn.prepare_cached("SELECT event_id FROM keys_recent WHERE digest = ?1 ORDER BY seq DESC LIMIT 1")?
        .query_row([&digest[..]], |r| r.get(0))
        .optional()
}

/// Builds the merged tier's filter from the whole table and stores it, in one transaction (a
/// bulk load's end: the keys it wrote went into the table alone).
pub fn store_filter(conn: &Connection) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    let filter = merged::fresh(&tx)?;
    merged::scan(&tx, &filter, false)?;
    filter.store(&tx)?;
    tx.commit()
}

/// A run being written: the recent rows up to `upto` (sorted by digest), `done` of them in.
struct Flush {
    id: i64,
    upto: i64,
    rows: Vec<(Digest, i64, i64)>,
    done: usize,
}

/// A merge of the runs `ids` (`keys` in all) into `processed_keys`, `slice` of
/// [`MERGE_SLICES`] done.
struct Merge {
    ids: Vec<i64>,
    keys: i64,
    slice: u32,
}

/// What the writer knows between two turns: keys received before `cutoff` are past the
/// retention window; while `hold` (the WAL is waiting to start again from its beginning) no
/// merge slice runs: a merge rewrites pages all over the merged table, and the WAL's copy
/// into the database catches up first.
#[derive(Clone, Copy, Debug, Default)]
pub struct Between {
    pub cutoff: Option<i64>,
    pub hold: bool,
}

/// The writer's share of the tiers: the flush and the merge under way, a slice of each per
/// turn, and the expiry of old keys.
pub struct Upkeep {
    flush: Option<Flush>,
    merge: Option<Merge>,
    /// Recent keys that make a run, runs merged together ([`RUN_KEYS`], [`MERGE_RUNS`]).
    sizes: (usize, usize),
    /// Keys committed since the last merge slice, and when it ran (`None`: a slice every
    /// step, for tests).
    pace: Option<(u64, std::time::Instant)>,
}

impl Default for Upkeep {
    fn default() -> Self {
        Self { pace: Some((0, std::time::Instant::now())), ..Self::with_sizes(RUN_KEYS, MERGE_RUNS) }
    }
}

impl Upkeep {
    /// Runs of `run_keys` recent keys, merged `merge_runs` at a time.
    /// Runs of `run_keys` recent keys, merged `merge_runs` at a time, a merge slice every step.
    pub fn with_sizes(run_keys: usize, merge_runs: usize) -> Self {
        Self { flush: None, merge: None, sizes: (run_keys.max(1), merge_runs.max(1)), pace: None }
    }

    /// `keys` were committed: the merge under way owes slices.
    pub fn arrived(&mut self, keys: usize) {
        if let Some((owed, _)) = &mut self.pace {
            *owed += keys as u64;
        }
    }

    /// Whether a slice of `merge` is due: half as many keys merged as arrive, and one slice
    /// every [`MERGE_EVERY`] at least.
    fn merge_due(&self, merge: &Merge) -> bool {
        let Some((owed, last)) = self.pace else { return true };
        let per_slice = (merge.keys as u64 / MERGE_SLICES as u64 / 2).max(1);
        owed >= per_slice || last.elapsed() >= MERGE_EVERY
    }

    /// Every table a key of the tiers may be in besides the recent one and `processed_keys`:
    /// the listed runs and the one being written.
    pub fn run_tables(&self, tiers: &Tiers) -> Vec<String> {
        let mut tables = tiers.run_tables();
        tables.extend(self.flush.as_ref().map(|f| run_table(f.id)));
        tables
    }

    /// A key the writer takes back: it is not written into the run under way.
    pub fn forget(&mut self, digest: &Digest, event_id: i64) {
        let Some(flush) = &mut self.flush else { return };
        if let Some(at) = flush.rows.iter().position(|r| &r.0 == digest && r.1 == event_id) {
            flush.rows.remove(at);
            if at < flush.done {
                flush.done -= 1;
            }
        }
    }

    /// The work due between two turns of the writer: the expiry of keys received before
    /// `now.cutoff` from the recent tier and the runs, a slice of the flush and one of the
    /// merge. Returns whether anything was written.
    pub fn step(&mut self, conn: &mut Connection, tiers: &Tiers, now: Between) -> rusqlite::Result<bool> {
        // Without an fsync of their own: each of these transactions leaves the tiers whole,
        // a crash can only lose the WAL's last frames (a suffix: done again), and the next
        // commit of events syncs the WAL with them in it before anyone is answered.
        // A filter a scan finished replaces the merged tier's, and is stored (not while the
        // WAL waits to start again).
        let built = if now.hold { None } else { tiers.built_filter() };
        let stored = match built.filter(|b| b.holds_any()) {
            Some(built) => {
                let tx = conn.transaction()?;
                built.store(&tx)?;
                tx.commit()?;
                true
            }
            None => false,
        };
        if !self.anything_due(tiers, now.cutoff) {
            return Ok(stored);
        }
        conn.pragma_update(None, "synchronous", "OFF")?;
        let done = self.work(conn, tiers, now);
        conn.pragma_update(None, "synchronous", "FULL")?;
        done.map(|wrote| wrote || stored)
    }

    /// Whether a step could have work: a flush or merge under way or due, keys to expire
    /// (most turns have none, and then touch nothing).
    fn anything_due(&self, tiers: &Tiers, cutoff: Option<i64>) -> bool {
        let inner = tiers.read();
        self.flush.is_some()
            || self.merge.is_some()
            || inner.recent.len() >= self.sizes.0
            || inner.runs.len() >= self.sizes.1
            || cutoff.is_some_and(|c| inner.recent_oldest_ms < c || inner.runs.iter().any(|r| r.oldest_ms < c))
    }

    fn work(
        &mut self,
        conn: &mut Connection,
        tiers: &Tiers,
        Between { cutoff, hold }: Between,
    ) -> rusqlite::Result<bool> {
        let mut wrote = false;
        if let Some(cutoff) = cutoff {
            wrote |= expire(conn, tiers, cutoff)?;
        }
        if self.flush.is_none() && tiers.recent_keys() >= self.sizes.0 {
            self.flush = Some(start_flush(conn)?);
        }
        if let Some(flush) = &mut self.flush {
            wrote = true;
            if flush_slice(conn, tiers, flush)? {
                self.flush = None;
            }
        }
        if self.merge.is_none() {
            let inner = tiers.read();
            if inner.runs.len() >= self.sizes.1 {
                let keys = inner.runs.iter().map(|r| r.keys).sum();
                self.merge = Some(Merge { ids: inner.runs.iter().map(|r| r.id).collect(), keys, slice: 0 });
            }
        }
        if let Some(merge) = &self.merge
            && !hold
            && self.merge_due(merge)
        {
            let per_slice = (merge.keys as u64 / MERGE_SLICES as u64 / 2).max(1);
            if let Some((owed, last)) = &mut self.pace {
                *owed = owed.saturating_sub(per_slice);
                *last = std::time::Instant::now();
            }
            wrote = true;
            let merge = self.merge.as_mut().expect("checked above");
            if merge_slice(conn, tiers, merge, cutoff.unwrap_or(i64::MIN))? {
                self.merge = None;
            }
        }
        if self.merge.is_none()
            && let Some((owed, _)) = &mut self.pace
        {
            *owed = 0;
        }
        Ok(wrote)
    }
}

/// Takes the recent rows there are now, sorted by digest (one row per digest: the first).
fn start_flush(conn: &mut Connection) -> rusqlite::Result<Flush> {
    let upto: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM keys_recent", [], |r| r.get(0))?;
    let mut rows: Vec<(Digest, i64, i64)> = Vec::new();
    {
        let mut stmt =
            conn.prepare("SELECT digest, event_id, received_ms FROM keys_recent WHERE seq <= ?1 ORDER BY seq")?;
        let mut found = stmt.query([upto])?;
        while let Some(row) = found.next()? {
            if let Some(d) = as_digest(&row.get::<_, Vec<u8>>(0)?) {
                rows.push((d, row.get(1)?, row.get(2)?));
            }
        }
    }
    rows.sort_by_key(|r| r.0);
    rows.dedup_by(|later, first| later.0 == first.0);
    let tx = conn.transaction()?;
    tx.execute("INSERT INTO key_runs (filter, keys, oldest_ms) VALUES (x'', 0, 0)", [])?;
    let id = tx.last_insert_rowid();
    tx.execute_batch(&format!(
        "DROP TABLE IF EXISTS {t};
         CREATE TABLE {t} (digest BLOB PRIMARY KEY, event_id INTEGER NOT NULL, received_ms INTEGER NOT NULL) WITHOUT ROWID;",
        t = run_table(id)
    ))?;
    tx.commit()?;
    Ok(Flush { id, upto, rows, done: 0 })
}

/// Writes the next slice of `flush`; the last one lists the run and drops the flushed recent
/// rows (in the same transaction), then moves their keys from memory to the run's filter.
/// Returns whether the run is complete.
fn flush_slice(conn: &mut Connection, tiers: &Tiers, flush: &mut Flush) -> rusqlite::Result<bool> {
    let table = run_table(flush.id);
    let end = (flush.done + FLUSH_SLICE).min(flush.rows.len());
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(&format!(
            "INSERT OR IGNORE INTO {table} (digest, event_id, received_ms) VALUES (?1, ?2, ?3)"
        ))?;
        for (d, event_id, received_ms) in &flush.rows[flush.done..end] {
            insert.execute(params![&d[..], event_id, received_ms])?;
        }
    }
    flush.done = end;
    let complete = end == flush.rows.len();
    let mut listed = None;
    if complete {
        let filter = Filter::build(flush.rows.iter().map(|r| &r.0));
        let oldest_ms = flush.rows.iter().map(|r| r.2).min().unwrap_or(i64::MAX);
        tx.execute(
            "UPDATE key_runs SET filter = ?2, keys = ?3, oldest_ms = ?4, complete = 1 WHERE id = ?1",
            params![flush.id, filter.to_bytes(), flush.rows.len() as i64, oldest_ms],
        )?;
        tx.execute("DELETE FROM keys_recent WHERE seq <= ?1", [flush.upto])?;
        let left: Option<i64> = tx.query_row("SELECT MIN(received_ms) FROM keys_recent", [], |r| r.get(0))?;
        let probe = probe_sql(&table);
        let run = Run { id: flush.id, probe, filter: Some(filter), oldest_ms, keys: flush.rows.len() as i64 };
        listed = Some((run, left.unwrap_or(i64::MAX)));
    }
    tx.commit()?;
    if let Some((run, left)) = listed {
        let mut inner = tiers.write();
        inner.runs.push(run);
        for (d, event_id, _) in &flush.rows {
            if inner.recent.get(d) == Some(event_id) {
                inner.recent.remove(d);
            }
        }
        inner.recent_oldest_ms = left;
        let held = inner.recent.len();
        inner.recent.shrink_to(held * 2);
    }
    Ok(complete)
}

/// Merges the next slice of the digest space of `merge`'s runs into `processed_keys` (keys
/// received before `cutoff` stay out); after the last, unlists the runs and drops them.
/// Returns whether the merge is done.
fn merge_slice(conn: &mut Connection, tiers: &Tiers, merge: &mut Merge, cutoff: i64) -> rusqlite::Result<bool> {
    let (lo, hi) = slice_bounds(merge.slice);
    let tx = conn.transaction()?;
    // One pass in digest order over the slice of every run: each leaf of the merged table it
    // reaches is changed once.
    let arms: Vec<String> = merge
        .ids
        .iter()
        .map(|id| {
            format!(
                "SELECT digest, event_id, received_ms FROM {} WHERE digest >= ?1 AND digest < ?2 AND received_ms >= ?3",
                run_table(*id)
            )
        })
        .collect();
    let arms = arms.join(" UNION ALL ");
    // Their bits first: a key in the merged table is in its filter (the runs are unlisted
    // only after the last slice, so until then they find it too).
    let digests: Vec<Digest> = tx
        .prepare_cached(&format!("SELECT digest FROM ({arms})"))?
        .query_map(params![&lo[..], &hi[..], cutoff], |r| r.get::<_, Vec<u8>>(0))?
        .filter_map(|d| d.map(|d| as_digest(&d)).transpose())
        .collect::<Result<_, _>>()?;
    tiers.merging(&digests);
    let sql = format!("INSERT OR IGNORE INTO processed_keys (digest, event_id, received_ms) {arms} ORDER BY digest");
    tx.prepare_cached(&sql)?.execute(params![&lo[..], &hi[..], cutoff])?;
    tx.commit()?;
    merge.slice += 1;
    if merge.slice < MERGE_SLICES {
        return Ok(false);
    }
    // Every key of the runs is in the merged table now: unlisted first (no lookup is under
    // way once the tiers are held for writing), then dropped.
    tiers.write().runs.retain(|r| !merge.ids.contains(&r.id));
    let tx = conn.transaction()?;
    for id in &merge.ids {
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {}; DELETE FROM key_runs WHERE id = {id};", run_table(*id)))?;
    }
    // The filter is stored with the runs' unlisting: a stored filter holds every key of the
    // table it was stored with.
    let merged = tiers.read().merged.clone();
    if let Some(merged) = merged.as_ref().filter(|m| m.ready()) {
        merged.store(&tx)?;
    }
    tx.commit()?;
    // None (a scan failed) or worn: a scan builds one (again).
    if merged.is_none_or(|m| m.worn()) {
        tiers.rebuild_filter(conn)?;
    }
    Ok(true)
}

/// The digests of slice `n` of [`MERGE_SLICES`]: from `lo` (inclusive) below `hi` (a blob
/// past every digest for the last slice).
fn slice_bounds(n: u32) -> (Vec<u8>, Vec<u8>) {
    let width = 65_536 / MERGE_SLICES;
    let at = |s: u32| {
        let v = s * width;
        if v >= 65_536 { vec![0xff; 17] } else { vec![(v >> 8) as u8, v as u8] }
    };
    (at(n), at(n + 1))
}

/// Drops the keys received before `cutoff` from the recent tier and the runs whose oldest
/// key is that old (usually none: keys arrive with the time they are received).
fn expire(conn: &mut Connection, tiers: &Tiers, cutoff: i64) -> rusqlite::Result<bool> {
    let (recent_old, old_runs): (bool, Vec<i64>) = {
        let inner = tiers.read();
        (inner.recent_oldest_ms < cutoff, inner.runs.iter().filter(|r| r.oldest_ms < cutoff).map(|r| r.id).collect())
    };
    if !recent_old && old_runs.is_empty() {
        return Ok(false);
    }
    let tx = conn.transaction()?;
    let mut gone = Vec::new();
    let mut left = None;
    if recent_old {
        let mut stmt = tx.prepare("DELETE FROM keys_recent WHERE received_ms < ?1 RETURNING digest, event_id")?;
        let mut rows = stmt.query([cutoff])?;
        while let Some(row) = rows.next()? {
            if let Some(d) = as_digest(&row.get::<_, Vec<u8>>(0)?) {
                gone.push((d, row.get::<_, i64>(1)?));
            }
        }
        drop(rows);
        drop(stmt);
        left = Some(tx.query_row("SELECT MIN(received_ms) FROM keys_recent", [], |r| r.get::<_, Option<i64>>(0))?);
    }
    let mut runs_left = Vec::new();
    for id in old_runs {
        let table = run_table(id);
        tx.execute(&format!("DELETE FROM {table} WHERE received_ms < ?1"), [cutoff])?;
        let oldest: Option<i64> = tx.query_row(&format!("SELECT MIN(received_ms) FROM {table}"), [], |r| r.get(0))?;
        let oldest = oldest.unwrap_or(i64::MAX);
        tx.execute("UPDATE key_runs SET oldest_ms = ?2 WHERE id = ?1", params![id, oldest])?;
        runs_left.push((id, oldest));
    }
    tx.commit()?;
    let mut inner = tiers.write();
    for (d, event_id) in gone {
        if inner.recent.get(&d) == Some(&event_id) {
            inner.recent.remove(&d);
        }
    }
    if let Some(left) = left {
        inner.recent_oldest_ms = left.unwrap_or(i64::MAX);
    }
    for (id, oldest) in runs_left {
        if let Some(run) = inner.runs.iter_mut().find(|r| r.id == id) {
            run.oldest_ms = oldest;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
