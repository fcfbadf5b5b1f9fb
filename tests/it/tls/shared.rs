//! Two instances on one PostgreSQL journal and one ACME account's CA: one orders (the CA
//! validates HTTP-01 on the other instance's plain port, which answers from PostgreSQL), and
//! both serve that one certificate. The domain is unique per run, so its row and its
//! advisory lock are this test's alone on the shared test database.

use std::time::{Duration, Instant};

use super::pebble::Pebble;
use super::pki::{Booted, free_port, served_leaf_of};
use crate::outputs::postgres_url;

#[tokio::test]
async fn instances_sharing_a_journal_order_one_certificate_and_both_serve_it() {
    let dir = tempfile::tempdir().unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let domain = format!("run{}-{nanos}.hooks.test", std::process::id());
    let (a, b) =
        (std::net::TcpListener::bind("127.0.0.1:0").unwrap(), std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    // The CA reaches only instance a; whichever instance orders, a must answer.
    let pebble = Pebble::start(&dir.path().join("pebble"), a.local_addr().unwrap().port(), None);
    let config = |port: u16, instance: &str| {
        format!(
            "[tls]\nlisten = \"127.0.0.1:{port}\"\nacme_domains = [\"{domain}\"]\nacme_directory = \"{}\"\n\
             acme_ca_root = \"{}\"\n[journal]\npostgres_url = \"{}\"\ninstance = \"{instance}-{nanos}\"\n",
            pebble.directory,
            pebble.directory_root.display(),
            postgres_url()
        )
    };
    let (port_a, port_b) = (free_port(), free_port());
    let (config_a, config_b) = (config(port_a, "tls-a"), config(port_b, "tls-b"));
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let (server_a, server_b) = tokio::join!(Booted::start(&config_a, a, &data_a), Booted::start(&config_b, b, &data_b));
    let root = pebble.issuing_root().await;
    let until = Instant::now() + Duration::from_secs(40);
    let (leaf_a, leaf_b) = loop {
        let (la, lb) = (served_leaf_of(&root, port_a, &domain).await, served_leaf_of(&root, port_b, &domain).await);
        if let (Ok(la), Ok(lb)) = (&la, &lb) {
            break (la.clone(), lb.clone());
        }
        assert!(Instant::now() < until, "both instances serve within 40 s: {la:?} {lb:?}\n{}", pebble.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(leaf_a, leaf_b, "both serve the one certificate ordered");
    let issued = pebble.log().matches("Issued certificate serial").count();
    assert_eq!(issued, 1, "one order for both instances\n{}", pebble.log());
    server_a.stop().await;
    server_b.stop().await;
}
