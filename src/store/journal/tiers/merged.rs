//! A Bloom filter in front of the merged tier (`processed_keys`): a new key is looked up on
//! disk only when the filter may hold it.
//!
//! Without it every new key descended the merged table's B-tree on a read connection, whose
//! page cache SQLite drops whenever the writer commits: on a journal of 10 M keys that was a
//! `pread` per level for every request. The filter has a fixed budget ([`MAX_BYTES`]), so its
//! false positives grow with the table (about one in two at 10 M keys); a key it rules out is
//! certainly not there.
//!
//! It is stored (`key_filter`) in the transaction that ends a merge, and read back at
//! start-up. Every key a merge puts into the table sets its bits first; its runs stay listed
//! (behind their own filters) until that transaction, so a key is never in the table without
//! being in the filter or in a listed run. A journal without a stored filter (an older one,
//! or one an older hookyard wrote to: its migration to version 7 drops the stored filter)
//! gets one built by a scan on a thread of its own after start-up; until it is done, every
//! lookup probes the table, as before. Keys the retention sweep removes leave their bits set:
//! once as many keys as twice its capacity went in, the filter is built again by a scan.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use rusqlite::{Connection, MAIN_DB, OptionalExtension, params};

use super::Digest;

/// The filter's largest size: 2 MiB (about 1.7 bits a key at 10 M keys: it rules out about
/// half the new keys there). 4 MiB ruled out four in five, but its 4 MB more memory held
/// would have taken the steady memory on such a journal past its 40 MB target for ~4 % of the
/// CPU per request (BENCHMARKS.md).
const MAX_BYTES: usize = 2 << 20;
/// The smallest filter made, in keys (4 KiB at [`BITS_PER_KEY`]; one a merge outgrows is
/// built again, larger).
const MIN_KEYS: u64 = 4_096;
/// Bits per key the filter is sized for, below its largest size (~2 % false positives).
const BITS_PER_KEY: u64 = 8;
/// Words stored or read back per blob access (64 KiB).
const CHUNK_WORDS: usize = 8_192;
/// Keys read per query of a scan (each query its own snapshot: the WAL can start again
/// from its beginning between two).
const SCAN_CHUNK: i64 = 16_384;

/// The filter's bits, shared by the lookups (read), the writer's merges and a scan (set).
pub struct Merged {
    words: Box<[AtomicU64]>,
    probes: u64,
    /// Keys it was sized for.
    capacity: u64,
    /// Keys whose bits were set since it was made.
    added: AtomicU64,
    /// Whether it holds every key of the table (a scan is done, or it was read back).
    ready: AtomicBool,
    /// Whether the scan building it failed.
    failed: AtomicBool,
}

impl Merged {
    /// An empty filter for about `keys` keys (and room to grow by half).
    fn sized(keys: u64) -> Self {
        let capacity = keys.saturating_add(keys / 2).max(MIN_KEYS);
        let bits = capacity.saturating_mul(BITS_PER_KEY).min(MAX_BYTES as u64 * 8).div_ceil(64) * 64;
        let probes = ((bits as f64 / capacity as f64) * std::f64::consts::LN_2).round().clamp(1.0, 6.0) as u64;
        let words = (0..bits / 64).map(|_| AtomicU64::new(0)).collect();
        let (added, ready, failed) = (AtomicU64::new(0), AtomicBool::new(false), AtomicBool::new(false));
        Self { words, probes, capacity, added, ready, failed }
    }

    /// Whether the scan building it failed (it is dropped; the next merge's end starts another).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    fn bits(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Sets the bits of `d`.
    pub fn insert(&self, d: &Digest) {
        for bit in super::probes(self.bits(), d, self.probes) {
            self.words[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        }
        self.added.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether `d` may be in the table (always, until the filter is ready).
    pub fn may_contain(&self, d: &Digest) -> bool {
        !self.ready()
            || super::probes(self.bits(), d, self.probes)
                .all(|bit| self.words[(bit / 64) as usize].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0)
    }

    /// Whether it holds any key (an empty table's filter is not stored: the next start's
    /// scan of nothing costs nothing).
    pub fn holds_any(&self) -> bool {
        self.added.load(Ordering::Relaxed) > 0
    }

    /// Whether it should be built again: twice as many keys went in as it was sized for.
    pub fn worn(&self) -> bool {
        self.ready() && self.added.load(Ordering::Relaxed) > 2 * self.capacity
    }

    /// Stores it (on the writer's connection, in the transaction `conn` is in), a chunk at
    /// a time: no second copy of it is made in memory.
    pub fn store(&self, conn: &Connection) -> rusqlite::Result<()> {
        let len = self.words.len() * 8;
        conn.execute(
            "INSERT OR REPLACE INTO key_filter (id, bits, probes, capacity, added) VALUES (1, zeroblob(?1), ?2, ?3, ?4)",
            params![len as i64, self.probes as i64, self.capacity as i64, self.added.load(Ordering::Relaxed) as i64],
        )?;
        let mut blob = conn.blob_open(MAIN_DB, c"key_filter", c"bits", 1, false)?;
        let mut buf = Vec::with_capacity(CHUNK_WORDS * 8);
        for (i, chunk) in self.words.chunks(CHUNK_WORDS).enumerate() {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes()));
            blob.write_at(&buf, i * CHUNK_WORDS * 8)?;
        }
        Ok(())
    }

    /// The stored filter, if there is a usable one (read a chunk at a time); one that cannot
    /// be read is not used (the lookups probe the table until a scan built another).
    pub fn load(conn: &Connection) -> Option<Self> {
        Self::read(conn).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "journal: the stored merged keys' filter cannot be read; it is built again");
            None
        })
    }

    fn read(conn: &Connection) -> rusqlite::Result<Option<Self>> {
        let row: Option<(i64, i64, i64, i64)> = conn
            .query_row("SELECT length(bits), probes, capacity, added FROM key_filter WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((len, probes, capacity, added)) = row else { return Ok(None) };
        if len <= 0 || len % 8 != 0 || len as usize > MAX_BYTES || !(1..=16).contains(&probes) || capacity < 1 {
            return Ok(None);
        }
        let blob = conn.blob_open(MAIN_DB, c"key_filter", c"bits", 1, true)?;
        let mut words = Vec::with_capacity(len as usize / 8);
        let mut buf = vec![0u8; CHUNK_WORDS * 8];
        while words.len() < len as usize / 8 {
            let n = (len as usize - words.len() * 8).min(buf.len());
            blob.read_at_exact(&mut buf[..n], words.len() * 8)?;
            words.extend(
                buf[..n].chunks_exact(8).map(|c| AtomicU64::new(u64::from_le_bytes(c.try_into().unwrap_or_default()))),
            );
        }
        Ok(Some(Self {
            words: words.into_boxed_slice(),
            probes: probes as u64,
            capacity: capacity as u64,
            added: AtomicU64::new(added.max(0) as u64),
            ready: AtomicBool::new(true),
            failed: AtomicBool::new(false),
        }))
    }
}

/// About how many keys `processed_keys` holds, from where its 4,096th smallest digest lies
/// (digests are uniform): a few pages read, not the table.
fn estimate(conn: &Connection) -> rusqlite::Result<u64> {
    const AT: i64 = 4_096;
    let nth: Option<Vec<u8>> = conn
        .query_row("SELECT digest FROM processed_keys ORDER BY digest LIMIT 1 OFFSET ?1", [AT - 1], |r| r.get(0))
        .optional()?;
    let Some(nth) = nth else {
        return conn.query_row("SELECT COUNT(*) FROM processed_keys", [], |r| r.get::<_, i64>(0)).map(|n| n as u64);
    };
    let mut top = [0u8; 8];
    let n = nth.len().min(8);
    top[..n].copy_from_slice(&nth[..n]);
    let share = (u64::from_be_bytes(top) as f64 + 1.0) / 2f64.powi(64);
    Ok((AT as f64 / share).min(1e15) as u64)
}

/// A new, empty filter sized for the table as it is now (not ready: a [`scan`] fills it).
pub fn fresh(conn: &Connection) -> rusqlite::Result<Merged> {
    Ok(Merged::sized(estimate(conn)?))
}

/// Sets the bits of every key of `processed_keys` (read through `conn`, a query a chunk)
/// and marks it ready. `pause`: after each chunk, wait as long as it took (a scan beside a
/// serving writer takes at most about half a core).
pub fn scan(conn: &Connection, into: &Merged, pause: bool) -> rusqlite::Result<u64> {
    let mut stmt = conn.prepare("SELECT digest FROM processed_keys WHERE digest > ?1 ORDER BY digest LIMIT ?2")?;
    let mut after: Vec<u8> = Vec::new();
    let mut keys = 0u64;
    loop {
        let began = Instant::now();
        let mut rows = stmt.query(params![after, SCAN_CHUNK])?;
        let mut read = 0;
        while let Some(row) = rows.next()? {
            let d: Vec<u8> = row.get(0)?;
            if let Ok(digest) = <Digest>::try_from(d.as_slice()) {
                into.insert(&digest);
            }
            after = d;
            read += 1;
        }
        keys += read as u64;
        if read < SCAN_CHUNK {
            break;
        }
        if pause {
            std::thread::sleep(began.elapsed());
        }
    }
    into.ready.store(true, Ordering::Release);
    Ok(keys)
}

/// Builds `into` by a scan of the journal at `path` on a thread of its own; a failure is
/// logged (the lookups keep probing the table).
pub fn scan_in_background(path: PathBuf, into: Arc<Merged>) {
    let into_failed = into.clone();
    let spawned = std::thread::Builder::new().name("key-filter".into()).spawn(move || {
        let began = Instant::now();
        let scanned = open_reader(&path).and_then(|conn| scan(&conn, &into, true));
        match scanned {
            Ok(keys) => tracing::info!(keys, ms = began.elapsed().as_millis() as u64, "journal: merged keys' filter built"),
            Err(e) => {
                into.failed.store(true, Ordering::Release);
                tracing::warn!(error = %e, "journal: cannot build the merged keys' filter; every new key is looked up on disk")
            }
        }
    });
    if let Err(e) = spawned {
        into_failed.failed.store(true, Ordering::Release);
        tracing::warn!(error = %e, "journal: cannot start building the merged keys' filter");
    }
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform digests without hashing (splitmix64), as many as a test needs.
    fn digests(from: u64, n: u64) -> impl Iterator<Item = Digest> {
        (from..from + n).map(|i| {
            let mix = |mut z: u64| {
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            };
            let (a, b) = (mix(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)), mix(i ^ 0x5555_5555_5555_5555));
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&a.to_le_bytes());
            d[8..].copy_from_slice(&b.to_le_bytes());
            d
        })
    }

    fn false_positives(filter: &Merged, n: u64) -> f64 {
        digests(1 << 40, n).filter(|d| filter.may_contain(d)).count() as f64 / n as f64
    }

    #[test]
    fn a_filter_is_no_bigger_than_its_budget_and_rules_out_half_the_keys_at_ten_million() {
        let filter = Merged::sized(10_000_000);
        assert_eq!(filter.words.len() * 8, MAX_BYTES);
        filter.ready.store(true, Ordering::Release);
        for d in digests(0, 10_000_000) {
            filter.insert(&d);
        }
        assert!(digests(0, 100_000).all(|d| filter.may_contain(&d)), "no false negative");
        let fp = false_positives(&filter, 100_000);
        assert!(fp < 0.5, "{fp:.3} of other keys pass at 10 M keys in 2 MiB (about 0.45 expected)");
    }

    #[test]
    fn a_filter_sized_for_any_count_has_bits() {
        for keys in [0, 1, u64::MAX / 2, u64::MAX] {
            let filter = Merged::sized(keys);
            assert!(filter.bits() >= 64 && filter.words.len() * 8 <= MAX_BYTES && (1..=6).contains(&filter.probes));
        }
    }

    #[test]
    fn a_small_filter_has_few_false_positives_and_wears_out_after_twice_its_capacity() {
        let filter = Merged::sized(0);
        assert_eq!(filter.capacity, MIN_KEYS);
        assert!(filter.may_contain(&[7; 16]), "not ready: everything may be in the table");
        filter.ready.store(true, Ordering::Release);
        for d in digests(0, MIN_KEYS) {
            filter.insert(&d);
        }
        let fp = false_positives(&filter, 100_000);
        assert!(fp < 0.05, "{fp:.3} of other keys pass at capacity (about 0.02 expected)");
        assert!(!filter.worn());
        for d in digests(MIN_KEYS, MIN_KEYS + 1) {
            filter.insert(&d);
        }
        assert!(filter.worn(), "built again once twice its capacity went in");
    }

    #[test]
    fn the_table_size_is_estimated_from_a_few_pages() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::journal::schema::open(&dir.path().join("journal.db")).unwrap();
        assert_eq!(estimate(&conn).unwrap(), 0);
        let tx = conn.unchecked_transaction().unwrap();
        for d in digests(0, 100) {
            tx.execute("INSERT INTO processed_keys (digest, event_id, received_ms) VALUES (?1, 1, 0)", [&d[..]])
                .unwrap();
        }
        tx.commit().unwrap();
        assert_eq!(estimate(&conn).unwrap(), 100, "counted below 4,096 keys");
        let tx = conn.unchecked_transaction().unwrap();
        for d in digests(100, 199_900) {
            tx.execute("INSERT INTO processed_keys (digest, event_id, received_ms) VALUES (?1, 1, 0)", [&d[..]])
                .unwrap();
        }
        tx.commit().unwrap();
        let n = estimate(&conn).unwrap();
        assert!((170_000..230_000).contains(&n), "200,000 keys estimated as {n}");
    }

    #[test]
    fn a_stored_filter_reads_back_whole_and_a_damaged_one_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::journal::schema::open(&dir.path().join("journal.db")).unwrap();
        assert!(Merged::load(&conn).is_none());
        let filter = Merged::sized(1_000);
        for d in digests(0, 1_000) {
            filter.insert(&d);
        }
        filter.store(&conn).unwrap();
        let back = Merged::load(&conn).unwrap();
        assert!(back.ready() && back.probes == filter.probes && back.capacity == filter.capacity);
        assert!(digests(0, 1_000).all(|d| back.may_contain(&d)));
        assert_eq!(back.added.load(Ordering::Relaxed), 1_000);
        conn.execute("UPDATE key_filter SET bits = x'010203'", []).unwrap();
        assert!(Merged::load(&conn).is_none());
        conn.execute("UPDATE key_filter SET bits = 'text'", []).unwrap();
        assert!(Merged::load(&conn).is_none(), "a value that is no blob: not used, and the journal still opens");
        conn.execute("UPDATE key_filter SET bits = zeroblob(?1)", [MAX_BYTES as i64 * 2]).unwrap();
        assert!(Merged::load(&conn).is_none(), "larger than the budget");
    }
}
