//! Store benchmark: prints the raw redb ceiling for the append batch shape,
//! the store's durable append rate (64 appenders on one ledger and on 64
//! ledgers), inclusion-proof latency and open time at 1M records, and bytes
//! on disk per record. Run in release:
//! `cargo run --release -p annal-store --example bench [-- --records N]`.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use annal_chain::{LedgerName, Seq, TenantId};
use annal_store::{AppendRequest, OpenOptions, Position, Store};
use redb::{Durability, TableDefinition};

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

/// One round: the mean raw rate, each store shape's ratio to its
/// neighbouring raw runs, and the store rates (1 ledger, 64, 64 from 8 threads).
struct Round {
    raw: f64,
    one: f64,
    many: f64,
    many_p: f64,
    one_p: f64,
    many_spread: f64,
    rates: (f64, f64, f64, f64),
}

fn request(ledger: &str, ts: u64) -> AppendRequest {
    AppendRequest {
        tenant: TenantId::new("bench").unwrap(),
        ledger: LedgerName::new(ledger).unwrap(),
        position: Position::Next,
        timestamp_ms: ts,
        content_type: "application/octet-stream".into(),
        payload: vec![(ts % 251) as u8; PAYLOAD_BYTES],
        parents: vec![],
        idempotency_key: None,
    }
}

/// Durable transactions of 64 inserts of 256-byte values, back to back.
fn raw_ceiling(dir: &std::path::Path, spread: u64, round: usize) -> f64 {
    const T: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("t");
    let db = redb::Database::create(dir.join(format!("raw{spread}-{round}.redb"))).unwrap();
    let value = [7u8; PAYLOAD_BYTES];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(Durability::Immediate).unwrap();
        {
            let mut t = txn.open_table(T).unwrap();
            for _ in 0..BATCH {
                t.insert((n % spread, n / spread), value.as_slice()).unwrap();
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
fn store_rate(dir: &std::path::Path, ledgers: usize, threads: usize) -> (f64, f64) {
    let options = OpenOptions { batch_linger: linger(), ..OpenOptions::default() };
    let store = Arc::new(Store::open(dir, options).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let per_thread = APPENDERS / threads;
    let threads: Vec<_> = (0..threads)
        .map(|i| {
            let (store, stop, count) = (store.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                let ledgers: Vec<String> =
                    (0..per_thread).map(|k| format!("l{}", (i * per_thread + k) % ledgers)).collect();
                let mut ts = 0;
                let mut inflight: std::collections::VecDeque<_> =
                    ledgers.iter().map(|l| (l, store.append(request(l, 0)))).collect();
                while let Some((ledger, ticket)) = inflight.pop_front() {
                    ticket.wait().unwrap().unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                    if !stop.load(Ordering::Relaxed) {
                        ts += 1;
                        inflight.push_back((ledger, store.append(request(ledger, ts))));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = count.load(Ordering::Relaxed) as f64;
    (n / secs, n)
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
    let mut rows = Vec::new();
    for round in 0..ROUNDS {
        let raw_a = raw_ceiling(base.path(), 1, 4 * round);
        let (one, _) = store_rate(&base.path().join(format!("one{round}")), 1, APPENDERS);
        let raw_b = raw_ceiling(base.path(), 1, 4 * round + 1);
        let (many, _) = store_rate(&base.path().join(format!("many{round}")), 64, APPENDERS);
        let raw_c = raw_ceiling(base.path(), 1, 4 * round + 2);
        let (many_p, _) = store_rate(&base.path().join(format!("manyp{round}")), 64, 8);
        let raw_d = raw_ceiling(base.path(), 1, 4 * round + 3);
        let (one_p, _) = store_rate(&base.path().join(format!("onep{round}")), 1, 8);
        let raw64 = raw_ceiling(base.path(), 64, round);
        println!(
            "round {round}: raw {raw_a:.0}/s, store 1 ledger {one:.0}/s, raw {raw_b:.0}/s, store 64 ledgers {many:.0}/s, raw {raw_c:.0}/s, 64 ledgers from 8 threads {many_p:.0}/s, raw {raw_d:.0}/s, 1 ledger from 8 threads {one_p:.0}/s, raw spread {raw64:.0}/s"
        );
        rows.push(Round {
            raw: (raw_a + raw_b + raw_c + raw_d) / 4.0,
            one: one / ((raw_a + raw_b) / 2.0),
            many: many / ((raw_b + raw_c) / 2.0),
            many_p: many_p / ((raw_c + raw_d) / 2.0),
            one_p: one_p / raw_d,
            many_spread: many / raw64,
            rates: (one, many, many_p, one_p),
        });
    }
    let median = |f: &dyn Fn(&Round) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "raw redb ceiling (durable txns of {BATCH} x {PAYLOAD_BYTES} B inserts): median {:.0} inserts/s",
        median(&|r| r.raw)
    );
    println!(
        "store, 64 blocking appenders, 1 ledger:   median {:.0} appends/s; median ratio to its neighbouring raw runs {:.0}%",
        median(&|r| r.rates.0),
        100.0 * median(&|r| r.one)
    );
    println!(
        "store, 64 blocking appenders, 64 ledgers: median {:.0} appends/s; median ratio {:.0}% (to raw with keys spread over 64 prefixes: {:.0}%)",
        median(&|r| r.rates.1),
        100.0 * median(&|r| r.many),
        100.0 * median(&|r| r.many_spread)
    );
    println!(
        "store, 64 in flight from 8 threads, 64 ledgers: median {:.0} appends/s; median ratio {:.0}%",
        median(&|r| r.rates.2),
        100.0 * median(&|r| r.many_p)
    );
    println!(
        "store, 64 in flight from 8 threads, 1 ledger:   median {:.0} appends/s; median ratio {:.0}%",
        median(&|r| r.rates.3),
        100.0 * median(&|r| r.one_p)
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
}
