//! The `plumbline-ingest` binary: starts from flags, serves health, stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test]
async fn sigterm_stops_the_service_gracefully() {
    let (port, admin) = (free_port(), free_port());
    let brokers = plumbline_bus::testing::kafka();
    // Ready only once the broker answers for its topic, so the topic must exist.
    let (prefix, _topics) = plumbline_bus::testing::topics(1).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_plumbline-ingest"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--health-listen",
            &format!("127.0.0.1:{admin}"),
            "--kafka-brokers",
            &brokers,
            "--topic-prefix",
            &prefix,
            "--webhook-secret",
            "s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    let mut ready = false;
    while started.elapsed() < Duration::from_secs(20) {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", admin)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut resp = String::new();
            let _ = s.read_to_string(&mut resp);
            if resp.starts_with("HTTP/1.1 200") {
                ready = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ready, "ingest became ready (admin port {admin})");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            assert!(exit.success(), "clean exit after SIGTERM, got {exit}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ingest did not stop within 15 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn missing_secret_is_a_clear_startup_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_plumbline-ingest"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--webhook-secret"), "{err}");
}
