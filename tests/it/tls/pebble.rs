//! Pebble, the ACME test CA, started by a test on loopback: its directory over HTTPS with a
//! certificate made here, HTTP-01 validation against the test server's plain port, and
//! `pebble-challtestsrv` answering every DNS name with 127.0.0.1. Killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::pki::{free_port, make_ca, make_leaf};

pub struct Pebble {
    children: Vec<Child>,
    /// `https://127.0.0.1:<port>/dir`.
    pub directory: String,
    /// The root that `directory`'s own certificate chains to (for `acme_ca_root`).
    pub directory_root: PathBuf,
    management: u16,
    log: PathBuf,
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, what: &str) {
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Pebble {
    /// Starts Pebble in `dir`, validating HTTP-01 on `http_port`; certificates live
    /// `validity_s` seconds (Pebble's default when `None`).
    pub fn start(dir: &Path, http_port: u16, validity_s: Option<u64>) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let directory_root = make_ca(dir, "pebble-dir-ca");
        let (cert, key) = make_leaf(dir, "pebble-dir-ca", "pebble-dir", "DNS:localhost,IP:127.0.0.1");
        let (listen, management, dns, dns_management) = (free_port(), free_port(), free_udp_port(), free_port());
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(seconds) = validity_s {
            pebble["certificateValidityPeriod"] = seconds.into();
        }
        let config = dir.join("pebble-config.json");
        std::fs::write(&config, serde_json::json!({ "pebble": pebble }).to_string()).unwrap();
        let log = dir.join("pebble.log");
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns}"), "-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv runs (tools/services.sh installs pebble)");
        let pebble = Command::new("pebble")
            .args(["-config", &config.display().to_string(), "-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble runs (tools/services.sh installs pebble)");
        let started = Self {
            children: vec![challtestsrv, pebble],
            directory: format!("https://127.0.0.1:{listen}/dir"),
            directory_root,
            management,
            log,
        };
        wait_for_port(dns_management, "pebble-challtestsrv");
        wait_for_port(listen, "pebble");
        wait_for_port(management, "pebble's management interface");
        started
    }

    /// The root Pebble issues under (random per run), from its management interface.
    pub async fn issuing_root(&self) -> Vec<u8> {
        let root = reqwest::Certificate::from_pem(&std::fs::read(&self.directory_root).unwrap()).unwrap();
        let client = reqwest::Client::builder().tls_certs_only([root]).build().unwrap();
        let res = client.get(format!("https://127.0.0.1:{}/roots/0", self.management)).send().await.unwrap();
        assert_eq!(res.status(), 200, "pebble's root");
        res.bytes().await.unwrap().to_vec()
    }

    /// What Pebble logged (for a failing assertion's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops Pebble (the CA is unreachable from then on).
    pub fn stop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}
