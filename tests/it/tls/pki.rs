//! Test certificates made with `openssl`, clients that trust only a given root, and servers
//! booted on listeners the test bound itself (so a CA can be pointed at the plain port first).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hookyard::{App, Config};
use tokio::sync::oneshot;

use crate::helpers::REPO;

/// The test domain every certificate names; clients resolve it to the server.
pub const DOMAIN: &str = "hooks.test";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A self-signed CA `<name>.pem` / `<name>.key` in `dir`.
pub fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
    let subject = format!("/CN={name}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    dir.join(pem)
}

/// A leaf `<name>.pem` / `<name>.key` for `sans` (e.g. `DNS:hooks.test,IP:127.0.0.1`),
/// signed by the CA `ca` (as made by [`make_ca`]).
pub fn make_leaf(dir: &Path, ca: &str, name: &str, sans: &str) -> (PathBuf, PathBuf) {
    let (pem, key, csr, ext) =
        (format!("{name}.pem"), format!("{name}.key"), format!("{name}.csr"), format!("{name}.ext"));
    std::fs::write(dir.join(&ext), format!("subjectAltName={sans}\n")).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=leaf",
        ],
    );
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "1",
            "-extfile",
            &ext,
        ],
    );
    (dir.join(pem), dir.join(key))
}

/// A client that trusts only `root_pem`, reaches [`DOMAIN`] at `addr`, and keeps the peer
/// certificate of each response.
pub fn client_trusting(root_pem: &[u8], addr: SocketAddr) -> reqwest::Client {
    client_for(root_pem, addr, DOMAIN)
}

fn client_for(root_pem: &[u8], addr: SocketAddr, domain: &str) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(root_pem).expect("root parses");
    reqwest::Client::builder()
        .tls_certs_only([root])
        .tls_info(true)
        .resolve(domain, addr)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// GET `https://hooks.test:<port>/healthz` as a new client trusting only `root_pem` (a
/// client of its own: a resumed TLS session would not show a new certificate): the served
/// leaf (DER), or the error.
pub async fn served_leaf(root_pem: &[u8], port: u16) -> Result<Vec<u8>, String> {
    served_leaf_of(root_pem, port, DOMAIN).await
}

/// [`served_leaf`] for `domain`.
pub async fn served_leaf_of(root_pem: &[u8], port: u16, domain: &str) -> Result<Vec<u8>, String> {
    let client = client_for(root_pem, std::net::SocketAddr::from(([127, 0, 0, 1], port)), domain);
    let res = client.get(format!("https://{domain}:{port}/healthz")).send().await.map_err(|e| format!("{e:?}"))?;
    assert_eq!(res.status(), 200);
    let info = res.extensions().get::<reqwest::tls::TlsInfo>().expect("tls info kept");
    Ok(info.peer_certificate().expect("a peer certificate").to_vec())
}

/// A free loopback TCP port (bound and let go).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server booted from `config` on `listener` with its data in `data`; stops when dropped.
pub struct Booted {
    pub plain: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Booted {
    pub async fn start(config: &str, listener: std::net::TcpListener, data: &Path) -> Self {
        let mut config = Config::from_toml(config, |_| None).expect("test config");
        config.data_dir = data.to_owned();
        config.spec_dir = Some(Path::new(REPO).join("spec"));
        config.scripts_dir = Some(Path::new(REPO).join("scripts"));
        config.reload_interval = Duration::from_millis(100);
        let app = App::build(config).unwrap_or_else(|e| panic!("app does not build: {e:#?}"));
        let plain = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            hookyard::run(listener, app, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        let booted = Self { plain, stop: Some(tx), done: Some(done) };
        let client = reqwest::Client::new();
        let up =
            crate::helpers::eventually(10, async || client.get(format!("http://{plain}/healthz")).send().await.is_ok())
                .await;
        assert!(up, "server did not come up");
        booted
    }

    /// Stops the server and waits until it has let go of its ports and data.
    pub async fn stop(mut self) {
        drop(self.stop.take());
        if let Some(done) = self.done.take() {
            tokio::time::timeout(Duration::from_secs(15), done).await.expect("server stops").expect("server task");
        }
    }

    pub async fn health(&self) -> serde_json::Value {
        let res = reqwest::get(format!("http://{}/healthz", self.plain)).await.unwrap();
        res.json().await.unwrap()
    }
}
