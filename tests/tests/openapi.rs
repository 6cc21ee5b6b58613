//! Goal: docs/openapi.json is the API the daemon really serves: it is what
//! `GET /openapi.json` returns, its (method, path) set equals the routes in
//! the daemon's source in both directions, every documented route is live
//! and answers only statuses and error codes the document lists for it, and
//! every stable error code of `ApiError::parts` is in it.
//! Method: a small scanner reads the `warp::path!(..)` / `warp::path(..)`
//! filters and their method filters in daemon/src/api/*.rs; the real `annald`
//! on 127.0.0.1:0 is probed once per documented operation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::harness::{Daemon, request};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

pub fn document_path() -> PathBuf {
    root().join("docs/openapi.json")
}

fn document() -> Value {
    let text = std::fs::read_to_string(document_path()).expect("docs/openapi.json");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

/// A route as (METHOD, path) with parameters written `{}`; a filter that
/// matches a whole subtree (`warp::path("a").and(warp::path("b"))` with no
/// end) is written `/a/b/**`.
type Route = (String, String);

/// Every route in daemon/src/api/*.rs.
fn source_routes() -> BTreeSet<Route> {
    let dir = root().join("daemon/src/api");
    let mut routes = BTreeSet::new();
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("daemon/src/api").map(|e| e.expect("entry").path()).collect();
    files.sort();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "rs")) {
        let text = std::fs::read_to_string(file).expect("source");
        for route in scan(&text) {
            assert!(routes.insert(route.clone()), "{route:?} is defined twice");
        }
    }
    routes
}

/// Start offsets of path filters: `warp::path!(` macros and `warp::path(` chains.
fn path_filter_starts(text: &str) -> Vec<usize> {
    let mut starts: Vec<usize> = text.match_indices("warp::path!(").map(|(i, _)| i).collect();
    for (i, _) in text.match_indices("warp::path(") {
        // A chain's later links (`.and(warp::path("b"))`) belong to its first one.
        if !text[..i].trim_end().ends_with(".and(") {
            starts.push(i);
        }
    }
    starts.sort_unstable();
    starts
}

/// The routes one source file defines.
fn scan(text: &str) -> Vec<Route> {
    let starts = path_filter_starts(text);
    let mut out = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        // A filter's methods come after it and before the next filter or the
        // end of the function it is built in.
        let fn_end = text[start..].find("\n}\n").map_or(text.len(), |i| start + i);
        let end = starts.get(n + 1).copied().unwrap_or(text.len()).min(fn_end);
        let (path, rest) = if text[start..].starts_with("warp::path!(") {
            let open = start + "warp::path!(".len();
            let close = open + text[open..].find(')').expect("path! closes");
            (macro_path(&text[open..close]), &text[close..end])
        } else {
            let (path, after) = chain_path(&text[start..end]);
            (format!("{path}/**"), after)
        };
        let methods = methods_in(rest, path.ends_with("/**"));
        assert!(!methods.is_empty(), "no method filter found for {path}: the scanner needs teaching");
        out.extend(methods.into_iter().map(|m| (m, path.clone())));
    }
    out
}

/// `"v1" / "ledgers" / String / "records"` → `/v1/ledgers/{}/records`.
fn macro_path(args: &str) -> String {
    args.split('/')
        .map(str::trim)
        .map(|seg| match seg.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            Some(literal) => format!("/{literal}"),
            None => "/{}".to_owned(),
        })
        .collect()
}

/// `warp::path("v1").and(warp::path("ledgers"))…` → (`/v1/ledgers`, the rest).
fn chain_path(text: &str) -> (String, &str) {
    let mut path = String::new();
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        let trimmed = trimmed.strip_prefix(".and(").unwrap_or(trimmed);
        let Some(arg) = trimmed.strip_prefix("warp::path(\"") else { break };
        let close = arg.find('"').expect("literal closes");
        path.push('/');
        path.push_str(&arg[..close]);
        rest = arg[close..].trim_start_matches('"').trim_start_matches(')');
        rest = rest.strip_prefix(')').unwrap_or(rest);
    }
    assert!(!path.is_empty(), "a warp::path chain with no literal: {}", &text[..text.len().min(80)]);
    (path, rest)
}

/// Method filters: the first `warp::get()`-style filter for an exact route;
/// for a subtree route, the `http::Method::X` values it matches on.
fn methods_in(text: &str, subtree: bool) -> Vec<String> {
    if subtree {
        let mut found: Vec<String> = Vec::new();
        for m in METHODS {
            let name = m.to_ascii_uppercase();
            if text.contains(&format!("http::Method::{name}")) && !found.contains(&name) {
                found.push(name);
            }
        }
        return found;
    }
    METHODS
        .iter()
        .filter_map(|m| text.find(&format!("warp::{m}()")).map(|i| (i, m.to_ascii_uppercase())))
        .min()
        .map(|(_, m)| vec![m])
        .unwrap_or_default()
}

/// `/v1/ledgers/{ledger}/records/{seq}` → `/v1/ledgers/{}/records/{}`.
fn template(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') && seg.ends_with('}') { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every documented operation: (route as the scanner writes it, path, method, operation).
fn documented(doc: &Value) -> Vec<(Route, String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            assert!(METHODS.contains(&method.as_str()), "{path}: unexpected member {method}");
            let upper = method.to_ascii_uppercase();
            let route = match op["x-annal-route-prefix"].as_str() {
                Some(prefix) => {
                    assert!(path.starts_with(prefix), "{method} {path} is not under its prefix {prefix}");
                    (upper, format!("{prefix}/**"))
                }
                None => (upper, template(path)),
            };
            out.push((route, path.clone(), method.clone(), op.clone()));
        }
    }
    out
}

#[test]
fn source_scanner_reads_the_filter_shapes_the_daemon_uses() {
    let text = r#"
        let a = warp::path!("v1" / "ledgers" / String / "records" / u64)
            .and(warp::get())
            .then(get_record);
        let b = warp::path("v1")
            .and(warp::path("ledgers"))
            .and(warp::method())
            .and_then(|method: http::Method| async move {
                match method {
                    http::Method::PUT | http::Method::DELETE => Ok(method),
                    _ => Err(warp::reject::not_found()),
                }
            });
        let c = warp::path!("metrics").and(warp::get()).map(|| { let x = 1; warp::post() });
    }
    "#;
    let expected = [
        ("GET", "/v1/ledgers/{}/records/{}"),
        ("PUT", "/v1/ledgers/**"),
        ("DELETE", "/v1/ledgers/**"),
        ("GET", "/metrics"),
    ];
    let expected: Vec<Route> = expected.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    assert_eq!(scan(text), expected);
}

#[test]
fn documented_routes_equal_the_source_routes() {
    let doc = document();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "OpenAPI 3.1");
    let from_doc: BTreeSet<Route> = documented(&doc).into_iter().map(|(route, ..)| route).collect();
    let from_source = source_routes();
    assert!(from_source.len() >= 20, "the scanner found the routes: {from_source:?}");
    let undocumented: Vec<_> = from_source.difference(&from_doc).collect();
    let invented: Vec<_> = from_doc.difference(&from_source).collect();
    assert!(undocumented.is_empty(), "routes missing from docs/openapi.json: {undocumented:?}");
    assert!(invented.is_empty(), "documented routes the daemon does not have: {invented:?}");
}

/// The `code` strings of `ApiError::parts`, in order.
fn source_error_codes() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("daemon/src/api/error.rs")).expect("error.rs");
    let start = text.find("fn parts(").expect("ApiError::parts");
    let body = &text[start..start + text[start..].find("\n    }\n").expect("parts ends")];
    // Each arm is `E::Variant .. => (S::STATUS, "code", "title")`: the code is
    // the first string literal after the arm's `=>`.
    body.split("E::")
        .filter_map(|arm| arm.split_once("=>"))
        .map(|(_, rhs)| rhs.split('"').nth(1).expect("a code literal").to_owned())
        .collect()
}

#[test]
fn every_error_code_is_documented_and_no_other() {
    let doc = document();
    let source = source_error_codes();
    assert!(source.len() >= 25 && source.contains(&"ledger.append_only".to_owned()), "{source:?}");
    let in_doc: Vec<String> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode enum")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    let a: BTreeSet<_> = source.iter().collect();
    let b: BTreeSet<_> = in_doc.iter().collect();
    assert_eq!(a, b, "ErrorCode enum vs ApiError::parts");
    let problem = &doc["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "code", "request_id", "detail"] {
        assert!(problem["properties"][field].is_object(), "Problem.{field}");
    }
    // Every per-operation code list draws from the enum.
    for (_, path, method, op) in documented(&doc) {
        for (status, code) in op_codes(&op) {
            assert!(b.contains(&code), "{method} {path} {status}: unknown code {code}");
        }
    }
}

/// (status, code) pairs an operation documents.
fn op_codes(op: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (status, resp) in op["responses"].as_object().expect("responses") {
        let Some(all_of) = resp["content"]["application/problem+json"]["schema"]["allOf"].as_array() else {
            continue;
        };
        for part in all_of {
            for code in part["properties"]["code"]["enum"].as_array().into_iter().flatten() {
                out.push((status.clone(), code.as_str().expect("code").to_owned()));
            }
        }
    }
    out
}

#[test]
fn the_daemon_serves_the_document_and_every_documented_route_is_live() {
    let d = Daemon::start(None);
    let served = d.get("/openapi.json");
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("application/json"));
    let on_disk = std::fs::read(root().join("docs/openapi.json")).expect("docs/openapi.json");
    assert!(served.body == on_disk, "the served document differs from docs/openapi.json (rebuild annald)");
    assert_eq!(served.json(), document());

    // A tenant with a ledger, a record and a checkpoint; a second tenant for
    // the admin routes (which suspend and issue keys).
    let admin = d.admin_key();
    let key = d.tenant_with_key("acme");
    let r = d.call("POST", "/v1/ledgers/orders/records", &key, Some(&json!({"payload": 1})));
    assert_eq!(r.status, 201);
    assert_eq!(d.call("POST", "/admin/v1/checkpoints", &admin, None).status, 200);
    d.tenant_with_key("probe");
    let bundle = d.call("GET", "/v1/ledgers/orders/records/0/proof", &key, None).body;

    let doc = document();
    let mut seen = BTreeMap::new();
    for (_, path, method, op) in documented(&doc) {
        let concrete = path
            .replace("{ledger}", "orders")
            .replace("{seq}", "0")
            .replace("{tenant}", "probe")
            .replace("{key_id}", "0123456789abcdef")
            .replace("{id}", "wh_0123456789abcdef0123456789abcdef")
            .replace("{version}", "1");
        let query = match op["operationId"].as_str() {
            Some("consistency") => "?from=1&to=1",
            _ => "",
        };
        let token = match op["security"].as_array().and_then(|s| s.last()) {
            Some(s) if s.get("adminKey").is_some() => admin.as_str(),
            Some(s) if s.get("tenantKey").is_some() => key.as_str(),
            _ => "",
        };
        let body: Vec<u8> = match op["operationId"].as_str() {
            Some("verify") => bundle.clone(),
            Some("create_tenant") => br#"{"id":"probe2"}"#.to_vec(),
            _ if op.get("requestBody").is_some() => br#"{"payload":2}"#.to_vec(),
            _ => Vec::new(),
        };
        let auth = format!("Bearer {token}");
        let headers: Vec<(&str, &str)> =
            if token.is_empty() { vec![] } else { vec![("Authorization", auth.as_str())] };
        let upper = method.to_ascii_uppercase();
        let r = request(d.addr, &upper, &format!("{concrete}{query}"), &headers, &body);
        let what = format!("{upper} {concrete}{query} -> {} {}", r.status, String::from_utf8_lossy(&r.body));
        let code = (r.header("content-type") == Some("application/problem+json"))
            .then(|| r.json()["code"].as_str().unwrap_or("").to_owned());
        assert!(
            !matches!(code.as_deref(), Some("route.not_found" | "route.method_not_allowed")),
            "documented but not routed: {what}"
        );
        assert!(r.header("x-request-id").is_some(), "no X-Request-Id: {what}");
        let status = r.status.to_string();
        assert!(op["responses"].get(&status).is_some(), "status not documented: {what}");
        if let Some(code) = code {
            assert!(
                op_codes(&op).contains(&(status.clone(), code)),
                "code not documented for the status: {what}"
            );
        }
        seen.insert(format!("{upper} {path}"), r.status);
    }
    assert!(seen.len() >= 30, "{seen:?}");
}

/// Who may call a documented operation, from its `security` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    Tenant,
    /// A tenant key or none: the append-only refusals answer everyone.
    TenantOrAnonymous,
    Admin,
}

/// One documented operation, for tests that walk every route (api.rs's
/// cross-tenant matrix). docs/openapi.json equals the source routes
/// (`documented_routes_equal_the_source_routes`), so a walk over these
/// cannot miss a route the daemon serves.
#[derive(Clone, Debug)]
pub struct Operation {
    pub id: String,
    /// Upper case: `GET`.
    pub method: String,
    /// As documented: `/v1/ledgers/{ledger}/records/{seq}`.
    pub path: String,
    pub access: Access,
    /// Query parameters: (name, required).
    pub query: Vec<(String, bool)>,
    pub has_body: bool,
}

/// Every documented operation, in document order.
pub fn operations() -> Vec<Operation> {
    let doc = document();
    let params = &doc["components"]["parameters"];
    documented(&doc)
        .into_iter()
        .map(|((method, _), path, _, op)| {
            let security: Vec<&Value> =
                op["security"].as_array().map(|s| s.iter().collect()).unwrap_or_default();
            let has = |scheme: &str| security.iter().any(|s| s.get(scheme).is_some());
            let anonymous = security.iter().any(|s| s.as_object().is_some_and(|o| o.is_empty()));
            let access = match (has("adminKey"), has("tenantKey"), anonymous) {
                (true, false, false) => Access::Admin,
                (false, true, false) => Access::Tenant,
                (false, true, true) => Access::TenantOrAnonymous,
                (false, false, _) => Access::Public,
                other => panic!("{method} {path}: unexpected security {other:?}"),
            };
            let query = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match p["$ref"].as_str() {
                    Some(r) => &params[r.rsplit('/').next().expect("ref name")],
                    None => p,
                })
                .filter(|p| p["in"] == "query")
                .map(|p| {
                    (p["name"].as_str().expect("name").to_owned(), p["required"].as_bool().unwrap_or(false))
                })
                .collect();
            Operation {
                id: op["operationId"].as_str().expect("operationId").to_owned(),
                method,
                path,
                access,
                query,
                has_body: op.get("requestBody").is_some(),
            }
        })
        .collect()
}

#[test]
fn operations_are_read_with_their_access_and_query() {
    let ops = operations();
    let find = |id: &str| ops.iter().find(|o| o.id == id).unwrap_or_else(|| panic!("{id} documented"));
    let consistency = find("consistency");
    assert_eq!((consistency.access, consistency.method.as_str()), (Access::Tenant, "GET"));
    assert_eq!(consistency.query, [("from".to_owned(), true), ("to".to_owned(), true)]);
    assert_eq!(find("proof").query, [("size".to_owned(), false)]);
    assert!(find("append").has_body && find("verify").has_body);
    assert_eq!(find("append_only_delete_5").access, Access::TenantOrAnonymous);
    assert_eq!(find("metrics").access, Access::Admin);
    assert_eq!(find("health").access, Access::Public);
    let count = |a: Access| ops.iter().filter(|o| o.access == a).count();
    assert_eq!(
        (
            count(Access::Tenant),
            count(Access::TenantOrAnonymous),
            count(Access::Admin),
            count(Access::Public)
        ),
        (16, 9, 16, 4)
    );
}
