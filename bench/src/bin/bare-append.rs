//! The floor under issue 4's append target: about the least a durable append
//! over HTTP costs on annald's stack, measured with the same wrk scripts
//! (`bench/http-bench.sh` runs it before annald; docs/PERFORMANCE.md).
//!
//! The same hosting as annald (warp filters served by hyper's HTTP/1 with a
//! timer, mimalloc, no transparent huge pages), annald's `GET /health` and
//! `POST /v1/ledgers/{ledger}/records` paths with the same request bodies,
//! and a group commit into redb, one durable transaction per batch,
//! answering each append only after its batch's commit returned. Nothing
//! else: no authentication, rate limits, request ids, hash chain, Merkle
//! tree, idempotency keys, index or events, and the cheapest layout (one
//! table, one ascending key). Not a product: it keeps only the payloads.
//!
//! `bare-append NEW_DATA_DIR` prints `listening on ADDR` on stderr once bound
//! to 127.0.0.1 on a free port, then serves until killed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};

use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use redb::{Database, Durability, TableDefinition};
use serde::Deserialize;
use tokio::sync::oneshot;
use tower_service::Service as _;
use warp::Filter as _;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Position in arrival order → payload: one table with one ascending key,
/// the layout that dirties the fewest pages per commit whatever the ledger.
const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
/// Appends waiting for the committer; a full queue answers 503.
const QUEUE_MAX: usize = 4096;
/// Most appends in one transaction (annald's store: 512 writes).
const BATCH_MAX: usize = 512;
/// Largest body accepted.
const BODY_BYTES_MAX: u64 = 1 << 20;
/// Connections served at once; more wait in the kernel's backlog.
const CONNECTIONS_MAX: usize = 1024;

struct Append {
    ledger: String,
    payload: Vec<u8>,
    done: oneshot::Sender<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body<'a> {
    #[serde(borrow)]
    payload: &'a serde_json::value::RawValue,
}

/// Applies each queued batch in one durable transaction and answers each
/// append with its seq after the commit. A failed commit ends the process:
/// nothing is answered for it.
fn committer(db: Database, rx: Receiver<Append>) {
    let mut next: HashMap<String, u64> = HashMap::new();
    let mut position = 0u64;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let committed = (|| -> Result<Vec<u64>, redb::Error> {
            let mut seqs = Vec::with_capacity(batch.len());
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut t = txn.open_table(RECORDS)?;
                for a in &batch {
                    if !next.contains_key(&a.ledger) {
                        next.insert(a.ledger.clone(), 0);
                    }
                    let seq = next.get_mut(&a.ledger).expect("inserted above");
                    t.insert(position + seqs.len() as u64, a.payload.as_slice())?;
                    seqs.push(*seq);
                    *seq += 1;
                }
            }
            txn.commit()?;
            Ok(seqs)
        })();
        match committed {
            Ok(seqs) => {
                position += seqs.len() as u64;
                for (a, seq) in batch.into_iter().zip(seqs) {
                    let _ = a.done.send(seq);
                }
            }
            Err(e) => {
                eprintln!("commit failed: {e}");
                std::process::exit(1);
            }
        }
    }
}

fn json(status: http::StatusCode, body: Vec<u8>) -> warp::reply::Response {
    let mut resp = warp::reply::Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    resp
}

async fn append(ledger: String, body: Bytes, queue: SyncSender<Append>) -> warp::reply::Response {
    let payload = match serde_json::from_slice::<Body<'_>>(&body) {
        Ok(b) => b.payload.get().as_bytes().to_vec(),
        Err(_) => return json(http::StatusCode::BAD_REQUEST, br#"{"code":"request.invalid"}"#.to_vec()),
    };
    let (done, answer) = oneshot::channel();
    if queue.try_send(Append { ledger: ledger.clone(), payload, done }).is_err() {
        return json(http::StatusCode::SERVICE_UNAVAILABLE, br#"{"code":"overloaded"}"#.to_vec());
    }
    match answer.await {
        Ok(seq) => json(
            http::StatusCode::CREATED,
            serde_json::to_vec(&serde_json::json!({"ledger": ledger, "seq": seq})).expect("json"),
        ),
        Err(_) => json(http::StatusCode::SERVICE_UNAVAILABLE, br#"{"code":"db.unavailable"}"#.to_vec()),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os().nth(1).ok_or("usage: bare-append NEW_DATA_DIR")?;
    std::fs::create_dir_all(&dir)?;
    // As annald does: mimalloc asks for huge pages that then get zeroed whole.
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("cannot turn off transparent huge pages: {e}");
    }
    // Seqs are counted in memory from zero: always a new database.
    let path = std::path::Path::new(&dir).join("bare.redb");
    if path.exists() {
        return Err(format!("{} exists; give a new data directory", path.display()).into());
    }
    let db = Database::create(path)?;
    let (queue, rx) = sync_channel::<Append>(QUEUE_MAX);
    std::thread::Builder::new().name("bare-committer".into()).spawn(move || committer(db, rx))?;

    let health = warp::path!("health")
        .and(warp::get())
        .map(|| json(http::StatusCode::OK, br#"{"status":"ok"}"#.to_vec()));
    let append = warp::path!("v1" / "ledgers" / String / "records")
        .and(warp::post())
        .and(warp::body::content_length_limit(BODY_BYTES_MAX))
        .and(warp::body::bytes())
        .and(warp::any().map(move || queue.clone()))
        .then(append);
    let routes = health.or(append).unify();
    let service = warp::service(routes);

    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        eprintln!("listening on {}", listener.local_addr()?);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(std::time::Duration::from_secs(10));
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
        loop {
            let permit = permits.clone().acquire_owned().await?;
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // As annald does: EMFILE and friends pass.
                    eprintln!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let conn = builder.serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn({
                    let service = service.clone();
                    move |req| {
                        let mut service = service.clone();
                        async move {
                            match service.call(req).await {
                                Ok(resp) => Ok::<_, Infallible>(resp),
                                Err(never) => match never {},
                            }
                        }
                    }
                }),
            );
            tokio::spawn(async move {
                let _ = conn.await;
                drop(permit);
            });
        }
    })
}
