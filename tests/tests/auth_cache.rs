//! Goal: the daemon's in-memory cache of tenant authentications never lets a
//! revoked key or a suspended tenant through once the admin call returned.
//! Method: warm the cache with a key (several requests, each a success),
//! make the admin change, and check the very next request with that key is
//! refused; then check that resuming and issuing work at once too.

use serde_json::json;

use crate::harness::{Daemon, Reply};

fn append(d: &Daemon, key: &str, ledger: &str) -> Reply {
    d.call("POST", &format!("/v1/ledgers/{ledger}/records"), key, Some(&json!({ "payload": {"n": 1} })))
}

fn code(r: &Reply) -> String {
    r.json()["code"].as_str().unwrap_or("").to_owned()
}

/// Sends `n` appends and a read with `key`, all of which must succeed.
fn warm(d: &Daemon, key: &str, ledger: &str, n: usize) {
    for _ in 0..n {
        let r = append(d, key, ledger);
        assert_eq!(r.status, 201, "warm-up append: {}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(d.call("GET", &format!("/v1/ledgers/{ledger}/records"), key, None).status, 200);
}

fn check(r: &Reply, status: u16, code_: &str, what: &str) {
    assert_eq!((r.status, code(r).as_str()), (status, code_), "{what}: {}", String::from_utf8_lossy(&r.body));
}

#[test]
fn revoke_takes_effect_for_the_next_request() {
    let d = Daemon::start(None);
    let admin = d.admin_key();
    let key = d.tenant_with_key("acme");
    let other = d.call("POST", "/admin/v1/tenants/acme/keys", &admin, None).json();
    let other_key = other["key"].as_str().expect("second key").to_owned();
    let key_id = key.split('_').nth(1).expect("key id in the token").to_owned();
    warm(&d, &key, "orders", 5);
    warm(&d, &other_key, "orders", 2);

    let r = d.call("POST", &format!("/admin/v1/tenants/acme/keys/{key_id}/revoke"), &admin, None);
    assert_eq!(r.status, 200, "revoke");
    check(&append(&d, &key, "orders"), 401, "auth.invalid_key", "append with the revoked key");
    let r = d.call("GET", "/v1/ledgers/orders/records/0", &key, None);
    check(&r, 401, "auth.invalid_key", "read with the revoked key");
    // The tenant's other key is untouched.
    assert_eq!(append(&d, &other_key, "orders").status, 201);
    // A right key id with a wrong secret is refused even while the id's
    // good twin could be cached.
    let forged = format!("{}{}", &other_key[..other_key.len() - 2], "AA");
    if forged != other_key {
        check(&append(&d, &forged, "orders"), 401, "auth.invalid_key", "forged secret");
    }
}

#[test]
fn suspend_and_resume_take_effect_for_the_next_request() {
    let d = Daemon::start(None);
    let admin = d.admin_key();
    let key = d.tenant_with_key("acme");
    let bystander = d.tenant_with_key("bravo");
    warm(&d, &key, "orders", 5);
    warm(&d, &bystander, "orders", 2);

    assert_eq!(d.call("POST", "/admin/v1/tenants/acme/suspend", &admin, None).status, 200);
    check(&append(&d, &key, "orders"), 403, "tenant.suspended", "append while suspended");
    let r = d.call("GET", "/v1/ledgers/orders/records", &key, None);
    check(&r, 403, "tenant.suspended", "list while suspended");
    assert_eq!(append(&d, &bystander, "orders").status, 201, "another tenant is untouched");

    assert_eq!(d.call("POST", "/admin/v1/tenants/acme/resume", &admin, None).status, 200);
    assert_eq!(append(&d, &key, "orders").status, 201, "append right after resume");

    // Suspend again after the key was cached as good a second time.
    warm(&d, &key, "orders", 3);
    assert_eq!(d.call("POST", "/admin/v1/tenants/acme/suspend", &admin, None).status, 200);
    check(&append(&d, &key, "orders"), 403, "tenant.suspended", "append after the second suspend");
}
