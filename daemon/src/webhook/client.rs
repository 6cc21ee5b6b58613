//! One webhook POST, bounded everywhere: connect to an address the SSRF
//! guard checked, speak HTTP/1.1 (over rustls for https), never follow a
//! redirect, read little of the answer, and give up after a deadline.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use super::target::{ADDRS_MAX, Scheme, Target};

/// `user-agent` of every delivery.
pub const USER_AGENT: &str = concat!("annal-webhooks/", env!("CARGO_PKG_VERSION"));
/// Most extra request headers (the worker sends three).
pub const REQUEST_HEADERS_MAX: usize = 32;
/// Largest response head (status line and headers) and most header lines.
pub const RESPONSE_HEAD_BYTES_MAX: usize = 16 * 1024;
pub const RESPONSE_HEADERS_MAX: usize = 64;
/// hyper's read buffer: the most it reads from the socket at once, so a
/// response body is read at most this far past `response_bytes_max`.
pub const READ_BUFFER_BYTES_MAX: usize = 16 * 1024;
/// Largest extra CA file, and most certificates in it.
pub const CA_FILE_BYTES_MAX: u64 = 1024 * 1024;
pub const CA_CERTS_MAX: usize = 256;

/// Headers the client sets itself: a caller's copy would change the framing
/// or the destination, so one is refused rather than sent.
const RESERVED_HEADERS: &[HeaderName] = &[
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::CONTENT_TYPE,
    header::USER_AGENT,
    header::UPGRADE,
    header::EXPECT,
    header::TE,
];

/// One delivery attempt.
#[derive(Debug)]
pub struct Request<'a> {
    pub target: &'a Target,
    /// From `target::resolve` for this target: the client connects to these
    /// and never resolves the host again.
    pub addrs: &'a [SocketAddr],
    /// The `webhook-*` headers; names in `RESERVED_HEADERS` are refused.
    pub headers: &'a [(&'a str, String)],
    pub body: Bytes,
}

/// Bounds of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Per address for the TCP connect, and again for the TLS handshake.
    pub connect_timeout: Duration,
    /// The whole attempt: connecting, sending, and reading the answer.
    pub total_timeout: Duration,
    /// Response body bytes read (then discarded) before the connection is dropped.
    pub response_bytes_max: usize,
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// The receiver answered anything else, redirects included (they are
    /// never followed: the endpoint URL should be updated instead).
    Rejected { status: u16 },
    /// No answer: connect, TLS or protocol error, or a timeout.
    Failed { reason: String },
}

/// The TLS client settings of every delivery: Mozilla's roots plus an
/// optional extra CA file, the ring provider, TLS 1.2 and 1.3, ALPN http/1.1.
#[derive(Clone)]
pub struct TlsConfig(Arc<rustls::ClientConfig>);

impl core::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TlsConfig(..)")
    }
}

/// Why the TLS settings could not be built.
#[derive(Debug)]
pub enum TlsConfigError {
    Io {
        path: String,
        error: std::io::Error,
    },
    /// Larger than `CA_FILE_BYTES_MAX` or with more than `CA_CERTS_MAX` certificates.
    TooLarge {
        path: String,
    },
    /// Not PEM, or no `CERTIFICATE` block in it.
    NoCertificates {
        path: String,
    },
    /// A certificate that is not a usable trust anchor.
    BadCertificate {
        path: String,
        reason: String,
    },
    Rustls(String),
}

impl core::fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TlsConfigError::Io { path, error } => write!(f, "{path}: {error}"),
            TlsConfigError::TooLarge { path } => {
                write!(f, "{path}: more than {CA_FILE_BYTES_MAX} bytes or {CA_CERTS_MAX} certificates")
            }
            TlsConfigError::NoCertificates { path } => write!(f, "{path}: no PEM certificate in it"),
            TlsConfigError::BadCertificate { path, reason } => write!(f, "{path}: {reason}"),
            TlsConfigError::Rustls(reason) => write!(f, "TLS settings: {reason}"),
        }
    }
}

impl std::error::Error for TlsConfigError {}

impl TlsConfig {
    /// Mozilla's roots (webpki-roots, compiled in: the host's store plays no
    /// part) plus, optionally, the CA certificates of a PEM file, for internal
    /// receivers and tests.
    pub fn new(extra_ca_pem: Option<&Path>) -> Result<TlsConfig, TlsConfigError> {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        if let Some(path) = extra_ca_pem {
            let shown = path.display().to_string();
            for cert in read_pem_certs(path)? {
                roots.add(cert).map_err(|e| TlsConfigError::BadCertificate {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        // Deprecated in rustls 0.23.48 only because ring has no post-quantum
        // key exchange; aws-lc-rs, which has, needs cmake to build.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::Rustls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfig(Arc::new(config)))
    }
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    use std::io::Read as _;
    let shown = path.display().to_string();
    let io = |error| TlsConfigError::Io { path: shown.clone(), error };
    let mut pem = Vec::new();
    std::fs::File::open(path).map_err(io)?.take(CA_FILE_BYTES_MAX + 1).read_to_end(&mut pem).map_err(io)?;
    if pem.len() as u64 > CA_FILE_BYTES_MAX {
        return Err(TlsConfigError::TooLarge { path: shown });
    }
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|_| TlsConfigError::NoCertificates { path: shown.clone() })?;
        if certs.len() == CA_CERTS_MAX {
            return Err(TlsConfigError::TooLarge { path: shown });
        }
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificates { path: shown });
    }
    Ok(certs)
}

/// POSTs `req.body` to the target: connects to the first of `req.addrs`
/// that answers (each within `connect_timeout`), speaks HTTP/1.1 with
/// `host` from the target, `content-type: application/json`,
/// `user-agent: annal-webhooks/<version>` and the given headers, reads and
/// discards at most about `response_bytes_max` of the answer's body, and
/// never follows a redirect. Everything happens within `total_timeout`.
pub async fn post(req: Request<'_>, limits: &Limits, tls: &TlsConfig) -> Outcome {
    match tokio::time::timeout(limits.total_timeout, attempt(req, limits, tls)).await {
        Err(_) => {
            Outcome::Failed { reason: format!("no answer within {} ms", limits.total_timeout.as_millis()) }
        }
        Ok(Err(reason)) => Outcome::Failed { reason },
        Ok(Ok(status)) if (200..300).contains(&status) => Outcome::Delivered { status },
        Ok(Ok(status)) => Outcome::Rejected { status },
    }
}

/// The attempt without its deadline: the answer's status, or why there is none.
async fn attempt(req: Request<'_>, limits: &Limits, tls: &TlsConfig) -> Result<u16, String> {
    let request = build_request(&req)?;
    let tcp = connect(req.addrs, limits.connect_timeout).await?;
    // Ignored on failure: only latency depends on it.
    let _ = tcp.set_nodelay(true);
    match req.target.scheme {
        Scheme::Http => exchange(TokioIo::new(tcp), request, limits).await,
        Scheme::Https => {
            let name = ServerName::try_from(req.target.host.as_str())
                .map_err(|_| format!("{} is not a TLS server name", req.target.host))?
                .to_owned();
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.0));
            let stream = tokio::time::timeout(limits.connect_timeout, connector.connect(name, tcp))
                .await
                .map_err(|_| "TLS handshake timed out".to_owned())?
                .map_err(|e| describe("TLS handshake", &e))?;
            exchange(TokioIo::new(stream), request, limits).await
        }
    }
}

fn build_request(req: &Request<'_>) -> Result<http::Request<Full<Bytes>>, String> {
    if req.headers.len() > REQUEST_HEADERS_MAX {
        return Err(format!("more than {REQUEST_HEADERS_MAX} headers"));
    }
    let mut builder = http::Request::builder()
        .method(http::Method::POST)
        .uri(req.target.path_and_query.as_str())
        .header(header::HOST, req.target.authority())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, USER_AGENT);
    for (name, value) in req.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("bad header name {name:?}"))?;
        if RESERVED_HEADERS.contains(&name) {
            return Err(format!("header {name} is set by the client"));
        }
        // The value is not echoed: it may be a signature.
        let value = HeaderValue::from_str(value).map_err(|_| format!("bad value for header {name}"))?;
        builder = builder.header(name, value);
    }
    builder.body(Full::new(req.body.clone())).map_err(|e| describe("request", &e))
}

async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, String> {
    let mut last = "no address to connect to".to_owned();
    for addr in addrs.iter().take(ADDRS_MAX) {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => last = format!("connect {addr}: {error}"),
            Err(_) => last = format!("connect {addr}: timed out"),
        }
    }
    Err(last)
}

/// Sends the request on `io` and returns the answer's status once at most
/// about `response_bytes_max` of its body has been read. hyper's connection
/// is driven here rather than spawned, so nothing outlives the attempt.
async fn exchange<IO>(io: IO, request: http::Request<Full<Bytes>>, limits: &Limits) -> Result<u16, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    let (mut sender, conn) = http1::Builder::new()
        .max_buf_size(READ_BUFFER_BYTES_MAX)
        .max_header_size(RESPONSE_HEAD_BYTES_MAX)
        .max_headers(RESPONSE_HEADERS_MAX)
        .handshake::<_, Full<Bytes>>(io)
        .await
        .map_err(|e| describe("HTTP handshake", &e))?;
    let mut conn = std::pin::pin!(conn);
    let response = async {
        let response = sender.send_request(request).await.map_err(|e| describe("HTTP", &e))?;
        let status = response.status().as_u16();
        drain(response.into_body(), limits.response_bytes_max).await;
        Ok::<u16, String>(status)
    };
    let mut response = std::pin::pin!(response);
    let mut conn_done = false;
    let mut conn_error = None;
    loop {
        tokio::select! {
            result = &mut response => return result.map_err(|e| conn_error.unwrap_or(e)),
            // When the connection ends first, the response future still
            // resolves (hyper cancels what is pending), so keep waiting for it.
            result = &mut conn, if !conn_done => {
                conn_done = true;
                conn_error = result.err().map(|e| describe("HTTP", &e));
            }
        }
    }
}

/// Reads and discards the body until `cap` bytes, its end, or an error.
async fn drain(mut body: hyper::body::Incoming, cap: usize) {
    let mut read = 0usize;
    while read < cap {
        match body.frame().await {
            Some(Ok(frame)) => read = read.saturating_add(frame.data_ref().map_or(0, Bytes::len)),
            Some(Err(_)) | None => break,
        }
    }
}

/// `context: error: source: ...`, for `Outcome::Failed`.
fn describe(context: &str, error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{context}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    //! Each test runs its receiver on 127.0.0.1 in the test itself (hyper's
    //! server, a raw socket, or a listener that never accepts) and checks
    //! the outcome and what the receiver saw.

    use std::convert::Infallible;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::webhook::target;

    /// What the receiver saw of one request.
    #[derive(Debug)]
    struct Seen {
        method: http::Method,
        uri: String,
        headers: http::HeaderMap,
        body: Bytes,
    }

    const BODY: &[u8] = b"{\"seq\":1}";

    fn limits() -> Limits {
        Limits {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(10),
            response_bytes_max: 64 * 1024,
        }
    }

    fn tls() -> TlsConfig {
        TlsConfig::new(None).expect("tls")
    }

    async fn listener() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        (listener, addr)
    }

    fn target_for(scheme: &str, addr: SocketAddr) -> Target {
        target::parse(&format!("{scheme}://localhost:{}/hooks/in?x=1", addr.port())).expect("url")
    }

    async fn post_to(target: &Target, addrs: &[SocketAddr], limits: &Limits, tls: &TlsConfig) -> Outcome {
        let headers = [
            ("webhook-id", "msg_1".to_owned()),
            ("webhook-timestamp", "1700000000".to_owned()),
            ("webhook-signature", "v1,AAAA".to_owned()),
        ];
        post(Request { target, addrs, headers: &headers, body: Bytes::from_static(BODY) }, limits, tls).await
    }

    /// Serves one connection with hyper, answering every request with
    /// `status` (and a `location` on 3xx), and reports what it saw.
    fn serve_one<IO>(io: IO, status: u16, seen: mpsc::UnboundedSender<Seen>)
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let seen = seen.clone();
            async move {
                let (parts, incoming) = request.into_parts();
                let body = incoming.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let _ = seen.send(Seen {
                    method: parts.method,
                    uri: parts.uri.to_string(),
                    headers: parts.headers,
                    body,
                });
                let mut response = http::Response::new(Full::new(Bytes::from_static(b"thanks")));
                *response.status_mut() = http::StatusCode::from_u16(status).expect("status");
                let location = HeaderValue::from_static("http://127.0.0.1:9/elsewhere");
                response.headers_mut().insert(header::LOCATION, location);
                Ok::<_, Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }

    /// A plain HTTP receiver answering `status` on every connection.
    async fn receiver(status: u16) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
        let (listener, addr) = listener().await;
        let (seen, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                serve_one(TokioIo::new(stream), status, seen.clone());
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn a_2xx_is_delivered_with_the_expected_request() {
        let (addr, mut seen) = receiver(204).await;
        let target = target_for("http", addr);
        assert_eq!(post_to(&target, &[addr], &limits(), &tls()).await, Outcome::Delivered { status: 204 });
        let seen = seen.recv().await.expect("the receiver saw the request");
        assert_eq!(seen.method, http::Method::POST);
        assert_eq!(seen.uri, "/hooks/in?x=1");
        assert_eq!(seen.body.as_ref(), BODY);
        let header = |name: &str| seen.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let port = addr.port();
        let expected = [
            ("host", format!("localhost:{port}")),
            ("content-type", "application/json".to_owned()),
            ("user-agent", format!("annal-webhooks/{}", env!("CARGO_PKG_VERSION"))),
            ("content-length", BODY.len().to_string()),
            ("webhook-id", "msg_1".to_owned()),
            ("webhook-timestamp", "1700000000".to_owned()),
            ("webhook-signature", "v1,AAAA".to_owned()),
        ];
        for (name, value) in expected {
            assert_eq!(header(name), Some(value), "{name}");
        }
    }

    #[tokio::test]
    async fn other_statuses_are_rejected_and_redirects_not_followed() {
        for status in [500, 404, 410, 429, 302, 301, 307, 308] {
            let (addr, mut seen) = receiver(status).await;
            let (redirect_addr, mut redirected) = receiver(200).await;
            let target = target_for("http", addr);
            // Both addresses are the client's to try; the first answers, so
            // the second sees nothing even though it would answer 200.
            let outcome = post_to(&target, &[addr, redirect_addr], &limits(), &tls()).await;
            assert_eq!(outcome, Outcome::Rejected { status }, "{status}");
            assert!(seen.recv().await.is_some());
            assert!(seen.try_recv().is_err(), "one request only for {status}");
            assert!(redirected.try_recv().is_err());
        }
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_fails_at_the_deadline() {
        // Bound but never accepting: the kernel completes the handshake and
        // takes the request, and no answer ever comes.
        let (_listener, addr) = listener().await;
        let limits = Limits { total_timeout: Duration::from_millis(200), ..limits() };
        let outcome = post_to(&target_for("http", addr), &[addr], &limits, &tls()).await;
        assert!(
            matches!(&outcome, Outcome::Failed { reason } if reason.contains("no answer")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn refused_addresses_fail_and_the_next_address_is_tried() {
        let (closed, refused) = listener().await;
        drop(closed);
        let target = target_for("http", refused);
        let outcome = post_to(&target, &[refused], &limits(), &tls()).await;
        assert!(matches!(&outcome, Outcome::Failed { reason } if reason.contains("connect")), "{outcome:?}");
        let outcome = post_to(&target, &[], &limits(), &tls()).await;
        assert!(matches!(outcome, Outcome::Failed { .. }), "{outcome:?}");
        let (addr, _seen) = receiver(200).await;
        assert_eq!(
            post_to(&target, &[refused, addr], &limits(), &tls()).await,
            Outcome::Delivered { status: 200 }
        );
    }

    #[tokio::test]
    async fn an_oversized_answer_is_not_read_past_the_cap() {
        const ANSWER_BYTES: usize = 64 * 1024 * 1024;
        let (listener, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let answer_head = format!("HTTP/1.1 200 OK\r\ncontent-length: {ANSWER_BYTES}\r\n\r\n");
            stream.write_all(answer_head.as_bytes()).await.expect("head");
            let chunk = vec![b'x'; 64 * 1024];
            let mut written = 0;
            while written < ANSWER_BYTES {
                match stream.write(&chunk[..chunk.len().min(ANSWER_BYTES - written)]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => written += n,
                }
            }
            written
        });
        let outcome = post_to(&target_for("http", addr), &[addr], &limits(), &tls()).await;
        assert_eq!(outcome, Outcome::Delivered { status: 200 });
        // The client hung up after about 64 KiB; the kernel's buffers take a
        // few MiB more, far from the whole answer.
        let written = server.await.expect("server");
        assert!(written < ANSWER_BYTES, "the receiver wrote its whole {written}-byte answer");
    }

    #[tokio::test]
    async fn reserved_and_malformed_headers_are_refused_before_connecting() {
        let (_listener, addr) = listener().await;
        let target = target_for("http", addr);
        for (name, value) in
            [("host", "evil.example"), ("Content-Length", "1"), ("bad name", "x"), ("x-ok", "a\nb")]
        {
            let headers = [(name, value.to_owned())];
            let req = Request { target: &target, addrs: &[addr], headers: &headers, body: Bytes::new() };
            let outcome = post(req, &limits(), &tls()).await;
            assert!(matches!(outcome, Outcome::Failed { .. }), "{name}: {outcome:?}");
        }
    }

    /// A test CA and a certificate for `localhost` it issued.
    struct Pki {
        ca_pem: String,
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    }

    fn pki() -> Pki {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        ca.distinguished_name.push(rcgen::DnType::CommonName, "annal test CA");
        let ca_pem = ca.self_signed(&ca_key).expect("CA cert").pem();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let cert = params.signed_by(&key, &issuer).expect("cert").der().clone();
        Pki { ca_pem, cert, key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())) }
    }

    /// An HTTPS receiver for `localhost` answering 200.
    async fn tls_receiver(pki: Pki) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![pki.cert], pki.key)
            .expect("server cert");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (listener, addr) = listener().await;
        let (seen, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // A client that refuses the certificate ends the handshake here.
                if let Ok(stream) = acceptor.accept(stream).await {
                    serve_one(TokioIo::new(stream), 200, seen.clone());
                }
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn https_delivers_when_the_ca_is_trusted_and_fails_otherwise() {
        let pki = pki();
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &pki.ca_pem).expect("write CA");
        let (addr, mut seen) = tls_receiver(pki).await;
        let target = target_for("https", addr);

        let outcome = post_to(&target, &[addr], &limits(), &tls()).await;
        assert!(matches!(&outcome, Outcome::Failed { reason } if reason.contains("TLS")), "{outcome:?}");
        assert!(seen.try_recv().is_err(), "nothing was sent over an untrusted connection");

        let trusting = TlsConfig::new(Some(&ca_file)).expect("extra CA");
        assert_eq!(post_to(&target, &[addr], &limits(), &trusting).await, Outcome::Delivered { status: 200 });
        let seen = seen.recv().await.expect("the receiver saw the request");
        assert_eq!(seen.body.as_ref(), BODY);

        // The certificate names localhost, not the address.
        let by_ip = target::parse(&format!("https://127.0.0.1:{}/", addr.port())).expect("url");
        let outcome = post_to(&by_ip, &[addr], &limits(), &trusting).await;
        assert!(matches!(&outcome, Outcome::Failed { reason } if reason.contains("TLS")), "{outcome:?}");
    }

    #[test]
    fn tls_config_refuses_bad_ca_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).expect("write");
            path
        };
        let missing = dir.path().join("missing.pem");
        assert!(matches!(TlsConfig::new(Some(&missing)), Err(TlsConfigError::Io { .. })));
        for (name, bytes) in [("empty", &b""[..]), ("text", b"not a certificate\n")] {
            let path = write(name, bytes);
            assert!(
                matches!(TlsConfig::new(Some(&path)), Err(TlsConfigError::NoCertificates { .. })),
                "{name}"
            );
        }
        let junk = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let path = write("junk", junk);
        assert!(matches!(TlsConfig::new(Some(&path)), Err(TlsConfigError::BadCertificate { .. })));
        let path = write("large", &vec![b'#'; CA_FILE_BYTES_MAX as usize + 1]);
        assert!(matches!(TlsConfig::new(Some(&path)), Err(TlsConfigError::TooLarge { .. })));
    }
}
