//! What a webhook URL may point at: a strict parse of the endpoint URL, and
//! the SSRF guard that resolves its host and refuses non-public addresses.
//! The client connects to the addresses checked here, never re-resolving,
//! so a DNS answer that changes between check and use (rebinding) cannot
//! reach an internal address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Longest endpoint URL accepted.
pub const URL_BYTES_MAX: usize = 2048;
/// Most resolved addresses kept to connect to (all are checked).
pub const ADDRS_MAX: usize = 16;
/// Longest DNS name (RFC 1035) and label.
const HOST_BYTES_MAX: usize = 253;
const LABEL_BYTES_MAX: usize = 63;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A checked endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    /// Lowercase DNS name, dotted-quad IPv4, or IPv6 in canonical form
    /// without brackets.
    pub host: String,
    pub port: u16,
    /// Origin form: starts with `/`, only RFC 3986 path/query characters.
    pub path_and_query: String,
}

impl Target {
    /// The host as an IP address, when the URL named one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The `Host` header value: the host (IPv6 bracketed) and the port when
    /// it is not the scheme's default.
    pub fn authority(&self) -> String {
        let host = match self.ip() {
            Some(IpAddr::V6(_)) => format!("[{}]", self.host),
            _ => self.host.clone(),
        };
        if self.port == self.scheme.default_port() { host } else { format!("{host}:{}", self.port) }
    }
}

/// Why an endpoint URL is refused, or its host cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// Longer than `URL_BYTES_MAX`.
    TooLong {
        len: usize,
    },
    /// A byte outside printable ASCII (spaces, controls, raw UTF-8).
    BadCharacter,
    /// Not `http://` or `https://` (any case).
    NotHttp,
    /// `user:password@` in the authority.
    UserInfo,
    /// A `#fragment`: it is never sent, so a URL with one is a mistake.
    Fragment,
    NoHost,
    /// Not a DNS name of letters, digits and hyphens, nor a literal IP
    /// (dotted-quad IPv4 or bracketed IPv6 without a zone).
    BadHost,
    /// Empty, not decimal, 0, or above 65535.
    BadPort,
    /// A character not allowed in a path or query, or a broken `%` escape.
    BadPath,
    /// The host resolved to an address the policy does not allow. Log the
    /// address; do not show it to tenants (it would map internal DNS for them).
    Forbidden {
        addr: IpAddr,
    },
    /// The resolver failed (no such name, no network).
    Resolve {
        reason: String,
    },
    /// The resolver did not answer in time.
    ResolveTimeout,
    /// The name has no addresses.
    NoAddress,
}

impl core::fmt::Display for TargetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TargetError::TooLong { len } => write!(f, "URL is {len} bytes, more than {URL_BYTES_MAX}"),
            TargetError::BadCharacter => f.write_str("URL has a character outside printable ASCII"),
            TargetError::NotHttp => f.write_str("URL scheme must be http or https"),
            TargetError::UserInfo => f.write_str("URL must not carry a user name or password"),
            TargetError::Fragment => f.write_str("URL must not have a #fragment"),
            TargetError::NoHost => f.write_str("URL has no host"),
            TargetError::BadHost => f.write_str("URL host is not a DNS name or IP address"),
            TargetError::BadPort => f.write_str("URL port must be 1 to 65535"),
            TargetError::BadPath => f.write_str("URL path or query has a character that must be %-escaped"),
            TargetError::Forbidden { addr } => write!(f, "{addr} is not a public address"),
            TargetError::Resolve { reason } => write!(f, "resolving the host failed: {reason}"),
            TargetError::ResolveTimeout => f.write_str("resolving the host timed out"),
            TargetError::NoAddress => f.write_str("the host has no addresses"),
        }
    }
}

impl std::error::Error for TargetError {}

/// Parses and checks an endpoint URL when it is created.
///
/// Hand-written rather than `http::Uri` or `url`: `http::Uri` is lenient
/// (it drops a fragment silently, keeps userinfo, takes `:+80` and raw UTF-8
/// in the path, and reads port 99999 as "no port"), and WHATWG parsing (`url`)
/// rewrites hosts such as `0x7f.1` into IPv4 addresses. What this accepts is a
/// subset of RFC 3986 that `http::uri::PathAndQuery` also takes, so the client
/// can always build the request.
pub fn parse(url: &str) -> Result<Target, TargetError> {
    if url.len() > URL_BYTES_MAX {
        return Err(TargetError::TooLong { len: url.len() });
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TargetError::BadCharacter);
    }
    let (scheme, rest) = url.split_once("://").ok_or(TargetError::NotHttp)?;
    let scheme = if scheme.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else if scheme.eq_ignore_ascii_case("https") {
        Scheme::Https
    } else {
        return Err(TargetError::NotHttp);
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, _)) => (rest, true),
        None => (rest, false),
    };
    let (authority, path_and_query) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err(TargetError::UserInfo);
    }
    if fragment {
        return Err(TargetError::Fragment);
    }
    let (host, port) = split_authority(authority)?;
    let host = parse_host(host)?;
    let port = match port {
        None => scheme.default_port(),
        Some(port) => parse_port(port)?,
    };
    let path_and_query = match path_and_query {
        "" => "/".to_owned(),
        pq if pq.starts_with('?') => format!("/{pq}"),
        pq => pq.to_owned(),
    };
    check_path_and_query(&path_and_query)?;
    Ok(Target { scheme, host, port, path_and_query })
}

/// Splits `host[:port]` / `[v6][:port]`; the port is returned unparsed.
fn split_authority(authority: &str) -> Result<(&str, Option<&str>), TargetError> {
    if authority.is_empty() {
        return Err(TargetError::NoHost);
    }
    if authority.starts_with('[') {
        let end = authority.find(']').ok_or(TargetError::BadHost)?;
        let (host, after) = authority.split_at(end + 1);
        return match after {
            "" => Ok((host, None)),
            _ => after.strip_prefix(':').map(|port| (host, Some(port))).ok_or(TargetError::BadHost),
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn parse_host(host: &str) -> Result<String, TargetError> {
    if host.is_empty() {
        return Err(TargetError::NoHost);
    }
    if let Some(inner) = host.strip_prefix('[') {
        // Zone ids (`%25eth0`) fail here: a zone is link-local, never public.
        let inner = inner.strip_suffix(']').ok_or(TargetError::BadHost)?;
        return inner.parse::<Ipv6Addr>().map(|ip| ip.to_string()).map_err(|_| TargetError::BadHost);
    }
    let host = host.to_ascii_lowercase();
    if host.len() > HOST_BYTES_MAX {
        return Err(TargetError::BadHost);
    }
    let labels: Vec<&str> = host.split('.').collect();
    let last = labels.last().copied().unwrap_or_default();
    // A name whose last label starts with a digit is an IPv4 address or
    // nothing: `0x7f.1`, `2130706433` and `127.1` would be read by some
    // resolvers as 127.0.0.1. Rust's parser takes dotted-quad decimal only.
    if last.starts_with(|c: char| c.is_ascii_digit()) {
        return host.parse::<Ipv4Addr>().map(|ip| ip.to_string()).map_err(|_| TargetError::BadHost);
    }
    let label_ok = |label: &str| {
        (1..=LABEL_BYTES_MAX).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if labels.iter().all(|label| label_ok(label)) { Ok(host) } else { Err(TargetError::BadHost) }
}

fn parse_port(port: &str) -> Result<u16, TargetError> {
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TargetError::BadPort);
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(TargetError::BadPort),
        Ok(port) => Ok(port),
    }
}

/// RFC 3986 `pchar`s, `/` and `?`, with well-formed `%XX` escapes.
fn check_path_and_query(pq: &str) -> Result<(), TargetError> {
    let bytes = pq.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let escape = bytes.get(i + 1..i + 3).ok_or(TargetError::BadPath)?;
            if !escape.iter().all(u8::is_ascii_hexdigit) {
                return Err(TargetError::BadPath);
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b)) {
            return Err(TargetError::BadPath);
        }
        i += 1;
    }
    pq.parse::<http::uri::PathAndQuery>().map(|_| ()).map_err(|_| TargetError::BadPath)
}

/// Which destination addresses are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// Also allow loopback, private, link-local, shared, reserved and
    /// documentation addresses: development, tests, and receivers on an
    /// internal network by the operator's choice. Unspecified, multicast and
    /// broadcast addresses stay refused: they are never a receiver.
    pub allow_private: bool,
}

/// How an address may be used as a webhook destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddrClass {
    /// Globally routable: always allowed.
    Public,
    /// Internal, reserved or documentation: only with `allow_private`.
    Internal,
    /// Unspecified, multicast or broadcast: never a destination.
    Never,
}

/// IPv4 ranges that are not public, first match wins (so the broadcast
/// address is `Never` before 240/4 is `Internal`).
const V4_RANGES: &[([u8; 4], u8, AddrClass)] = &[
    ([0, 0, 0, 0], 8, AddrClass::Never), // "this network", incl. unspecified (RFC 791)
    ([255, 255, 255, 255], 32, AddrClass::Never), // limited broadcast
    ([224, 0, 0, 0], 4, AddrClass::Never), // multicast
    ([10, 0, 0, 0], 8, AddrClass::Internal), // private (RFC 1918)
    ([100, 64, 0, 0], 10, AddrClass::Internal), // shared address space, CGNAT (RFC 6598)
    ([127, 0, 0, 0], 8, AddrClass::Internal), // loopback
    ([169, 254, 0, 0], 16, AddrClass::Internal), // link-local, incl. cloud metadata
    ([172, 16, 0, 0], 12, AddrClass::Internal), // private
    ([192, 0, 0, 0], 24, AddrClass::Internal), // IETF protocol assignments
    ([192, 0, 2, 0], 24, AddrClass::Internal), // TEST-NET-1 (RFC 5737)
    ([192, 88, 99, 0], 24, AddrClass::Internal), // 6to4 relay anycast (deprecated)
    ([192, 168, 0, 0], 16, AddrClass::Internal), // private
    ([198, 18, 0, 0], 15, AddrClass::Internal), // benchmarking (RFC 2544)
    ([198, 51, 100, 0], 24, AddrClass::Internal), // TEST-NET-2
    ([203, 0, 113, 0], 24, AddrClass::Internal), // TEST-NET-3
    ([240, 0, 0, 0], 4, AddrClass::Internal), // reserved
];

/// IPv6 ranges inside global unicast 2000::/3 that are not public.
const V6_GLOBAL_EXCEPTIONS: &[(u128, u8)] = &[
    (0x2001_0000 << 96, 23), // IETF protocol assignments, incl. Teredo 2001::/32
    (0x2001_0db8 << 96, 32), // documentation (RFC 3849)
    (0x2002_0000 << 96, 16), // 6to4: embeds an IPv4 address reached through a relay
    (0x3fff_0000 << 96, 20), // documentation (RFC 9637)
];

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: u128, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    u128::from(ip) & mask == net & mask
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    V4_RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map_or(AddrClass::Public, |(_, _, class)| *class)
}

/// IPv6 is public only inside 2000::/3, less the exceptions; everything
/// else (loopback, ULA fc00::/7, link-local fe80::/10, site-local,
/// IPv4-compatible ::/96, discard 100::/64, NAT64 local-use 64:ff9b:1::/48)
/// is internal. IPv4-mapped ::ffff:0:0/96 and NAT64 64:ff9b::/96 addresses
/// reach the IPv4 address they embed, so they are classed as that address.
fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if in_v6(ip, 0x0064_ff9b << 96, 96) {
        let [.., a, b, c, d] = ip.octets();
        return classify_v4(Ipv4Addr::new(a, b, c, d));
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return AddrClass::Never;
    }
    let global = in_v6(ip, 0x2000 << 112, 3);
    if global && !V6_GLOBAL_EXCEPTIONS.iter().any(|(net, prefix)| in_v6(ip, *net, *prefix)) {
        AddrClass::Public
    } else {
        AddrClass::Internal
    }
}

fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

/// Whether `policy` lets the client connect to `ip`.
pub fn allowed(ip: IpAddr, policy: &Policy) -> bool {
    match classify(ip) {
        AddrClass::Public => true,
        AddrClass::Internal => policy.allow_private,
        AddrClass::Never => false,
    }
}

/// Resolves the host (no lookup for a literal IP) within `timeout` and
/// returns at most `ADDRS_MAX` addresses to connect to, in the resolver's
/// order. Refuses the target if any resolved address is not allowed, so a
/// name that answers with public and internal addresses is refused whole.
/// (When the timeout fires, tokio's blocking `getaddrinfo` call finishes
/// in the background; its answer is dropped.)
pub async fn resolve(
    target: &Target,
    policy: &Policy,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, TargetError> {
    let resolved: Vec<SocketAddr> = match target.ip() {
        Some(ip) => vec![SocketAddr::new(ip, target.port)],
        None => {
            let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
            match tokio::time::timeout(timeout, lookup).await {
                Err(_) => return Err(TargetError::ResolveTimeout),
                Ok(Err(error)) => return Err(TargetError::Resolve { reason: error.to_string() }),
                Ok(Ok(addrs)) => addrs.collect(),
            }
        }
    };
    if let Some(addr) = resolved.iter().find(|addr| !allowed(addr.ip(), policy)) {
        return Err(TargetError::Forbidden { addr: addr.ip() });
    }
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in resolved {
        if !addrs.contains(&addr) && addrs.len() < ADDRS_MAX {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() { Err(TargetError::NoAddress) } else { Ok(addrs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(scheme: Scheme, host: &str, port: u16, pq: &str) -> Target {
        Target { scheme, host: host.to_owned(), port, path_and_query: pq.to_owned() }
    }

    #[test]
    fn parse_accepts_and_normalises() {
        use Scheme::{Http, Https};
        let cases: &[(&str, Target)] = &[
            ("https://example.com", target(Https, "example.com", 443, "/")),
            ("http://example.com", target(Http, "example.com", 80, "/")),
            (
                "HTTPS://Hooks.Example.COM:8443/in?x=1&y=%2F",
                target(Https, "hooks.example.com", 8443, "/in?x=1&y=%2F"),
            ),
            ("https://example.com?x=1", target(Https, "example.com", 443, "/?x=1")),
            ("https://example.com:443/", target(Https, "example.com", 443, "/")),
            (
                "http://a-b.c9.example:65535/p/a;b=c/~u/@x:y!$'()*+,",
                target(Http, "a-b.c9.example", 65535, "/p/a;b=c/~u/@x:y!$'()*+,"),
            ),
            ("http://203.0.113.7:8080/h", target(Http, "203.0.113.7", 8080, "/h")),
            ("http://[2001:DB8::0:1]/h", target(Http, "2001:db8::1", 80, "/h")),
            ("https://[::1]:9443", target(Https, "::1", 9443, "/")),
            ("https://xn--bcher-kva.example/", target(Https, "xn--bcher-kva.example", 443, "/")),
            ("http://localhost:8080/", target(Http, "localhost", 8080, "/")),
        ];
        for (url, expected) in cases {
            assert_eq!(parse(url).as_ref(), Ok(expected), "{url}");
        }
        let t = parse("http://[::1]:8080/").expect("v6");
        assert_eq!(t.authority(), "[::1]:8080");
        assert_eq!(parse("https://example.com:443/").expect("default port").authority(), "example.com");
        assert_eq!(parse("http://example.com:81/").expect("port").authority(), "example.com:81");
    }

    #[test]
    fn parse_refuses() {
        let long = format!("https://example.com/{}", "a".repeat(URL_BYTES_MAX));
        let label = "a".repeat(64);
        let name = vec!["a".repeat(63); 4].join(".");
        let cases: &[(&str, TargetError)] = &[
            (&long, TargetError::TooLong { len: long.len() }),
            ("https://exa mple.com/", TargetError::BadCharacter),
            ("https://example.com/\t", TargetError::BadCharacter),
            ("https://example.com/ä", TargetError::BadCharacter),
            ("https://example.com/\n", TargetError::BadCharacter),
            ("ftp://example.com/", TargetError::NotHttp),
            ("example.com/", TargetError::NotHttp),
            ("//example.com/", TargetError::NotHttp),
            ("/relative", TargetError::NotHttp),
            ("javascript://example.com/", TargetError::NotHttp),
            ("https:/example.com/", TargetError::NotHttp),
            ("https://user:pw@example.com/", TargetError::UserInfo),
            ("https://user@example.com/", TargetError::UserInfo),
            ("https://good.example@169.254.169.254/", TargetError::UserInfo),
            ("https://example.com/#frag", TargetError::Fragment),
            ("https://example.com#", TargetError::Fragment),
            ("https://", TargetError::NoHost),
            ("https:///path", TargetError::NoHost),
            ("https://:443/", TargetError::NoHost),
            ("https://example.com:/", TargetError::BadPort),
            ("https://example.com:0/", TargetError::BadPort),
            ("https://example.com:65536/", TargetError::BadPort),
            ("https://example.com:99999/", TargetError::BadPort),
            ("https://example.com:+443/", TargetError::BadPort),
            ("https://example.com:0443x/", TargetError::BadPort),
            ("https://example.com:1:2/", TargetError::BadPort),
            ("https://under_score.example/", TargetError::BadHost),
            ("https://-lead.example/", TargetError::BadHost),
            ("https://trail-.example/", TargetError::BadHost),
            ("https://double..example/", TargetError::BadHost),
            ("https://example.com./", TargetError::BadHost),
            ("https://.example.com/", TargetError::BadHost),
            (&format!("https://{label}.example/"), TargetError::BadHost),
            (&format!("https://{name}/"), TargetError::BadHost),
            ("https://%65xample.com/", TargetError::BadHost),
            ("https://0x7f.1/", TargetError::BadHost),
            ("https://2130706433/", TargetError::BadHost),
            ("https://127.1/", TargetError::BadHost),
            ("https://0177.0.0.1/", TargetError::BadHost),
            ("https://127.0.0.01/", TargetError::BadHost),
            ("https://1.2.3.4.5/", TargetError::BadHost),
            ("https://[::1/", TargetError::BadHost),
            ("https://[::1]x/", TargetError::BadHost),
            ("https://[fe80::1%25eth0]/", TargetError::BadHost),
            ("https://[1.2.3.4]/", TargetError::BadHost),
            ("https://::1/", TargetError::NoHost),
            ("https://example.com/a%", TargetError::BadPath),
            ("https://example.com/a%zz", TargetError::BadPath),
            ("https://example.com/a%4", TargetError::BadPath),
            ("https://example.com/a\\b", TargetError::BadPath),
            ("https://example.com/a\"b", TargetError::BadPath),
            ("https://example.com/a<b>", TargetError::BadPath),
            ("https://example.com/{x}", TargetError::BadPath),
            ("https://example.com/a|b", TargetError::BadPath),
            ("https://example.com/a^b", TargetError::BadPath),
            ("https://example.com/`", TargetError::BadPath),
        ];
        for (url, expected) in cases {
            assert_eq!(parse(url).as_ref(), Err(expected), "{url}");
        }
    }

    #[test]
    fn address_classes() {
        use AddrClass::{Internal, Never, Public};
        let cases: &[(&str, AddrClass)] = &[
            // IPv4 public
            ("1.1.1.1", Public),
            ("8.8.8.8", Public),
            ("9.255.255.255", Public),
            ("11.0.0.0", Public),
            ("100.63.255.255", Public),
            ("100.128.0.0", Public),
            ("172.15.255.255", Public),
            ("172.32.0.0", Public),
            ("192.0.1.1", Public),
            ("192.169.0.0", Public),
            ("198.20.0.0", Public),
            ("223.255.255.255", Public),
            // IPv4 never
            ("0.0.0.0", Never),
            ("0.1.2.3", Never),
            ("255.255.255.255", Never),
            ("224.0.0.1", Never),
            ("239.255.255.255", Never),
            // IPv4 internal
            ("10.0.0.1", Internal),
            ("10.255.255.255", Internal),
            ("100.64.0.1", Internal),
            ("100.127.255.255", Internal),
            ("127.0.0.1", Internal),
            ("127.255.255.254", Internal),
            ("169.254.169.254", Internal),
            ("172.16.0.1", Internal),
            ("172.31.255.255", Internal),
            ("192.0.0.8", Internal),
            ("192.0.2.1", Internal),
            ("192.88.99.1", Internal),
            ("192.168.1.1", Internal),
            ("198.18.0.1", Internal),
            ("198.19.255.255", Internal),
            ("198.51.100.1", Internal),
            ("203.0.113.1", Internal),
            ("240.0.0.1", Internal),
            ("255.255.255.254", Internal),
            // IPv6 public
            ("2606:4700:4700::1111", Public),
            ("2a00:1450:4001::200e", Public),
            ("2001:200::1", Public),
            ("3ffe::1", Public),
            ("::ffff:8.8.8.8", Public),
            ("64:ff9b::808:808", Public),
            // IPv6 never
            ("::", Never),
            ("ff02::1", Never),
            ("ff05::2", Never),
            ("::ffff:0.0.0.0", Never),
            ("::ffff:224.0.0.1", Never),
            ("64:ff9b::ffff:ffff", Never),
            // IPv6 internal
            ("::1", Internal),
            ("fe80::1", Internal),
            ("febf::1", Internal),
            ("fec0::1", Internal),
            ("fc00::1", Internal),
            ("fd12:3456::1", Internal),
            ("2001:db8::1", Internal),
            ("2001::1", Internal),
            ("2001:1ff::1", Internal),
            ("2002:7f00:1::1", Internal),
            ("2002:808:808::1", Internal),
            ("3fff::1", Internal),
            ("100::1", Internal),
            ("64:ff9b:1::1", Internal),
            ("::8.8.8.8", Internal),
            ("::127.0.0.1", Internal),
            ("::ffff:127.0.0.1", Internal),
            ("::ffff:10.0.0.1", Internal),
            ("::ffff:169.254.169.254", Internal),
            ("::ffff:100.64.0.1", Internal),
            ("64:ff9b::7f00:1", Internal),
            ("64:ff9b::a00:1", Internal),
            ("64:ff9b::a9fe:a9fe", Internal),
            ("4000::1", Internal),
            ("1fff::1", Internal),
        ];
        for (text, expected) in cases {
            let ip: IpAddr = text.parse().expect("test address");
            assert_eq!(classify(ip), *expected, "{text}");
            let open = Policy { allow_private: true };
            assert_eq!(allowed(ip, &Policy::default()), *expected == Public, "{text}");
            assert_eq!(allowed(ip, &open), *expected != Never, "{text} with allow_private");
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
    }

    #[test]
    fn resolve_checks_literals_without_dns() {
        let timeout = Duration::from_secs(5);
        let strict = Policy::default();
        let open = Policy { allow_private: true };
        let resolve_url = |url: &str, policy: Policy| {
            let target = parse(url).expect("url");
            block_on(async move { resolve(&target, &policy, timeout).await })
        };
        let public: SocketAddr = "203.0.114.9:8443".parse().expect("addr");
        assert_eq!(resolve_url("https://203.0.114.9:8443/", strict), Ok(vec![public]));
        let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(
            resolve_url("http://127.0.0.1:9/", strict),
            Err(TargetError::Forbidden { addr: loopback })
        );
        assert_eq!(resolve_url("http://127.0.0.1:9/", open), Ok(vec![SocketAddr::new(loopback, 9)]));
        let mapped: IpAddr = "::ffff:169.254.169.254".parse().expect("ip");
        assert_eq!(
            resolve_url("http://[::ffff:169.254.169.254]/", strict),
            Err(TargetError::Forbidden { addr: mapped })
        );
        let zero: IpAddr = "0.0.0.0".parse().expect("ip");
        assert_eq!(resolve_url("http://0.0.0.0:9/", open), Err(TargetError::Forbidden { addr: zero }));
    }

    #[test]
    fn resolve_checks_names_after_lookup() {
        // `localhost` resolves from /etc/hosts, so this needs no network.
        let target = parse("http://localhost:9/").expect("url");
        let timeout = Duration::from_secs(5);
        let refused = block_on(resolve(&target, &Policy::default(), timeout));
        assert!(matches!(refused, Err(TargetError::Forbidden { addr }) if addr.is_loopback()), "{refused:?}");
        let allowed =
            block_on(resolve(&target, &Policy { allow_private: true }, timeout)).expect("localhost");
        assert!(!allowed.is_empty() && allowed.len() <= ADDRS_MAX);
        assert!(allowed.iter().all(|addr| addr.ip().is_loopback() && addr.port() == 9), "{allowed:?}");
    }
}
