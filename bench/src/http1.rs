//! A lean HTTP/1.1 load-generator client: keep-alive connections, one request at a time each,
//! requests written with one syscall, responses read by `Content-Length`.
//!
//! Why not reqwest: the generator shares the machine's two cores with the service it measures,
//! so whatever it spends is taken from the service. A general client (URL parsing, header maps,
//! connection pool, body streams) cost about a quarter of the benchmark process's CPU in a
//! profile of `ingest_throughput`; this one does only what a webhook sender needs, as wrk does.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head accepted (status line and headers).
const MAX_HEAD: usize = 64 * 1024;

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    buf: Vec<u8>,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            out: Vec::with_capacity(16 * 1024),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `POST path` with `headers` (name, value) and `body`; returns the status once the
    /// whole response has been read. Any error leaves the connection unusable.
    pub async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<u16> {
        self.out.clear();
        self.out.extend_from_slice(b"POST ");
        self.out.extend_from_slice(path.as_bytes());
        self.out
            .extend_from_slice(b" HTTP/1.1\r\nhost: bench\r\ncontent-length: ");
        self.out
            .extend_from_slice(body.len().to_string().as_bytes());
        self.out.extend_from_slice(b"\r\n");
        for (name, value) in headers {
            self.out.extend_from_slice(name.as_bytes());
            self.out.extend_from_slice(b": ");
            self.out.extend_from_slice(value.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
        self.stream.write_all(&self.out).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> io::Result<u16> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("response head too large"));
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| invalid("response head is not utf-8"))?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| invalid("no status line"))?;
        let length = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .ok_or_else(|| invalid("response without content-length"))?;
        while self.buf.len() < head_end + length {
            self.fill().await?;
        }
        self.buf.drain(..head_end + length);
        Ok(status)
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// Idle connections to one address, for open-loop load: a request takes an idle connection or
/// opens one, and gives it back after a complete response.
pub struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    pub fn new(addr: SocketAddr) -> Self {
        Pool {
            addr,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The response status, or 0 for a transport error (the connection is then dropped).
    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut conn = match idle {
            Some(c) => c,
            None => match Conn::connect(self.addr).await {
                Ok(c) => c,
                Err(_) => return 0,
            },
        };
        match conn.post(path, headers, body).await {
            Ok(status) => {
                if let Ok(mut v) = self.idle.lock() {
                    v.push(conn);
                }
                status
            }
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn reads_responses_back_to_back_on_one_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            // Two requests of 5-byte bodies; answer both, the second in two pieces.
            let mut answered = 0;
            while answered < 2 {
                let n = s.read(&mut chunk).await.expect("read");
                assert!(n > 0, "client closed early");
                seen.extend_from_slice(&chunk[..n]);
                let bodies = seen.windows(5).filter(|w| w == b"hello").count();
                if bodies == 1 && answered == 0 {
                    s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .expect("write");
                    answered = 1;
                } else if bodies == 2 {
                    answered = 2;
                }
            }
            s.write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 3\r\n")
                .await
                .expect("write");
            s.write_all(b"\r\nbad").await.expect("write");
            String::from_utf8_lossy(&seen).to_string()
        });
        let mut c = Conn::connect(addr).await.expect("connect");
        assert_eq!(
            c.post("/p", &[("x-a", "1")], b"hello")
                .await
                .expect("first"),
            202
        );
        assert_eq!(c.post("/p", &[], b"hello").await.expect("second"), 401);
        let seen = server.await.expect("server");
        assert!(
            seen.starts_with(
                "POST /p HTTP/1.1\r\nhost: bench\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello"
            ),
            "{seen}"
        );
    }
}
