//! Store benchmark: prints the raw redb ceiling for the append batch shape,
//! the store's durable append rate (64 appenders on one ledger and on 64
//! ledgers), inclusion-proof latency and open time at 1M records, and bytes
//! on disk per record. Run in release:
//! `cargo run --release -p annal-store --example bench [-- --records N]`;
//! with N below 64 (one per appender thread) the 1M-record part is skipped.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use annal_chain::{LedgerName, Seq, TenantId};
use annal_store::{AppendRequest, OpenOptions, Position, Store};
use redb::{Durability, ReadableTable, TableDefinition};

/// The allocator annald links (daemon/src/main.rs), so that the store is
/// measured as it runs in the daemon; glibc malloc and free were about a
/// quarter of the committer's time on 64 ledgers. `main` also turns off
/// transparent huge pages, as annald does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PAYLOAD_BYTES: usize = 256;
const BATCH: u64 = 64;
const APPENDERS: usize = 64;
const RUN: Duration = Duration::from_millis(1500);
const ROUNDS: usize = 7;

/// The append shapes: (label, ledgers, caller threads keeping 64 appends in
/// flight, whether every append carries an idempotency key).
const SHAPES: [(&str, usize, usize, bool); 5] = [
    ("64 blocking appenders, 1 ledger", 1, APPENDERS, false),
    ("64 blocking appenders, 64 ledgers", 64, APPENDERS, false),
    ("64 in flight from 8 threads, 64 ledgers", 64, 8, false),
    ("64 in flight from 8 threads, 1 ledger", 1, 8, false),
    ("64 in flight from 8 threads, 1 ledger, each with an idempotency key", 1, 8, true),
];

/// One shape in one round.
#[derive(Clone, Copy)]
struct Sample {
    store: Run,
    /// The store's rate over the mean of the raw ceiling runs either side.
    of_ceiling: f64,
    /// The store's rate over raw transactions of the store's batch size.
    of_same_batch: f64,
    /// The store's rate over the bare group commit with the same callers.
    of_bare: f64,
    bare: Run,
}

fn request(ledger: &str, ts: u64) -> AppendRequest {
    keyed_request(ledger, ts, None)
}

fn keyed_request(ledger: &str, ts: u64, idempotency_key: Option<String>) -> AppendRequest {
    AppendRequest {
        tenant: TenantId::new("bench").unwrap(),
        ledger: LedgerName::new(ledger).unwrap(),
        position: Position::Next,
        timestamp_ms: ts,
        content_type: "application/octet-stream".into(),
        payload: vec![(ts % 251) as u8; PAYLOAD_BYTES],
        parents: vec![],
        idempotency_key,
    }
}

/// Durable transactions of 64 inserts of 256-byte values, back to back.
fn raw_ceiling(dir: &std::path::Path, spread: u64, round: usize) -> f64 {
    raw_txns(dir, spread, BATCH, false, &format!("raw{spread}-{round}"))
}

/// Durable transactions of `batch` inserts of 256-byte values, back to back,
/// keys spread over `spread` prefixes. With `keyed`, each insert also looks
/// up and inserts a row keyed by a client-chosen key in a second table, as
/// a keyed append does (`8 + 7..13`-byte keys, 72-byte rows, keys
/// `k<thread>-<n>` from 8 interleaved callers): the fair bare ceiling for
/// keyed appends, which pay a second B-tree insert wherever the key sorts.
fn raw_txns(dir: &std::path::Path, spread: u64, batch: u64, keyed: bool, name: &str) -> f64 {
    const T: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("t");
    const K: TableDefinition<&[u8], &[u8]> = TableDefinition::new("k");
    let db = redb::Database::create(dir.join(format!("{name}.redb"))).unwrap();
    let value = [7u8; PAYLOAD_BYTES];
    let row = [9u8; 72];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(Durability::Immediate).unwrap();
        {
            let mut t = txn.open_table(T).unwrap();
            // Only keyed runs have the key table: the ceiling stays the
            // plain one-table loop.
            let mut k = keyed.then(|| txn.open_table(K).unwrap());
            for _ in 0..batch {
                t.insert((n % spread, n / spread), value.as_slice()).unwrap();
                if let Some(k) = k.as_mut() {
                    let mut key = 1u64.to_be_bytes().to_vec();
                    key.extend_from_slice(format!("k{}-{}", n % 8, n / 8).as_bytes());
                    assert!(k.get(key.as_slice()).unwrap().is_none());
                    k.insert(key.as_slice(), row.as_slice()).unwrap();
                }
                n += 1;
            }
        }
        txn.commit().unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// `threads` threads each keep `APPENDERS / threads` appends in flight, so
/// 64 appends are always outstanding: the shape of 64 async tasks awaiting
/// their tickets on a few runtime threads. `threads == APPENDERS` is 64
/// blocking OS threads.
/// With `keyed`, every append carries an idempotency key of its own.
fn store_rate(dir: &std::path::Path, ledgers: usize, threads: usize, keyed: bool) -> Run {
    let options = OpenOptions { batch_linger: linger(), ..OpenOptions::default() };
    let store = Arc::new(Store::open(dir, options).unwrap());
    let commits_before = store.commits();
    let names: Vec<String> = (0..ledgers).map(|l| format!("l{l}")).collect();
    let per_thread = APPENDERS / threads;
    let appender = store.clone();
    let (n, secs) = drive(threads, move |i, slot, n| {
        let key = keyed.then(|| format!("k{i}-{n}"));
        let ticket = appender.append(keyed_request(&names[(i * per_thread + slot) % ledgers], n, key));
        move || {
            ticket.wait().unwrap().unwrap();
        }
    });
    // `commits` goes up by one per committed transaction.
    let commits = store.commits().wrapping_sub(commits_before).max(1);
    Run { rate: n / secs, per_commit: n / commits as f64 }
}

/// The callers of both append runs, for `RUN`: `threads` threads, each
/// keeping `APPENDERS / threads` appends in flight and waiting for them in
/// the order it queued them; a slot whose append was acknowledged queues the
/// next. `submit(thread, slot, n)` queues the thread's `n`th append and
/// returns what blocks until it is acknowledged. Returns the appends
/// acknowledged and the seconds they took.
fn drive<S, W>(threads: usize, submit: S) -> (f64, f64)
where
    S: Fn(usize, usize, u64) -> W + Send + Sync + 'static,
    W: FnOnce(),
{
    let submit = Arc::new(submit);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let per_thread = APPENDERS / threads;
    let callers: Vec<_> = (0..threads)
        .map(|i| {
            let (submit, stop, count) = (submit.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                let mut next = |slot: usize| {
                    n += 1;
                    (slot, submit(i, slot, n))
                };
                let mut inflight: std::collections::VecDeque<_> = (0..per_thread).map(&mut next).collect();
                while let Some((slot, acked)) = inflight.pop_front() {
                    acked();
                    count.fetch_add(1, Ordering::Relaxed);
                    if !stop.load(Ordering::Relaxed) {
                        inflight.push_back(next(slot));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.join().unwrap();
    }
    (count.load(Ordering::Relaxed) as f64, start.elapsed().as_secs_f64())
}

/// One append run: appends/s, and appends per commit.
#[derive(Clone, Copy)]
struct Run {
    rate: f64,
    per_commit: f64,
}

/// A minimal group commit on bare redb, driven by the same callers as
/// `store_rate`: each caller queues a 256-byte value and waits until the
/// transaction holding it committed (`Durability::Immediate`); one thread
/// takes what is queued (up to the store's batch cap), inserts it and
/// commits; another wakes the callers. No chain, no Merkle state, no
/// records log: what bare inserts reach once 64 callers each wait for their
/// own commit, which the back-to-back ceiling leaves out.
fn bare_group_commit(dir: &std::path::Path, threads: usize, name: &str) -> Run {
    use std::sync::mpsc::{SyncSender, channel, sync_channel};
    const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");
    let db = redb::Database::create(dir.join(format!("{name}.redb"))).unwrap();
    let (queue, queued) = channel::<([u8; PAYLOAD_BYTES], SyncSender<()>)>();
    let (acks, to_ack) = channel::<Vec<SyncSender<()>>>();
    let acker = std::thread::spawn(move || {
        while let Ok(batch) = to_ack.recv() {
            for reply in batch {
                let _ = reply.send(());
            }
        }
    });
    let commits = Arc::new(AtomicU64::new(0));
    let committer = {
        let commits = commits.clone();
        std::thread::spawn(move || {
            let mut key = 0u64;
            while let Ok(first) = queued.recv() {
                let mut batch = vec![first];
                while batch.len() < annal_store::limits::BATCH_WRITES_MAX {
                    match queued.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                let mut txn = db.begin_write().unwrap();
                txn.set_durability(Durability::Immediate).unwrap();
                {
                    let mut t = txn.open_table(T).unwrap();
                    for (value, _) in &batch {
                        t.insert(key, value.as_slice()).unwrap();
                        key += 1;
                    }
                }
                txn.commit().unwrap();
                commits.fetch_add(1, Ordering::Relaxed);
                acks.send(batch.into_iter().map(|(_, reply)| reply).collect()).unwrap();
            }
        })
    };
    // The callers' closure holds the queue's only sender: once `drive`
    // returns, the committer sees the queue close and ends.
    let (n, secs) = drive(threads, move |_, _, n| {
        let (reply, ticket) = sync_channel(1);
        queue.send(([(n % 251) as u8; PAYLOAD_BYTES], reply)).unwrap();
        move || ticket.recv().unwrap()
    });
    committer.join().unwrap();
    acker.join().unwrap();
    Run { rate: n / secs, per_commit: n / commits.load(Ordering::Relaxed).max(1) as f64 }
}

/// `--linger-us N`: the committer's batch linger for the append runs
/// (default 0, as the daemon runs it).
fn linger() -> Duration {
    let us =
        std::env::args().skip_while(|a| a != "--linger-us").nth(1).map(|v| v.parse().expect("--linger-us N"));
    Duration::from_micros(us.unwrap_or(0))
}

fn main() {
    // As annald: the flush's run buffers came back as fresh 2 MiB pages that
    // the kernel zeroed whole (about a tenth of the 64-ledger shape's CPU).
    nix::sys::prctl::set_thp_disable(true).expect("prctl(PR_SET_THP_DISABLE)");
    let records: u64 = std::env::args()
        .skip_while(|a| a != "--records")
        .nth(1)
        .map(|v| v.parse().expect("--records N"))
        .unwrap_or(1_000_000);
    let base = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    println!(
        "annal-store bench: {PAYLOAD_BYTES}-byte payloads, {APPENDERS} appenders, {} ms per run, batch linger {} us",
        RUN.as_millis(),
        linger().as_micros()
    );

    // Disk and CPU speed drift on a shared machine by up to 10x within a
    // minute (ext4 fdatasync is bimodal here: ~0.3 ms, or several ms when it
    // has to wait for a journal commit shared with other tenants' I/O), so
    // measure in short interleaved rounds in which every store run sits
    // between two raw runs, and report the median of the per-round ratios of
    // each store run to the mean of its two neighbouring raw runs.
    raw_ceiling(base.path(), 1, 0);
    let mut raws = Vec::new();
    let mut rounds: Vec<[Sample; SHAPES.len()]> = Vec::new();
    let mut spread = Vec::new();
    for round in 0..ROUNDS {
        let mut before = raw_ceiling(base.path(), 1, 10 * round);
        raws.push(before);
        let mut samples = Vec::new();
        for (k, (label, ledgers, threads, keyed)) in SHAPES.into_iter().enumerate() {
            let store = store_rate(&base.path().join(format!("s{k}-{round}")), ledgers, threads, keyed);
            let after = raw_ceiling(base.path(), 1, 10 * round + k + 1);
            raws.push(after);
            let batch = (store.per_commit.round() as u64).max(1);
            let same_batch = raw_txns(base.path(), 1, batch, keyed, &format!("batch{k}-{round}"));
            let bare = bare_group_commit(base.path(), threads, &format!("bare{k}-{round}"));
            println!(
                "round {round}: {label}: store {:.0}/s ({:.1} per commit); raw ceiling {before:.0}/s then {after:.0}/s; raw at {batch} per txn{} {same_batch:.0}/s; bare group commit {:.0}/s ({:.1} per commit)",
                store.rate,
                store.per_commit,
                if keyed { " (with keys)" } else { "" },
                bare.rate,
                bare.per_commit
            );
            samples.push(Sample {
                store,
                of_ceiling: store.rate / ((before + after) / 2.0),
                of_same_batch: store.rate / same_batch,
                of_bare: store.rate / bare.rate,
                bare,
            });
            before = after;
        }
        if round == 0 || round == ROUNDS - 1 {
            let many = samples[1].store.rate;
            spread.push(many / raw_ceiling(base.path(), 64, round));
        }
        rounds.push(std::array::from_fn(|k| samples[k]));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "raw redb ceiling (durable txns of {BATCH} x {PAYLOAD_BYTES} B inserts): median {:.0} inserts/s",
        median(raws.clone())
    );
    println!(
        "medians over {ROUNDS} rounds | appends/s | of ceiling | per commit | of raw at that batch | bare group commit/s (per commit) | of bare"
    );
    for (k, (label, _, _, _)) in SHAPES.iter().enumerate() {
        let m = |f: &dyn Fn(&Sample) -> f64| median(rounds.iter().map(|r| f(&r[k])).collect());
        println!(
            "store, {label}: {:.0} | {:.0}% | {:.1} | {:.0}% | {:.0} ({:.1}) | {:.0}%",
            m(&|s| s.store.rate),
            100.0 * m(&|s| s.of_ceiling),
            m(&|s| s.store.per_commit),
            100.0 * m(&|s| s.of_same_batch),
            m(&|s| s.bare.rate),
            m(&|s| s.bare.per_commit),
            100.0 * m(&|s| s.of_bare),
        );
    }
    println!(
        "store, 64 blocking appenders, 64 ledgers, to raw with keys spread over 64 prefixes: {:.0}% (first and last round)",
        100.0 * median(spread)
    );

    // A 1M-record ledger, filled through the normal append path.
    let big = base.path().join("big");
    let store = Arc::new(Store::open(&big, OpenOptions::default()).unwrap());
    let start = Instant::now();
    let per = records / APPENDERS as u64;
    let threads: Vec<_> = (0..APPENDERS as u64)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                // A few tickets in flight per appender keeps batches full.
                let mut inflight = std::collections::VecDeque::new();
                for k in 0..per {
                    inflight.push_back(store.append(request("big", i * per + k)));
                    if inflight.len() >= 8 {
                        inflight.pop_front().unwrap().wait().unwrap().unwrap();
                    }
                }
                for t in inflight {
                    t.wait().unwrap().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n = per * APPENDERS as u64;
    if n == 0 {
        // `--records` below one per appender: only the append runs.
        return;
    }
    println!(
        "filled {n} records in {:.1}s ({:.0}/s)",
        start.elapsed().as_secs_f64(),
        n as f64 / start.elapsed().as_secs_f64()
    );
    Arc::into_inner(store).unwrap().close().unwrap();
    let meta = std::fs::metadata(big.join(annal_store::DB_FILE_NAME)).unwrap();
    for (what, bytes) in [("file length", meta.len()), ("allocated blocks", meta.blocks() * 512)] {
        println!(
            "bytes on disk ({what}): {bytes} = {:.0} B/record (payload {PAYLOAD_BYTES} B, overhead {:.0} B)",
            bytes as f64 / n as f64,
            bytes as f64 / n as f64 - PAYLOAD_BYTES as f64
        );
    }

    {
        let db = redb::Database::open(big.join(annal_store::DB_FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        let st = txn.stats().unwrap();
        println!(
            "redb stats: allocated {} pages x {} B, leaf {}, branch {}, stored {} B, metadata {} B, fragmented {} B",
            st.allocated_pages(),
            st.page_size(),
            st.leaf_pages(),
            st.branch_pages(),
            st.stored_bytes(),
            st.metadata_bytes(),
            st.fragmented_bytes()
        );
        txn.abort().unwrap();
    }
    let mut opens = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let s = Store::open(&big, OpenOptions::default()).unwrap();
        opens.push(t.elapsed());
        s.close().unwrap();
    }
    opens.sort();
    println!("open (clean, {n} records): median {:?}, max {:?}", opens[2], opens[4]);

    let store = Store::open(&big, OpenOptions::default()).unwrap();
    let (t, l) = (TenantId::new("bench").unwrap(), LedgerName::new("big").unwrap());
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut times = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let seq = x % n;
        let t0 = Instant::now();
        let proof = store.inclusion_proof(&t, &l, Seq::new(seq), n).unwrap();
        times.push(t0.elapsed());
        assert!(!proof.is_empty());
    }
    times.sort();
    println!(
        "inclusion proof at {n}: median {:?}, p99 {:?}",
        times[times.len() / 2],
        times[times.len() * 99 / 100]
    );
    let t0 = Instant::now();
    let report = store.check(&[]).unwrap();
    println!(
        "check of {} records: {:.1}s, failure {:?}",
        report.records,
        t0.elapsed().as_secs_f64(),
        report.failure
    );
    crash_open(store, &big, &base.path().join("crashed"), n);
}

/// Open after a crash, the slow case: the store holds `n` records and
/// nearly a full append log that a clean close would have flushed (64
/// ledgers with 8 appends each per commit, just under the flush's commit
/// and record bounds), so open must let redb recover the file and replay
/// and re-hash the whole log. The crash is a copy of the data directory
/// taken while the store is open and every write is acknowledged: what a
/// power cut leaves once the last commit returned.
fn crash_open(store: Store, dir: &std::path::Path, copy: &std::path::Path, n: u64) {
    use annal_store::limits::{BATCH_WRITES_MAX, TAIL_FLUSH_COMMITS, TAIL_RECORDS_MAX};
    let commits_before = store.commits();
    let mut logged = 0;
    // A wave usually commits in one to three transactions; stop well short
    // of the flush.
    while store.commits() - commits_before + 8 < TAIL_FLUSH_COMMITS
        && logged + BATCH_WRITES_MAX < TAIL_RECORDS_MAX
    {
        let wave: Vec<_> =
            (0..BATCH_WRITES_MAX).map(|i| store.append(request(&format!("l{}", i % 64), i as u64))).collect();
        for ticket in wave {
            ticket.wait().unwrap().unwrap();
        }
        logged += BATCH_WRITES_MAX;
    }
    std::fs::create_dir_all(copy).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
    }
    let commits = store.commits() - commits_before;
    drop(store);
    let t = Instant::now();
    let reopened = Store::open(copy, OpenOptions::default()).unwrap();
    let took = t.elapsed();
    println!(
        "open after a crash ({} records, the last {logged} of them in the append log over {commits} commits): {took:?}",
        n + logged as u64
    );
    drop(reopened);
}
