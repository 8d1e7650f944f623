//! Data-source egress refuses every special-purpose destination before connecting.
//!
//! A listener on loopback counts connections; every URL below points at its port in one
//! disguise or another (address literals in the forms URL parsers accept, names that resolve
//! to loopback or private addresses, plain http). Each must be refused, and the listener must
//! never see a connection.

use plumbline_github::egress::{Egress, EgressPolicy, LookupFuture, NameLookup};
use plumbline_github::Method;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Names the test controls; anything else goes to the system resolver (`localhost`).
struct Names {
    map: HashMap<&'static str, Vec<IpAddr>>,
    asked: Mutex<Vec<String>>,
}

impl NameLookup for Names {
    fn lookup(&self, host: String) -> LookupFuture {
        if let Ok(mut a) = self.asked.lock() {
            a.push(host.clone());
        }
        match self.map.get(host.as_str()) {
            Some(ips) => {
                let ips = ips.clone();
                Box::pin(async move { Ok(ips) })
            }
            None => Box::pin(async move {
                Ok(tokio::net::lookup_host((host.as_str(), 0))
                    .await?
                    .map(|a| a.ip())
                    .collect())
            }),
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[tokio::test]
async fn ssrf_urls_are_refused_before_any_connection() {
    // Something to connect to, on both loopback families, that counts attempts.
    let accepted = Arc::new(AtomicUsize::new(0));
    let v4 = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind v4");
    let port = v4.local_addr().expect("addr").port();
    let v6 = tokio::net::TcpListener::bind(("::1", port)).await.ok();
    for l in std::iter::once(v4).chain(v6) {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            while l.accept().await.is_ok() {
                accepted.fetch_add(1, Ordering::SeqCst);
            }
        });
    }

    let names = Arc::new(Names {
        map: HashMap::from([
            ("loopback.example", vec![ip("127.0.0.1")]),
            ("loopback6.example", vec![ip("::1")]),
            ("private.example", vec![ip("10.0.0.7")]),
            ("metadata.example", vec![ip("169.254.169.254")]),
            ("cgnat.example", vec![ip("100.64.0.1")]),
            ("nat64.example", vec![ip("64:ff9b::7f00:1")]),
            ("mapped.example", vec![ip("::ffff:127.0.0.1")]),
            // One public and one loopback address: the name is refused whole.
            ("mixed.example", vec![ip("140.82.112.3"), ip("127.0.0.1")]),
            ("ula.example", vec![ip("fd12:3456::1")]),
        ]),
        asked: Mutex::new(Vec::new()),
    });
    let egress = Egress::with_lookup(
        EgressPolicy {
            // Plain http is allowed to these names only, so the address check is what refuses them.
            http_allowed_hosts: [
                "localhost",
                "loopback.example",
                "private.example",
                "metadata.example",
                "mixed.example",
            ]
            .map(String::from)
            .to_vec(),
            ..EgressPolicy::default()
        },
        names.clone(),
    )
    .expect("egress client");

    let p = port;
    let cases: Vec<(String, &str)> = vec![
        (format!("https://127.0.0.1:{p}/"), "address"),
        (format!("https://2130706433:{p}/"), "address"), // decimal
        (format!("https://0x7f000001:{p}/"), "address"), // hexadecimal
        (format!("https://0177.0.0.1:{p}/"), "address"), // octal
        (format!("https://127.1:{p}/"), "address"),      // short form
        (format!("https://0:{p}/"), "address"),          // 0.0.0.0
        (format!("https://[::1]:{p}/"), "address"),
        (format!("https://[::ffff:127.0.0.1]:{p}/"), "address"), // v4-mapped
        (format!("https://[::ffff:7f00:1]:{p}/"), "address"),
        (format!("https://[64:ff9b::7f00:1]:{p}/"), "address"), // NAT64
        (format!("https://[2002:7f00:1::]:{p}/"), "address"),   // 6to4
        (format!("https://[fe80::1]:{p}/"), "address"),         // link-local v6
        (
            "https://169.254.169.254/latest/meta-data/".to_string(),
            "address",
        ),
        (
            "https://2852039166/latest/meta-data/".to_string(),
            "address",
        ), // 169.254.169.254 in decimal
        ("https://100.64.0.1/".to_string(), "address"), // shared address space
        ("https://10.0.0.1/".to_string(), "address"),
        ("https://192.168.0.1/".to_string(), "address"),
        (format!("http://localhost:{p}/"), "resolves"),
        (format!("https://localhost.:{p}/"), "resolves"),
        (format!("http://loopback.example:{p}/"), "resolves"),
        (format!("https://loopback6.example:{p}/"), "resolves"),
        (format!("http://private.example:{p}/"), "resolves"),
        (format!("http://metadata.example:{p}/"), "resolves"),
        (format!("https://cgnat.example:{p}/"), "resolves"),
        (format!("https://nat64.example:{p}/"), "resolves"),
        (format!("https://mapped.example:{p}/"), "resolves"),
        (format!("http://mixed.example:{p}/"), "resolves"),
        (format!("https://ula.example:{p}/"), "resolves"),
        (format!("http://example.com:{p}/"), "https only"), // plain http, not allowlisted
        (format!("ftp://example.com:{p}/"), "scheme"),
        (
            format!("https://user:secret@example.com:{p}/"),
            "credentials",
        ),
    ];
    assert!(cases.len() >= 20);
    for (url, why) in &cases {
        for method in [Method::GET, Method::POST] {
            match egress
                .send(method.clone(), url, &[], Some(b"{}".to_vec()))
                .await
            {
                Ok(r) => panic!("{method} {url} was sent (status {})", r.status),
                Err(e) => {
                    assert!(e.is_refusal(), "{method} {url}: not a refusal: {e}");
                    assert!(
                        e.to_string().contains(why),
                        "{method} {url}: {e} (expected the reason to mention {why:?})"
                    );
                }
            }
        }
    }
    // Give a stray connection time to be counted.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a refused URL reached the listener"
    );
    let asked = names.asked.lock().map(|a| a.clone()).unwrap_or_default();
    assert!(
        asked.iter().any(|h| h == "mixed.example"),
        "names are resolved by the guarded resolver: {asked:?}"
    );
    assert!(
        !asked.iter().any(|h| h == "example.com"),
        "nothing is resolved for a URL refused by its form: {asked:?}"
    );

    // A rule type cannot smuggle credentials through egress either.
    let e = egress
        .send(
            Method::GET,
            "https://api.osv.dev/v1/query",
            &[("Authorization".into(), "Bearer x".into())],
            None,
        )
        .await
        .expect_err("authorization header");
    assert!(e.is_refusal(), "{e}");
}
