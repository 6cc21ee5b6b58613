//! Goal: the webhook endpoint and outbox API keeps its rules: creates,
//! reads and lists; every refusal writes nothing; secret versions rotate
//! within their caps and the last active one stays; the cursor follows
//! appends within the pending caps and never skips or repeats a seq; a
//! disabled endpoint loses its deliveries and enqueues no more; due order
//! (earliest due first, then id), retries and settling; the due index holds
//! exactly one entry per outbox row through every write, migration 5 builds
//! it for an outbox that predates it, backup/restore keeps it, and `check`
//! finds it wrong; ids never reused; everything survives a reopen and a
//! backup/restore; a corrupt row or index entry reads as `Corrupt`. Method:
//! scenarios against a real store in a temporary directory, asserting exact
//! outcomes and the whole webhook state around each refusal; random
//! outbox writes checked against a model (a sorted set of (due, id)); the
//! raw index read back through redb.

mod common;

use annal_store::limits::{
    DELIVERY_ERROR_BYTES_MAX, DUE_DELIVERIES_MAX, PENDING_PER_ENDPOINT_MAX, WEBHOOK_ENDPOINTS_PER_TENANT_MAX,
    WEBHOOK_ROWS_PER_TENANT_MAX, WEBHOOK_SECRET_VERSIONS_MAX, WEBHOOK_SECRETS_ACTIVE_MAX,
    WEBHOOK_URL_BYTES_MAX,
};
use annal_store::{
    CheckFailure, Delivery, OpenError, OpenOptions, ReadError, Settlement, Store, WebhookEndpoint,
    WebhookRefusal, WebhookSecret, WriteError,
};
use common::*;
use proptest::prelude::*;
use redb::{ReadableDatabase, ReadableTable};

const DUE: redb::TableDefinition<(u64, u64), ()> = redb::TableDefinition::new("webhook_outbox_due");
const MIGRATIONS: redb::TableDefinition<u32, &[u8]> = redb::TableDefinition::new("schema_migrations");

fn endpoint(id: &str, t: &str, l: &str, next_seq: u64) -> WebhookEndpoint {
    WebhookEndpoint {
        id: id.into(),
        tenant: tenant(t),
        ledger: ledger(l),
        url: format!("https://example.test/{id}"),
        created_ms: 100,
        disabled_ms: None,
        secrets: Vec::new(),
        next_seq,
    }
}

fn with_tenants(dir: &std::path::Path, tenants: &[&str]) -> Store {
    let s = open(dir);
    for t in tenants {
        s.create_tenant(&tenant(t), 1).unwrap().unwrap();
    }
    s
}

fn create(s: &Store, e: &WebhookEndpoint) -> WebhookEndpoint {
    s.create_webhook(e).unwrap().expect("created")
}

/// Every delivery in the outbox, earliest due first, then lowest id.
fn outbox(s: &Store) -> Vec<Delivery> {
    s.due_deliveries(u64::MAX, DUE_DELIVERIES_MAX).unwrap()
}

/// The whole webhook state, to show a refusal wrote nothing.
fn state(s: &Store) -> (Vec<WebhookEndpoint>, Vec<Delivery>) {
    (s.webhooks(None).unwrap(), outbox(s))
}

/// Appends `n` records to one ledger, queued together, and waits for all.
fn append_n(s: &Store, t: &str, l: &str, n: u64) {
    let tickets: Vec<_> = (0..n).map(|i| s.append(request(t, l, i, b"{}", vec![]))).collect();
    for ticket in tickets {
        ticket.wait().expect("committed").expect("accepted");
    }
}

fn seqs(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.seq).collect()
}

fn ids(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.id).collect()
}

/// Runs one durable write transaction on the closed store's database file.
fn raw_write(dir: &std::path::Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(dir.join(annal_store::DB_FILE_NAME)).unwrap();
    let mut txn = db.begin_write().unwrap();
    txn.set_durability(redb::Durability::Immediate).unwrap();
    f(&txn);
    txn.commit().unwrap();
}

/// The due index of the closed store, in key order.
fn due_index(dir: &std::path::Path) -> Vec<(u64, u64)> {
    let db = redb::Database::open(dir.join(annal_store::DB_FILE_NAME)).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(DUE).unwrap();
    table.iter().unwrap().map(|e| e.unwrap().0.value()).collect()
}

#[test]
fn create_get_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_tenants(dir.path(), &["acme", "beta"]);
    let mut given = endpoint("wh_a2", "acme", "orders", 7);
    given.secrets = vec![WebhookSecret { version: 9, created_ms: 1, revoked_ms: Some(2) }];
    let a2 = create(&s, &given);
    assert_eq!(
        a2,
        WebhookEndpoint {
            secrets: vec![WebhookSecret { version: 1, created_ms: 100, revoked_ms: None }],
            ..given.clone()
        }
    );
    let a1 = create(&s, &endpoint("wh_a1", "acme", "other", 0));
    let b1 = create(&s, &endpoint("wh_b1", "beta", "orders", 0));
    assert_eq!(s.webhook("wh_a2").unwrap(), Some(a2.clone()));
    assert_eq!(s.webhook("wh_none").unwrap(), None);
    assert_eq!(s.webhook("not valid!").unwrap(), None);
    assert_eq!(s.webhooks(Some(&tenant("acme"))).unwrap(), vec![a1.clone(), a2.clone()]);
    assert_eq!(s.webhooks(Some(&tenant("beta"))).unwrap(), vec![b1.clone()]);
    assert_eq!(s.webhooks(Some(&tenant("gamma"))).unwrap(), vec![]);
    assert_eq!(s.webhooks(None).unwrap(), vec![a1, a2, b1]);
    assert_eq!(s.pending_deliveries("wh_a2").unwrap(), 0);
    assert_eq!(s.pending_deliveries("wh_none").unwrap(), 0);
    assert_eq!(s.next_delivery_due().unwrap(), None);
}

#[test]
fn create_refusals_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_tenants(dir.path(), &["acme", "beta"]);
    let original = create(&s, &endpoint("wh_1", "acme", "orders", 0));
    let check = |e: WebhookEndpoint, expected: WebhookRefusal| {
        let before = state(&s);
        assert_eq!(s.create_webhook(&e).unwrap(), Err(expected), "{e:?}");
        assert_eq!(state(&s), before, "{e:?} wrote something");
    };
    check(endpoint("wh_2", "nobody", "orders", 0), WebhookRefusal::NoTenant);
    check(
        WebhookEndpoint { url: "https://other.test".into(), ..original.clone() },
        WebhookRefusal::EndpointExists,
    );
    for id in ["", "a b", "wh/1", "wh.1", "é", &"a".repeat(65)] {
        check(endpoint(id, "acme", "orders", 0), WebhookRefusal::BadId);
    }
    let long =
        WebhookEndpoint { url: "u".repeat(WEBHOOK_URL_BYTES_MAX + 1), ..endpoint("wh_2", "acme", "o", 0) };
    check(long, WebhookRefusal::UrlTooLong);
    check(
        WebhookEndpoint { disabled_ms: Some(5), ..endpoint("wh_2", "acme", "o", 0) },
        WebhookRefusal::Disabled,
    );
    assert_eq!(s.webhooks(None).unwrap(), vec![original]);
    // The longest id and URL are kept as given.
    let id = "a".repeat(64);
    let edge = WebhookEndpoint { url: "u".repeat(WEBHOOK_URL_BYTES_MAX), ..endpoint(&id, "acme", "o", 0) };
    assert_eq!(create(&s, &edge).url.len(), WEBHOOK_URL_BYTES_MAX);
}

#[test]
fn endpoint_caps_count_active_endpoints_and_all_rows() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_tenants(dir.path(), &["acme", "beta"]);
    // Two already: the cap counts every endpoint of the tenant.
    create(&s, &endpoint("wh_0", "acme", "orders", 0));
    for i in 1..WEBHOOK_ENDPOINTS_PER_TENANT_MAX {
        create(&s, &endpoint(&format!("wh_{i}"), "acme", "orders", 0));
    }
    let before = state(&s);
    assert_eq!(
        s.create_webhook(&endpoint("wh_x", "acme", "orders", 0)).unwrap(),
        Err(WebhookRefusal::TooManyEndpoints)
    );
    assert_eq!(state(&s), before);
    // Another tenant has its own cap.
    create(&s, &endpoint("wh_beta", "beta", "orders", 0));
    // A disabled endpoint no longer counts as active, but its row stays...
    s.disable_webhook("wh_0", 5).unwrap().unwrap();
    create(&s, &endpoint("wh_x", "acme", "orders", 0));
    // ... until the tenant's rows, disabled ones included, reach their cap.
    let mut active: Vec<String> = (1..WEBHOOK_ENDPOINTS_PER_TENANT_MAX).map(|i| format!("wh_{i}")).collect();
    active.push("wh_x".into());
    let mut rows = WEBHOOK_ENDPOINTS_PER_TENANT_MAX + 1;
    while rows < WEBHOOK_ROWS_PER_TENANT_MAX {
        s.disable_webhook(&active.pop().unwrap(), 6).unwrap().unwrap();
        let id = format!("wh_r{rows}");
        create(&s, &endpoint(&id, "acme", "orders", 0));
        active.push(id);
        rows += 1;
    }
    s.disable_webhook(&active.pop().unwrap(), 7).unwrap().unwrap();
    let acme = s.webhooks(Some(&tenant("acme"))).unwrap();
    assert_eq!(acme.len(), WEBHOOK_ROWS_PER_TENANT_MAX);
    assert!(acme.iter().filter(|e| e.disabled_ms.is_none()).count() < WEBHOOK_ENDPOINTS_PER_TENANT_MAX);
    let before = state(&s);
    assert_eq!(
        s.create_webhook(&endpoint("wh_y", "acme", "orders", 0)).unwrap(),
        Err(WebhookRefusal::TooManyEndpoints)
    );
    assert_eq!(state(&s), before);
    create(&s, &endpoint("wh_beta2", "beta", "orders", 0));
}

#[test]
fn secrets_rotate_within_their_caps() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_tenants(dir.path(), &["acme"]);
    create(&s, &endpoint("wh", "acme", "orders", 0));
    let refused = |result: Result<Result<WebhookEndpoint, WebhookRefusal>, WriteError>, expected| {
        assert_eq!(result.unwrap(), Err(expected));
    };
    for v in 2..=WEBHOOK_SECRETS_ACTIVE_MAX as u32 {
        let e = s.add_webhook_secret("wh", 200 + u64::from(v)).unwrap().unwrap();
        assert_eq!(
            e.secrets.last(),
            Some(&WebhookSecret { version: v, created_ms: 200 + u64::from(v), revoked_ms: None })
        );
    }
    let full = state(&s);
    refused(s.add_webhook_secret("wh", 300), WebhookRefusal::TooManySecrets);
    refused(s.add_webhook_secret("nope", 300), WebhookRefusal::NoEndpoint);
    refused(s.revoke_webhook_secret("wh", 99, 300), WebhookRefusal::NoSecret);
    refused(s.revoke_webhook_secret("wh", 0, 300), WebhookRefusal::NoSecret);
    refused(s.revoke_webhook_secret("nope", 1, 300), WebhookRefusal::NoEndpoint);
    assert_eq!(state(&s), full);

    let e = s.revoke_webhook_secret("wh", 1, 301).unwrap().unwrap();
    assert_eq!(e.secrets[0], WebhookSecret { version: 1, created_ms: 100, revoked_ms: Some(301) });
    refused(s.revoke_webhook_secret("wh", 1, 302), WebhookRefusal::AlreadyRevoked);
    let next = WEBHOOK_SECRETS_ACTIVE_MAX as u32 + 1;
    let e = s.add_webhook_secret("wh", 303).unwrap().unwrap();
    assert_eq!(e.secrets.iter().map(|x| x.version).collect::<Vec<_>>(), (1..=next).collect::<Vec<_>>());
    // Revoke down to one active secret: that one stays.
    for v in 2..next {
        s.revoke_webhook_secret("wh", v, 304).unwrap().unwrap();
    }
    let one = state(&s);
    refused(s.revoke_webhook_secret("wh", next, 305), WebhookRefusal::LastActiveSecret);
    assert_eq!(state(&s), one);
    let e = s.webhook("wh").unwrap().unwrap();
    assert_eq!(
        e.secrets.iter().filter(|x| x.revoked_ms.is_none()).map(|x| x.version).collect::<Vec<_>>(),
        [next]
    );
    // Versions are kept for good, so their number is capped too.
    let mut version = next;
    while version < WEBHOOK_SECRET_VERSIONS_MAX {
        version += 1;
        s.add_webhook_secret("wh", 400).unwrap().unwrap();
        s.revoke_webhook_secret("wh", version - 1, 401).unwrap().unwrap();
    }
    let capped = state(&s);
    assert_eq!(capped.0[0].secrets.len(), WEBHOOK_SECRET_VERSIONS_MAX as usize);
    refused(s.add_webhook_secret("wh", 402), WebhookRefusal::TooManySecrets);
    assert_eq!(state(&s), capped);
}

#[test]
fn enqueue_follows_appends() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_tenants(dir.path(), &["acme"]);
    create(&s, &endpoint("wh_all", "acme", "orders", 0));
    create(&s, &endpoint("wh_new", "acme", "orders", 6));
    create(&s, &endpoint("wh_other", "acme", "other", 0));
    // The ledger does not exist yet: nothing, and the cursor stays.
    assert_eq!(s.enqueue_deliveries("wh_all", 100, 10).unwrap(), Ok(0));
    assert_eq!(s.webhook("wh_all").unwrap().unwrap().next_seq, 0);
    assert_eq!(s.enqueue_deliveries("nope", 100, 10).unwrap(), Err(WebhookRefusal::NoEndpoint));

    append_n(&s, "acme", "orders", 5);
    assert_eq!(s.enqueue_deliveries("wh_all", 100, 20).unwrap(), Ok(5));
    assert_eq!(s.enqueue_deliveries("wh_all", 100, 21).unwrap(), Ok(0));
    assert_eq!(s.enqueue_deliveries("wh_new", 100, 21).unwrap(), Ok(0));
    assert_eq!(s.enqueue_deliveries("wh_other", 100, 21).unwrap(), Ok(0));
    let out = outbox(&s);
    assert_eq!(seqs(&out), [0, 1, 2, 3, 4]);
    assert_eq!(out.iter().map(|d| d.id).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(
        out[0],
        Delivery {
            id: 1,
            endpoint: "wh_all".into(),
            tenant: tenant("acme"),
            ledger: ledger("orders"),
            seq: 0,
            attempts: 0,
            next_attempt_ms: 20,
            created_ms: 20,
            last_error: None,
        }
    );
    assert_eq!(s.webhook("wh_all").unwrap().unwrap().next_seq, 5);
    assert_eq!(s.pending_deliveries("wh_all").unwrap(), 5);

    append_n(&s, "acme", "orders", 3);
    assert_eq!(s.enqueue_deliveries("wh_all", 2, 30).unwrap(), Ok(2));
    assert_eq!(s.enqueue_deliveries("wh_all", 0, 30).unwrap(), Ok(0));
    assert_eq!(s.enqueue_deliveries("wh_all", 100, 31).unwrap(), Ok(1));
    assert_eq!(s.enqueue_deliveries("wh_new", 100, 31).unwrap(), Ok(2));
    let mine = |id: &str| outbox(&s).into_iter().filter(|d| d.endpoint == id).collect::<Vec<_>>();
    assert_eq!(seqs(&mine("wh_all")), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(seqs(&mine("wh_new")), [6, 7]);
    assert_eq!(mine("wh_other"), vec![]);
    assert_eq!(s.webhook("wh_new").unwrap().unwrap().next_seq, 8);
    assert_eq!(s.pending_deliveries("wh_all").unwrap(), 8);
    assert_eq!(outbox(&s).iter().map(|d| d.id).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
}

#[test]
fn enqueue_stops_at_the_pending_cap() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_tenants(dir.path(), &["acme"]);
    create(&s, &endpoint("wh", "acme", "orders", 0));
    append_n(&s, "acme", "orders", PENDING_PER_ENDPOINT_MAX + 20);
    assert_eq!(s.enqueue_deliveries("wh", 10, 1).unwrap(), Ok(10));
    assert_eq!(s.enqueue_deliveries("wh", 10_000, 1).unwrap(), Ok(PENDING_PER_ENDPOINT_MAX - 10));
    assert_eq!(s.pending_deliveries("wh").unwrap(), PENDING_PER_ENDPOINT_MAX);
    assert_eq!(s.enqueue_deliveries("wh", 10_000, 2).unwrap(), Ok(0));
    assert_eq!(s.webhook("wh").unwrap().unwrap().next_seq, PENDING_PER_ENDPOINT_MAX);
    // Settling three makes room for exactly three more, the next seqs.
    let out = outbox(&s);
    s.complete_delivery(out[0].id).unwrap().unwrap();
    s.abandon_delivery(out[1].id).unwrap().unwrap();
    s.complete_delivery(out[2].id).unwrap().unwrap();
    assert_eq!(s.pending_deliveries("wh").unwrap(), PENDING_PER_ENDPOINT_MAX - 3);
    assert_eq!(s.enqueue_deliveries("wh", 10_000, 3).unwrap(), Ok(3));
    let out = outbox(&s);
    assert_eq!(seqs(&out), (3..PENDING_PER_ENDPOINT_MAX + 3).collect::<Vec<_>>());
    assert_eq!(s.webhook("wh").unwrap().unwrap().next_seq, PENDING_PER_ENDPOINT_MAX + 3);
}

#[test]
fn disable_drops_pending_and_freezes_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_tenants(dir.path(), &["acme"]);
    create(&s, &endpoint("wh_a", "acme", "orders", 0));
    create(&s, &endpoint("wh_b", "acme", "orders", 0));
    append_n(&s, "acme", "orders", 4);
    assert_eq!(s.enqueue_deliveries("wh_a", 100, 1).unwrap(), Ok(4));
    assert_eq!(s.enqueue_deliveries("wh_b", 100, 2).unwrap(), Ok(4));
    let a_ids: Vec<u64> = outbox(&s).iter().filter(|d| d.endpoint == "wh_a").map(|d| d.id).collect();
    s.reschedule_delivery(a_ids[3], 9, "503").unwrap().unwrap();
    assert_eq!(s.next_delivery_due().unwrap(), Some(1));

    // The dropped deliveries leave the due index too: the earliest due is
    // now wh_b's, and none of wh_a's (at 1 or rescheduled to 9) is served.
    let e = s.disable_webhook("wh_a", 50).unwrap().unwrap();
    assert_eq!(s.next_delivery_due().unwrap(), Some(2));
    assert_eq!(ids(&s.due_deliveries(1, 10).unwrap()), Vec::<u64>::new());
    assert_eq!((e.disabled_ms, e.next_seq), (Some(50), 4));
    assert_eq!(s.webhook("wh_a").unwrap(), Some(e));
    assert_eq!(s.pending_deliveries("wh_a").unwrap(), 0);
    let left = outbox(&s);
    assert_eq!(left.len(), 4);
    assert!(left.iter().all(|d| d.endpoint == "wh_b"));
    assert_eq!(s.complete_delivery(a_ids[0]).unwrap(), Err(WebhookRefusal::NoDelivery));

    let frozen = state(&s);
    append_n(&s, "acme", "orders", 2);
    assert_eq!(s.enqueue_deliveries("wh_a", 100, 2).unwrap(), Err(WebhookRefusal::Disabled));
    assert_eq!(s.disable_webhook("wh_a", 51).unwrap(), Err(WebhookRefusal::Disabled));
    assert_eq!(s.add_webhook_secret("wh_a", 52).unwrap(), Err(WebhookRefusal::Disabled));
    assert_eq!(s.revoke_webhook_secret("wh_a", 1, 53).unwrap(), Err(WebhookRefusal::Disabled));
    assert_eq!(s.disable_webhook("nope", 53).unwrap(), Err(WebhookRefusal::NoEndpoint));
    assert_eq!(state(&s), frozen);
    assert_eq!(s.enqueue_deliveries("wh_b", 100, 2).unwrap(), Ok(2));
    let b_ids: Vec<u64> = outbox(&s).iter().map(|d| d.id).collect();
    assert_eq!(b_ids, (5..=10).collect::<Vec<_>>());
    drop(s);
    assert_eq!(due_index(dir.path()), b_ids.iter().map(|&id| (2, id)).collect::<Vec<_>>());
}

#[test]
fn due_order_retries_and_settling() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_tenants(dir.path(), &["acme"]);
    create(&s, &endpoint("wh", "acme", "orders", 0));
    append_n(&s, "acme", "orders", 4);
    assert_eq!(s.enqueue_deliveries("wh", 100, 100).unwrap(), Ok(4));
    assert_eq!(s.due_deliveries(99, 10).unwrap(), vec![]);
    assert_eq!(s.next_delivery_due().unwrap(), Some(100));
    let due = s.due_deliveries(100, 2).unwrap();
    assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), [1, 2]);

    let r = s.reschedule_delivery(1, 500, "connect refused").unwrap().unwrap();
    assert_eq!((r.attempts, r.next_attempt_ms, r.last_error.as_deref()), (1, 500, Some("connect refused")));
    assert_eq!(ids(&s.due_deliveries(100, 10).unwrap()), [2, 3, 4]);
    // Earliest due first: id 1 now comes after the ones due at 100.
    assert_eq!(ids(&s.due_deliveries(500, 10).unwrap()), [2, 3, 4, 1]);
    assert_eq!(ids(&s.due_deliveries(u64::MAX, 2).unwrap()), [2, 3]);
    assert_eq!(ids(&s.due_deliveries(u64::MAX, 0).unwrap()), Vec::<u64>::new());
    assert_eq!(s.next_delivery_due().unwrap(), Some(100));
    // Rescheduling earlier than the rest moves it to the front.
    s.reschedule_delivery(4, 50, "reset").unwrap().unwrap();
    assert_eq!(s.next_delivery_due().unwrap(), Some(50));
    assert_eq!(ids(&s.due_deliveries(50, 10).unwrap()), [4]);
    assert_eq!(ids(&s.due_deliveries(500, 10).unwrap()), [4, 2, 3, 1]);
    // A long error is cut at a char boundary within the cap.
    let long = "é".repeat(DELIVERY_ERROR_BYTES_MAX);
    let r = s.reschedule_delivery(2, 300, &long).unwrap().unwrap();
    let kept = r.last_error.unwrap();
    assert_eq!((r.attempts, kept.len()), (1, DELIVERY_ERROR_BYTES_MAX));
    assert!(long.starts_with(&kept));
    let r = s.reschedule_delivery(2, 700, "503").unwrap().unwrap();
    assert_eq!((r.attempts, r.last_error.as_deref()), (2, Some("503")));

    assert_eq!(ids(&outbox(&s)), [4, 3, 1, 2]);
    assert_eq!(s.complete_delivery(4).unwrap(), Ok(()));
    assert_eq!(s.next_delivery_due().unwrap(), Some(100));
    assert_eq!(s.complete_delivery(3).unwrap(), Ok(()));
    assert_eq!(s.next_delivery_due().unwrap(), Some(500));
    let gone = s.abandon_delivery(1).unwrap().unwrap();
    assert_eq!((gone.id, gone.attempts, gone.seq, gone.next_attempt_ms), (1, 1, 0, 500));
    assert_eq!(s.next_delivery_due().unwrap(), Some(700));
    assert_eq!(s.pending_deliveries("wh").unwrap(), 1);
    s.complete_delivery(2).unwrap().unwrap();
    assert_eq!(s.next_delivery_due().unwrap(), None);
    assert_eq!(s.pending_deliveries("wh").unwrap(), 0);
    for id in [1, 2, 99] {
        assert_eq!(s.complete_delivery(id).unwrap(), Err(WebhookRefusal::NoDelivery));
        assert_eq!(s.abandon_delivery(id).unwrap(), Err(WebhookRefusal::NoDelivery));
        assert_eq!(s.reschedule_delivery(id, 1, "x").unwrap(), Err(WebhookRefusal::NoDelivery));
    }
    // With the outbox empty, new ids still count on.
    append_n(&s, "acme", "orders", 1);
    assert_eq!(s.enqueue_deliveries("wh", 100, 800).unwrap(), Ok(1));
    assert_eq!(outbox(&s).iter().map(|d| (d.id, d.seq)).collect::<Vec<_>>(), [(5, 4)]);
    drop(s);
    assert_eq!(due_index(dir.path()), [(800, 5)]);
}

/// A store with one endpoint per state: rotated secrets, a retried
/// delivery, a disabled endpoint.
fn populated(dir: &std::path::Path) -> Store {
    let s = with_tenants(dir, &["acme", "beta"]);
    create(&s, &endpoint("wh_a", "acme", "orders", 0));
    create(&s, &endpoint("wh_b", "beta", "audit", 0));
    create(&s, &endpoint("wh_off", "acme", "orders", 0));
    s.add_webhook_secret("wh_a", 150).unwrap().unwrap();
    s.revoke_webhook_secret("wh_a", 1, 160).unwrap().unwrap();
    append_n(&s, "acme", "orders", 3);
    append_n(&s, "beta", "audit", 2);
    s.enqueue_deliveries("wh_a", 100, 200).unwrap().unwrap();
    s.enqueue_deliveries("wh_b", 100, 210).unwrap().unwrap();
    s.enqueue_deliveries("wh_off", 100, 210).unwrap().unwrap();
    s.disable_webhook("wh_off", 220).unwrap().unwrap();
    s.reschedule_delivery(2, 900, "timeout").unwrap().unwrap();
    s.complete_delivery(1).unwrap().unwrap();
    s
}

#[test]
fn everything_survives_reopen_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let s = populated(dir.path());
    let before = state(&s);
    assert_eq!(before.0.len(), 3);
    // Due order: 3 at 200, 4 and 5 at 210, then 2 (rescheduled to 900).
    assert_eq!(before.1.iter().map(|d| (d.id, d.seq)).collect::<Vec<_>>(), [(3, 2), (4, 0), (5, 1), (2, 1)]);
    let pending = |s: &Store| ["wh_a", "wh_b", "wh_off"].map(|id| s.pending_deliveries(id).unwrap());
    assert_eq!(pending(&s), [2, 2, 0]);
    drop(s);

    let s = open(dir.path());
    assert_eq!(state(&s), before);
    assert_eq!(pending(&s), [2, 2, 0]);
    assert_eq!(s.next_delivery_due().unwrap(), Some(200));
    let bdir = dir.path().join("backup");
    s.backup(&bdir).unwrap();
    append_n(&s, "acme", "orders", 1);
    assert_eq!(s.enqueue_deliveries("wh_a", 100, 300).unwrap(), Ok(1));
    drop(s);

    let rdir = dir.path().join("restored");
    annal_store::restore(&bdir, &rdir).unwrap();
    // The due index came along: it checks, and serves the same order.
    assert_eq!(due_index(&rdir), POPULATED_DUE);
    assert_eq!(annal_store::check(&rdir, &[]).unwrap().failure, None);
    let r = open(&rdir);
    assert_eq!(state(&r), before);
    assert_eq!(pending(&r), [2, 2, 0]);
    assert_eq!(r.next_delivery_due().unwrap(), Some(200));
    assert_eq!(ids(&r.due_deliveries(210, 10).unwrap()), [3, 4, 5]);
    // The restored outbox ids go on from the backup's, past the dropped ones.
    append_n(&r, "acme", "orders", 1);
    assert_eq!(r.enqueue_deliveries("wh_a", 100, 300).unwrap(), Ok(1));
    let out = outbox(&r).iter().map(|d| (d.id, d.seq, d.next_attempt_ms)).collect::<Vec<_>>();
    assert_eq!(out, [(3, 2, 200), (4, 0, 210), (5, 1, 210), (9, 3, 300), (2, 1, 900)]);
}

/// The due index of `populated`: (next_attempt_ms, id), in key order.
const POPULATED_DUE: [(u64, u64); 4] = [(200, 3), (210, 4), (210, 5), (900, 2)];

/// A store at head 4 (outbox rows, no due index) migrates to head 5 with
/// the index filled from its rows, and serves and checks as one that had
/// the index from the start.
#[test]
fn migration_5_indexes_an_existing_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let s = populated(dir.path());
    let before = state(&s);
    drop(s);
    raw_write(dir.path(), |txn| {
        txn.open_table(MIGRATIONS).unwrap().remove(5).unwrap();
        assert!(txn.delete_table(DUE).unwrap());
    });
    let status = annal_store::migration_status(dir.path()).unwrap();
    assert_eq!((status.head, status.pending), (4, vec![5]));
    let no_apply = OpenOptions { apply_pending_migrations: false, ..OpenOptions::default() };
    let err = Store::open(dir.path(), no_apply).unwrap_err();
    assert!(matches!(err, OpenError::MigrationsPending { head: 4, ref pending } if pending == &[5]), "{err}");

    let s = open(dir.path());
    assert_eq!(s.migration_status().unwrap().head, 5);
    assert_eq!(state(&s), before);
    assert_eq!(s.next_delivery_due().unwrap(), Some(200));
    assert_eq!(ids(&s.due_deliveries(899, 10).unwrap()), [3, 4, 5]);
    assert_eq!(s.check(&[]).unwrap().failure, None);
    // Writes keep the migrated index in step.
    s.reschedule_delivery(3, 1_000, "503").unwrap().unwrap();
    s.complete_delivery(4).unwrap().unwrap();
    drop(s);
    assert_eq!(due_index(dir.path()), [(210, 5), (900, 2), (1_000, 3)]);

    // A row that does not decode refuses the migration, which writes nothing.
    raw_write(dir.path(), |txn| {
        txn.open_table(MIGRATIONS).unwrap().remove(5).unwrap();
        assert!(txn.delete_table(DUE).unwrap());
        let outbox: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("webhook_outbox");
        txn.open_table(outbox).unwrap().insert(5, [0xff_u8; 3].as_slice()).unwrap();
    });
    assert!(matches!(Store::open(dir.path(), OpenOptions::default()), Err(OpenError::Database(_))));
    let status = annal_store::migration_status(dir.path()).unwrap();
    assert_eq!((status.head, status.pending), (4, vec![5]));
}

/// `check` finds a due index that disagrees with the outbox, and the
/// reads never serve the entries that disagree.
#[test]
fn check_reports_a_wrong_due_index() {
    type Edit = fn(&mut redb::Table<(u64, u64), ()>);
    let cases: &[(&str, Edit, Option<u64>, &str)] = &[
        ("entry removed", |t| drop(t.remove((210, 4)).unwrap()), Some(4), "delivery has no due index entry"),
        (
            "entry moved to another time",
            |t| {
                t.remove((900, 2)).unwrap();
                t.insert((100, 2), ()).unwrap();
            },
            Some(2),
            "delivery has no due index entry",
        ),
        (
            "entry of no row",
            |t| drop(t.insert((150, 77), ()).unwrap()),
            None,
            "due index has entries of no delivery",
        ),
        (
            "extra entry of a row",
            |t| drop(t.insert((150, 3), ()).unwrap()),
            None,
            "due index has entries of no delivery",
        ),
    ];
    for (what, edit, id, failure) in cases {
        let dir = tempfile::tempdir().unwrap();
        drop(populated(dir.path()));
        raw_write(dir.path(), |txn| edit(&mut txn.open_table(DUE).unwrap()));
        let expected = CheckFailure {
            tenant: String::new(),
            ledger: "webhook_outbox".into(),
            seq: *id,
            what: (*failure).into(),
        };
        let report = annal_store::check(dir.path(), &[]).unwrap();
        assert_eq!(report.failure, Some(expected), "{what}");
        assert_eq!((report.ledgers, report.records), (2, 5), "{what}: the ledgers were checked first");
        // An entry at 100 or 150 is the first due: it names no row, or a row
        // due at another time, so the reads refuse it instead of serving it.
        let s = open(dir.path());
        if *what != "entry removed" {
            assert!(corrupt_read(s.next_delivery_due()), "{what}");
            assert!(corrupt_read(s.due_deliveries(u64::MAX, 10)), "{what}");
            assert!(corrupt_read(s.due_deliveries(150, 10)), "{what}");
        }
        assert_eq!(s.failure(), None, "{what}");
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Enqueue up to `count` deliveries of endpoint `endpoint`, due at `now`.
    Enqueue {
        endpoint: usize,
        count: usize,
        now: u64,
    },
    Reschedule {
        pick: usize,
        at: u64,
    },
    Complete {
        pick: usize,
    },
    Abandon {
        pick: usize,
    },
    /// Disables endpoint 1 (endpoint 0 stays, so the run goes on).
    Disable,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, 0..6usize, 0..40u64).prop_map(|(endpoint, count, now)| Op::Enqueue { endpoint, count, now }),
        4 => (any::<usize>(), 0..40u64).prop_map(|(pick, at)| Op::Reschedule { pick, at }),
        2 => any::<usize>().prop_map(|pick| Op::Complete { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Abandon { pick }),
        1 => Just(Op::Disable),
    ]
}

const MODEL_ENDPOINTS: [&str; 2] = ["wh_0", "wh_1"];

/// After every write, due reads equal the model (a sorted set of (due, id)
/// with each id's endpoint), and at the end the raw index equals it and
/// `check` passes.
fn run_model(ops: &[Op]) {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let s = with_tenants(dir.path(), &["acme"]);
    for id in MODEL_ENDPOINTS {
        create(&s, &endpoint(id, "acme", "orders", 0));
    }
    append_n(&s, "acme", "orders", 64);
    // (due, id) -> endpoint index.
    let mut model: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    let mut next_id = 1u64;
    let mut disabled = false;
    for op in ops {
        let keys: Vec<(u64, u64)> = model.keys().copied().collect();
        let picked = |pick: usize| (!keys.is_empty()).then(|| keys[pick % keys.len()]);
        match *op {
            Op::Enqueue { endpoint, count, now } => {
                let got = s.enqueue_deliveries(MODEL_ENDPOINTS[endpoint], count, now).unwrap();
                if endpoint == 1 && disabled {
                    assert_eq!(got, Err(WebhookRefusal::Disabled));
                    continue;
                }
                for _ in 0..got.unwrap() {
                    model.insert((now, next_id), endpoint);
                    next_id += 1;
                }
            }
            Op::Reschedule { pick, at } => {
                let Some(key) = picked(pick) else { continue };
                let r = s.reschedule_delivery(key.1, at, "x").unwrap().unwrap();
                assert_eq!((r.id, r.next_attempt_ms), (key.1, at));
                let endpoint = model.remove(&key).unwrap();
                model.insert((at, key.1), endpoint);
            }
            Op::Complete { pick } => {
                let Some(key) = picked(pick) else { continue };
                s.complete_delivery(key.1).unwrap().unwrap();
                model.remove(&key);
            }
            Op::Abandon { pick } => {
                let Some(key) = picked(pick) else { continue };
                assert_eq!(s.abandon_delivery(key.1).unwrap().unwrap().next_attempt_ms, key.0);
                model.remove(&key);
            }
            Op::Disable => {
                let got = s.disable_webhook(MODEL_ENDPOINTS[1], 1).unwrap();
                if disabled {
                    assert_eq!(got.map(|_| ()), Err(WebhookRefusal::Disabled));
                    continue;
                }
                got.unwrap();
                disabled = true;
                model.retain(|_, endpoint| *endpoint == 0);
            }
        }
        assert_eq!(s.next_delivery_due().unwrap(), model.keys().next().map(|k| k.0), "{op:?}");
        for now in [0, 10, 20, 39, u64::MAX] {
            for max in [1, 3, DUE_DELIVERIES_MAX] {
                let expected: Vec<(u64, u64)> =
                    model.range(..=(now, u64::MAX)).map(|(k, _)| *k).take(max).collect();
                let got: Vec<(u64, u64)> =
                    s.due_deliveries(now, max).unwrap().iter().map(|d| (d.next_attempt_ms, d.id)).collect();
                assert_eq!(got, expected, "{op:?} now {now} max {max}");
            }
        }
    }
    assert_eq!(s.check(&[]).unwrap().failure, None);
    drop(s);
    assert_eq!(due_index(dir.path()), model.keys().copied().collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn due_index_follows_every_outbox_write(ops in prop::collection::vec(op(), 1..40)) {
        run_model(&ops);
    }
}

fn corrupt_read<T>(r: Result<T, ReadError>) -> bool {
    matches!(r, Err(ReadError::Corrupt(_)))
}

#[test]
fn corrupt_rows_read_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    drop(populated(dir.path()));
    {
        let db = redb::Database::open(dir.path().join(annal_store::DB_FILE_NAME)).unwrap();
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(redb::Durability::Immediate).unwrap();
        {
            let endpoints: redb::TableDefinition<&str, &[u8]> =
                redb::TableDefinition::new("webhook_endpoints");
            txn.open_table(endpoints).unwrap().insert("wh_b", [0xff_u8; 3].as_slice()).unwrap();
            let outbox: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("webhook_outbox");
            txn.open_table(outbox).unwrap().insert(3, [0xff_u8; 3].as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let s = open(dir.path());
    assert!(corrupt_read(s.webhook("wh_b")));
    assert!(corrupt_read(s.webhooks(None)));
    assert!(corrupt_read(s.pending_deliveries("wh_b")));
    assert!(corrupt_read(s.due_deliveries(u64::MAX, 10)));
    assert!(corrupt_read(s.next_delivery_due()));
    assert!(matches!(s.add_webhook_secret("wh_b", 1), Err(WriteError::Corrupt(_))));
    assert!(matches!(s.complete_delivery(3), Err(WriteError::Corrupt(_))));
    assert!(matches!(s.reschedule_delivery(3, 1, "x"), Err(WriteError::Corrupt(_))));
    // A corrupt webhook row stops webhook writes on it, not the store.
    assert_eq!(s.failure(), None);
    assert!(s.webhook("wh_a").unwrap().is_some());
    s.complete_delivery(2).unwrap().unwrap();
    append_n(&s, "acme", "orders", 1);
    // `check` reports the endpoint row first (endpoints are read before
    // the outbox), and the delivery row once the endpoint row is whole again.
    drop(s);
    let f = annal_store::check(dir.path(), &[]).unwrap().failure.unwrap();
    assert_eq!(
        (f.ledger.as_str(), f.seq, f.what.as_str()),
        ("webhook_outbox", None, "webhook row does not decode")
    );
    raw_write(dir.path(), |txn| {
        let endpoints: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("webhook_endpoints");
        txn.open_table(endpoints).unwrap().remove("wh_b").unwrap();
    });
    let f = annal_store::check(dir.path(), &[]).unwrap().failure.unwrap();
    assert_eq!(
        (f.ledger.as_str(), f.seq, f.what.as_str()),
        ("webhook_outbox", Some(3), "delivery row does not decode")
    );
}

/// `check` holds the outbox to its endpoints: a delivery whose endpoint row
/// is gone, and an endpoint whose pending count no longer matches its rows
/// (a delivery removed with its index entry), are both reported.
#[test]
fn check_reports_deliveries_that_disagree_with_their_endpoints() {
    const OUTBOX: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("webhook_outbox");
    const ENDPOINTS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("webhook_endpoints");
    type Edit = fn(&redb::WriteTransaction);
    let cases: &[(&str, Edit, Option<u64>, &str)] = &[
        (
            "endpoint row removed",
            |txn| drop(txn.open_table(ENDPOINTS).unwrap().remove("wh_b").unwrap()),
            Some(4),
            "delivery of no endpoint",
        ),
        (
            "endpoint row replaced by another tenant's",
            |txn| {
                let mut t = txn.open_table(ENDPOINTS).unwrap();
                let theirs = t.get("wh_b").unwrap().unwrap().value().to_vec();
                t.insert("wh_a", theirs.as_slice()).unwrap();
            },
            Some(2),
            "delivery names another tenant or ledger than its endpoint",
        ),
        (
            "delivery removed with its index entry",
            |txn| {
                txn.open_table(OUTBOX).unwrap().remove(4).unwrap();
                txn.open_table(DUE).unwrap().remove((210, 4)).unwrap();
            },
            None,
            "endpoint pending count differs from its deliveries",
        ),
    ];
    for (what, edit, id, failure) in cases {
        let dir = tempfile::tempdir().unwrap();
        drop(populated(dir.path()));
        assert_eq!(annal_store::check(dir.path(), &[]).unwrap().failure, None, "{what}: clean before");
        raw_write(dir.path(), edit);
        let expected = CheckFailure {
            tenant: String::new(),
            ledger: "webhook_outbox".into(),
            seq: *id,
            what: (*failure).into(),
        };
        assert_eq!(annal_store::check(dir.path(), &[]).unwrap().failure, Some(expected), "{what}");
    }
}

/// A batch of outcomes in one transaction does what the three one-by-one
/// calls do, item by item; a row already gone is `NoDelivery` and changes
/// nothing else; the tables stay consistent (`check`).
#[test]
fn settling_a_batch_is_each_settlement_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let s = populated(dir.path());
    // Rows: 2 (wh_a seq 1, due 900), 3 (wh_a seq 2, due 200), 4 and 5 (wh_b seqs 0 and 1, due 210).
    let batch = [
        (3, Settlement::Delivered),
        (4, Settlement::Retry { next_attempt_ms: 5_000, error: "receiver answered 503" }),
        (5, Settlement::GiveUp),
        (99, Settlement::Delivered),
    ];
    let results = s.settle_deliveries(&batch).unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].as_ref().map(|d| (d.id, d.seq)), Ok((3, 2)));
    let retried = results[1].as_ref().expect("rescheduled");
    assert_eq!((retried.attempts, retried.next_attempt_ms), (1, 5_000));
    assert_eq!(retried.last_error.as_deref(), Some("receiver answered 503"));
    assert_eq!(results[2].as_ref().map(|d| d.id), Ok(5));
    assert_eq!(results[3], Err(WebhookRefusal::NoDelivery));
    let due: Vec<(u64, u64)> =
        s.due_deliveries(u64::MAX, 10).unwrap().iter().map(|d| (d.id, d.next_attempt_ms)).collect();
    assert_eq!(due, [(2, 900), (4, 5_000)]);
    assert_eq!((s.pending_deliveries("wh_a").unwrap(), s.pending_deliveries("wh_b").unwrap()), (1, 1));
    drop(s);
    assert_eq!(annal_store::check(dir.path(), &[]).unwrap().failure, None);
    assert_eq!(due_index(dir.path()), [(900, 2), (5_000, 4)]);
}

/// A corrupt row aborts the whole batch: nothing of it is written, not even
/// the items before it. A postponed delivery is due again without an
/// attempt counted.
#[test]
fn a_corrupt_row_aborts_the_whole_batch_and_postponing_counts_no_attempt() {
    const ENDPOINTS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("webhook_endpoints");
    let dir = tempfile::tempdir().unwrap();
    drop(populated(dir.path()));
    // Delivery 4 (wh_b) loses its endpoint row; delivery 3 (wh_a) is sound.
    raw_write(dir.path(), |txn| drop(txn.open_table(ENDPOINTS).unwrap().remove("wh_b").unwrap()));
    let s = open(dir.path());
    let before = s.due_deliveries(u64::MAX, 10).unwrap();
    let batch = [(3, Settlement::Delivered), (4, Settlement::Delivered)];
    assert!(matches!(s.settle_deliveries(&batch), Err(WriteError::Corrupt(_))));
    assert_eq!(s.due_deliveries(u64::MAX, 10).unwrap(), before, "delivery 3 was not settled either");
    assert_eq!(s.failure(), None, "a corrupt row does not fail the store");

    let postponed = s
        .settle_deliveries(&[(
            3,
            Settlement::Postpone { next_attempt_ms: 7_000, reason: "tenant suspended" },
        )])
        .unwrap();
    let d = postponed[0].as_ref().expect("postponed");
    assert_eq!(
        (d.attempts, d.next_attempt_ms, d.last_error.as_deref()),
        (0, 7_000, Some("tenant suspended"))
    );
}
