//! HTTPS as a user meets it: certificate files made with `openssl` served to a client that
//! trusts only their CA and replaced on disk without a restart; ACME against Pebble (HTTP-01
//! on the plain listener, the chain checked against Pebble's root, a restart with Pebble gone,
//! renewal of short-lived certificates, a pending certificate); plain-HTTP gridX refused;
//! a slow handshake cut; contradictory `[tls]` settings refused by `hookyard check`.

mod pebble;
pub mod pki;
mod shared;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::helpers::{eventually, gridx_ping, gridx_signature, spawn_app};
use pki::{DOMAIN, client_trusting, free_port, make_ca, make_leaf, served_leaf};

fn tls_files_config(port: u16, cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "[tls]\nlisten = \"127.0.0.1:{port}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}",
        cert.display(),
        key.display()
    )
}

fn tls_addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test]
async fn certificate_files_are_served_and_replaced_on_disk_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca_one = std::fs::read(make_ca(dir.path(), "ca-one")).unwrap();
    let ca_two = std::fs::read(make_ca(dir.path(), "ca-two")).unwrap();
    let (cert, key) = make_leaf(dir.path(), "ca-one", "leaf-one", &format!("DNS:{DOMAIN}"));
    let port = free_port();
    let app = spawn_app(&tls_files_config(port, &cert, &key, "")).await;
    let (trusts_one, trusts_two) = (&ca_one, &ca_two);
    served_leaf(trusts_one, port).await.expect("the first certificate verifies against its CA");
    assert!(served_leaf(trusts_two, port).await.is_err(), "a client trusting another CA refuses it");

    // A new pair from the other CA, written over the files the server reads.
    let (new_cert, new_key) = make_leaf(dir.path(), "ca-two", "leaf-two", &format!("DNS:{DOMAIN}"));
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    let swapped = eventually(10, async || served_leaf(trusts_two, port).await.is_ok()).await;
    assert!(swapped, "the replaced certificate is served without a restart");
    assert!(served_leaf(trusts_one, port).await.is_err(), "the old certificate is no longer served");
    let health = app.get_json("/healthz").await;
    assert_eq!(health["status"], "ok", "{health}");
    assert!(health["tls"].as_str().unwrap().starts_with(&format!("serving a certificate for {DOMAIN}")), "{health}");
}

#[tokio::test]
async fn a_slow_tls_handshake_is_cut_and_does_not_hold_up_others() {
    let dir = tempfile::tempdir().unwrap();
    let ca = std::fs::read(make_ca(dir.path(), "ca")).unwrap();
    let (cert, key) = make_leaf(dir.path(), "ca", "leaf", &format!("DNS:{DOMAIN}"));
    let port = free_port();
    let limits = "handshake_timeout_ms = 500\n[server]\nheader_timeout_ms = 30000\nidle_timeout_ms = 30000\n";
    let _app = spawn_app(&tls_files_config(port, &cert, &key, limits)).await;
    let started = Instant::now();
    let slow = std::thread::spawn(move || {
        // Half a ClientHello record header, then nothing.
        let mut stream = std::net::TcpStream::connect(tls_addr(port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        stream.write_all(&[0x16, 0x03]).unwrap();
        let mut buf = [0u8; 64];
        let closed = matches!(stream.read(&mut buf), Ok(0) | Err(_));
        (closed, started.elapsed())
    });
    // Meanwhile a whole HTTPS request goes through.
    served_leaf(&ca, port).await.expect("another client is served meanwhile");
    let (closed, after) = tokio::task::spawn_blocking(move || slow.join().unwrap()).await.unwrap();
    assert!(closed, "the slow handshake's connection is closed");
    assert!(after >= Duration::from_millis(400), "not before the handshake deadline: {after:?}");
    assert!(after < Duration::from_secs(10), "cut by the handshake deadline, not a later one: {after:?}");
}

#[tokio::test]
async fn plain_http_gridx_is_refused_naming_the_https_url_when_tls_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let ca = std::fs::read(make_ca(dir.path(), "ca")).unwrap();
    let (cert, key) = make_leaf(dir.path(), "ca", "leaf", &format!("DNS:{DOMAIN}"));
    let port = free_port();
    let protocols =
        "[protocols.gridx]\nsecrets = [\"whsec_t\"]\n[protocols.ai-on-the-edge]\napi_keys = { \"k\" = \"home\" }\n";
    let app = spawn_app(&tls_files_config(port, &cert, &key, protocols)).await;
    let body = gridx_ping(1, "over plain http");
    let signed = |req: reqwest::RequestBuilder| {
        req.header("X-Signature", gridx_signature("whsec_t", body.as_bytes())).body(body.clone())
    };
    let res = signed(app.client.post(app.url("/gridx/events"))).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let reply: serde_json::Value = res.json().await.unwrap();
    let expected = format!("plain HTTP is refused here: send to https://127.0.0.1:{port}/gridx/events");
    assert_eq!(reply, serde_json::json!({"status": "error", "message": expected}));
    assert!(app.lines("gridx/events.jsonl").is_empty(), "nothing refused is stored");

    let https = client_trusting(&ca, tls_addr(port));
    let res = signed(https.post(format!("https://{DOMAIN}:{port}/gridx/events"))).send().await.unwrap();
    assert_eq!(res.status(), 204, "the same request over HTTPS is accepted");

    // A trusted proxy's X-Forwarded-Proto does not count from anyone else.
    let res = signed(app.client.post(app.url("/gridx/events")).header("X-Forwarded-Proto", "https")).send().await;
    assert_eq!(res.unwrap().status(), 403, "X-Forwarded-Proto from an untrusted peer");

    // AI-on-the-edge (`x-hookyard-scheme: any`) still takes plain HTTP.
    let reading = crate::helpers::ai_reading("main", "1.5", 1_767_225_600);
    let (status, text) = crate::helpers::post_ai(&app, reading).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_x_forwarded_proto_counts_and_config_overrides_the_spec() {
    let config = "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n[protocols.gridx]\nsecrets = [\"whsec_t\"]\n\
                  [protocols.wattsense]\nscheme = \"any\"\nauth = { type = \"none\" }\n";
    let app = spawn_app(config).await;
    let body = gridx_ping(2, "through a proxy");
    let post = |proto: Option<&str>| {
        let mut req = app.client.post(app.url("/gridx/events"));
        if let Some(p) = proto {
            req = req.header("X-Forwarded-Proto", p);
        }
        req.header("X-Signature", gridx_signature("whsec_t", body.as_bytes())).body(body.clone()).send()
    };
    assert_eq!(post(None).await.unwrap().status(), 403, "the proxy did not say https");
    let res = post(Some("https")).await.unwrap();
    assert_eq!(res.status(), 204, "the trusted proxy terminated TLS");
    let values = crate::helpers::fixture_text("wattsense/values.json");
    let res = app.client.post(app.url("/wattsense/values")).body(values).send().await.unwrap();
    assert_ne!(res.status(), 403, "scheme = \"any\" in [protocols.wattsense] overrides the spec");
}

#[test]
fn contradictory_or_incomplete_tls_settings_are_refused_with_key_and_line() {
    let cases = [
        (
            "[tls]\nlisten = \"127.0.0.1:8443\"\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nacme_domains = [\"a.example.org\"]\n",
            "hookyard.toml line 5: [tls] acme_domains: set either cert_file/key_file or acme_domains, not both",
        ),
        (
            "[tls]\nlisten = \"127.0.0.1:8443\"\ncert_file = \"c.pem\"\n",
            "hookyard.toml line 3: [tls] cert_file: cert_file is set but key_file is missing",
        ),
        (
            "[tls]\nlisten = \"127.0.0.1:8443\"\n",
            "hookyard.toml line 1: [tls]: needs cert_file and key_file, or acme_domains",
        ),
        (
            "[tls]\nacme_domains = [\"a.example.org\"]\n",
            "hookyard.toml line 1: [tls]: listen is missing (the HTTPS address, e.g. \"0.0.0.0:443\")",
        ),
        (
            "[tls]\nlisten = \"127.0.0.1:8443\"\nacme_domains = [\"a.example.org\"]\nacme_contact = [\"me@example.org\"]\n",
            "hookyard.toml line 4: [tls] acme_contact: \"me@example.org\" must be a mailto: address",
        ),
        (
            "[server]\ntrusted_proxies = [\"proxy.local\"]\n",
            "hookyard.toml line 2: [server] trusted_proxies: \"proxy.local\" is not an address or a range like 10.0.0.0/8",
        ),
        (
            "[protocols.gridx]\nscheme = \"http\"\n",
            "hookyard.toml line 2: [protocols.gridx] scheme: must be \"https\" or \"any\"",
        ),
    ];
    for (config, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hookyard.toml"), config).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
            .arg("check")
            .current_dir(dir.path())
            .env("HOOKYARD_LISTEN", "127.0.0.1:0")
            .env_remove("HOOKYARD_DATA_DIR")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{config}");
        assert!(text.contains(expected), "{config}\nexpected {expected}\ngot {text}");
    }
}

fn acme_config(port: u16, pebble: &pebble::Pebble, extra: &str) -> String {
    format!(
        "[tls]\nlisten = \"127.0.0.1:{port}\"\nacme_domains = [\"{DOMAIN}\"]\nacme_contact = [\"mailto:ops@{DOMAIN}\"]\n\
         acme_directory = \"{}\"\nacme_ca_root = \"{}\"\n[admin]\ntoken = \"adm1n\"\n{extra}",
        pebble.directory,
        pebble.directory_root.display()
    )
}

/// Waits up to `secs` for a certificate that `client` accepts; its DER.
async fn wait_for_leaf(root: &[u8], port: u16, secs: u64, pebble: &pebble::Pebble) -> Vec<u8> {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        match served_leaf(root, port).await {
            Ok(leaf) => return leaf,
            Err(e) if Instant::now() > until => panic!("no certificate within {secs} s: {e}\n{}", pebble.log()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn metrics(plain: std::net::SocketAddr) -> String {
    let client = reqwest::Client::new();
    let res = client.get(format!("http://{plain}/metrics")).bearer_auth("adm1n").send().await.unwrap();
    res.text().await.unwrap()
}

fn expiry_metric(text: &str) -> f64 {
    let line = text.lines().find(|l| l.starts_with("hookyard_tls_certificate_expiry_timestamp_seconds "));
    line.and_then(|l| l.split(' ').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no expiry metric in {text}"))
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn acme_issues_over_http01_and_a_restart_without_the_ca_serves_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut pebble = pebble::Pebble::start(&dir.path().join("pebble"), listener.local_addr().unwrap().port(), None);
    let (port, data) = (free_port(), dir.path().join("data"));
    let config = acme_config(port, &pebble, "");
    let server = pki::Booted::start(&config, listener, &data).await;
    let root = pebble.issuing_root().await;
    let leaf = wait_for_leaf(&root, port, 30, &pebble).await;
    let health = server.health().await;
    assert_eq!(health["status"], "ok", "{health}");
    assert!(health["tls"].as_str().unwrap().starts_with(&format!("serving a certificate for {DOMAIN} until")));
    assert!(expiry_metric(&metrics(server.plain).await) > 1.0e9, "the expiry is exported");
    #[cfg(unix)]
    {
        assert_eq!(mode(&data.join("acme")), 0o700);
        for file in ["account.json", "certificate.pem", "certificate.key"] {
            assert_eq!(mode(&data.join("acme").join(file)), 0o600, "{file}");
        }
    }
    server.stop().await;

    pebble.stop();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = pki::Booted::start(&config, listener, &data).await;
    assert_eq!(served_leaf(&root, port).await.expect("the cached certificate"), leaf, "the same certificate");
    let health = server.health().await;
    assert_eq!(health["status"], "ok", "nothing to order yet: {health}");
    server.stop().await;
}

#[tokio::test]
async fn acme_renews_short_lived_certificates_when_a_third_of_their_life_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pebble = pebble::Pebble::start(&dir.path().join("pebble"), listener.local_addr().unwrap().port(), Some(9));
    let port = free_port();
    let server = pki::Booted::start(&acme_config(port, &pebble, ""), listener, &dir.path().join("data")).await;
    let root = pebble.issuing_root().await;
    let first = wait_for_leaf(&root, port, 30, &pebble).await;
    let issued = Instant::now();
    let renewed = eventually(25, async || served_leaf(&root, port).await.is_ok_and(|leaf| leaf != first)).await;
    assert!(renewed, "a new certificate is served before the first expires\n{}", pebble.log());
    assert!(issued.elapsed() >= Duration::from_secs(4), "not renewed before two thirds of its life");
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_acme_directory_leaves_the_certificate_pending_and_plain_http_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (port, closed) = (free_port(), free_port());
    let config = format!(
        "[tls]\nlisten = \"127.0.0.1:{port}\"\nacme_domains = [\"{DOMAIN}\"]\n\
         acme_directory = \"https://127.0.0.1:{closed}/dir\"\n[admin]\ntoken = \"adm1n\"\n"
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = pki::Booted::start(&config, listener, &dir.path().join("data")).await;
    let health = server.health().await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["tls"], "certificate pending", "{health}");
    let problems = health["problems"].to_string();
    assert!(problems.contains("tls: certificate pending"), "{health}");
    assert_eq!(expiry_metric(&metrics(server.plain).await), 0.0, "no certificate expiry while pending");
    let failed = eventually(10, async || server.health().await["problems"].to_string().contains("acme:")).await;
    assert!(failed, "the failed order's reason is in /healthz: {}", server.health().await);
    server.stop().await;
}

/// A TLS connection to the server, handshake done, trusting only `ca`.
async fn tls_connect(ca: &[u8], port: u16) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(ca).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(hookyard::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(tls_addr(port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(DOMAIN).unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn over_tls_the_head_deadline_starts_after_the_handshake_and_still_holds() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let ca = std::fs::read(make_ca(dir.path(), "ca")).unwrap();
    let (cert, key) = make_leaf(dir.path(), "ca", "leaf", &format!("DNS:{DOMAIN}"));
    let port = free_port();
    let limits = "handshake_timeout_ms = 300\n[server]\nheader_timeout_ms = 1500\nidle_timeout_ms = 30000\n";
    let _app = spawn_app(&tls_files_config(port, &cert, &key, limits)).await;

    // A head sent slowly for longer than the handshake deadline, within the head deadline.
    let mut tls = tls_connect(&ca, port).await;
    for part in ["GET /healthz HTTP/1.1\r\n", "Host: hooks.test\r\n", "Connection: close\r\n", "\r\n"] {
        tokio::time::sleep(Duration::from_millis(250)).await;
        tls.write_all(part.as_bytes()).await.unwrap();
    }
    let mut reply = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_string(&mut reply)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "a finished handshake is not cut later: {reply:?}");

    // A head that stalls is cut by header_timeout_ms, as on the plain listener.
    let mut tls = tls_connect(&ca, port).await;
    let started = Instant::now();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: hooks.test\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the stalled head is cut");
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"), "{buf:?}");
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(1200) && after < Duration::from_secs(8),
        "cut by the head deadline: {after:?}"
    );
}
