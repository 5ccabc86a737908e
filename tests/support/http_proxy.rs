//! A small HTTP/1.1 proxy between cairn and an S3 server that counts
//! requests and bytes, adds latency (a WAN link), and injects faults: 503
//! answers, connections dropped mid-request, and outages. Used by the S3
//! tests and, through `examples/s3_proxy.rs`, by `benches/compare.sh`.
//!
//! It understands just enough HTTP to find request and response boundaries
//! on keep-alive connections (Content-Length, chunked bodies, HEAD).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// What the proxy does and counts; shared with the test that runs it.
#[derive(Default)]
pub struct ProxyState {
    /// Requests forwarded or answered, by kind.
    pub gets: AtomicU64,
    pub heads: AtomicU64,
    pub puts: AtomicU64,
    pub lists: AtomicU64,
    pub deletes: AtomicU64,
    pub others: AtomicU64,
    /// Body bytes sent to the server (uploads) and received (downloads).
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    /// Added before each request is forwarded, in milliseconds.
    pub latency_ms: AtomicU64,
    /// Answer every n-th request with 503 (0: never).
    pub fail_every: AtomicU64,
    /// Drop the connection on every n-th request, before answering (0: never).
    pub drop_every: AtomicU64,
    /// While set, every request gets its connection dropped (an outage).
    pub down: AtomicBool,
    /// Faults injected so far.
    pub faults: AtomicU64,
    seen: AtomicU64,
}

impl ProxyState {
    /// Requests of every kind.
    pub fn requests(&self) -> u64 {
        [
            &self.gets,
            &self.heads,
            &self.puts,
            &self.lists,
            &self.deletes,
            &self.others,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    /// Sets every counter to zero.
    pub fn reset_counts(&self) {
        for c in [
            &self.gets,
            &self.heads,
            &self.puts,
            &self.lists,
            &self.deletes,
            &self.others,
            &self.bytes_up,
            &self.bytes_down,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// One line: `requests=N get=N head=N put=N list=N delete=N up=B down=B`.
    pub fn summary(&self) -> String {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "requests={} get={} head={} put={} list={} delete={} other={} up={} down={}",
            self.requests(),
            l(&self.gets),
            l(&self.heads),
            l(&self.puts),
            l(&self.lists),
            l(&self.deletes),
            l(&self.others),
            l(&self.bytes_up),
            l(&self.bytes_down)
        )
    }
}

/// A running proxy.
pub struct Proxy {
    /// `127.0.0.1:PORT` it listens on.
    pub addr: std::net::SocketAddr,
    /// Its counters and switches.
    pub state: Arc<ProxyState>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (`HOST:PORT`) on `listen` (`127.0.0.1:0`
    /// for any free port), in background threads that live as long as the
    /// process.
    pub fn start(upstream: &str, listen: &str) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ProxyState::default());
        let st = state.clone();
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let (st, up) = (st.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, &up, &st);
                });
            }
        });
        Ok(Proxy { addr, state })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A request or response head: the lines, and the body framing.
struct Head {
    raw: Vec<u8>,
    first: String,
    content_length: Option<u64>,
    chunked: bool,
}

fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut raw = Vec::new();
    let mut first = String::new();
    let (mut content_length, mut chunked) = (None, false);
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        raw.extend_from_slice(&line);
        if raw.len() > 1 << 20 {
            return Err(std::io::Error::other("head too long"));
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text.is_empty() {
            if first.is_empty() {
                continue;
            }
            break;
        }
        if first.is_empty() {
            first = text;
            continue;
        }
        if let Some((k, v)) = text.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim();
            if k == "content-length" {
                content_length = v.parse().ok();
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    Ok(Some(Head {
        raw,
        first,
        content_length,
        chunked,
    }))
}

/// Copies a body framed by `head` from `r` to `w`; returns its bytes.
fn relay_body(
    head: &Head,
    r: &mut impl BufRead,
    w: &mut impl Write,
    until_close: bool,
) -> std::io::Result<u64> {
    if head.chunked {
        let mut total = 0;
        loop {
            let mut line = Vec::new();
            r.read_until(b'\n', &mut line)?;
            w.write_all(&line)?;
            let size = u64::from_str_radix(
                String::from_utf8_lossy(&line)
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or("0"),
                16,
            )
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
            total += std::io::copy(&mut r.take(size + 2), w)?;
            if size == 0 {
                // Trailers (none expected) end with an empty line, which
                // the `+ 2` above already copied.
                return Ok(total);
            }
        }
    }
    match head.content_length {
        Some(n) => std::io::copy(&mut r.take(n), w),
        None if until_close => std::io::copy(r, w),
        None => Ok(0),
    }
}

fn serve(client: TcpStream, upstream: &str, st: &ProxyState) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let server = TcpStream::connect(upstream)?;
    server.set_nodelay(true)?;
    let mut from_server = BufReader::new(server.try_clone()?);
    let mut to_server = server;
    while let Some(req) = read_head(&mut from_client)? {
        let method = req.first.split(' ').next().unwrap_or("").to_string();
        let target = req.first.split(' ').nth(1).unwrap_or("");
        // The proxy's own control requests (for scripts): counters, reset,
        // latency.
        if let Some(cmd) = target.strip_prefix("/__proxy/") {
            relay_body(&req, &mut from_client, &mut std::io::sink(), false)?;
            let body = match cmd.split_once('=') {
                Some(("latency", ms)) => {
                    st.latency_ms
                        .store(ms.parse().unwrap_or(0), Ordering::Relaxed);
                    "ok\n".to_string()
                }
                _ if cmd == "reset" => {
                    st.reset_counts();
                    "ok\n".to_string()
                }
                _ => format!("{}\n", st.summary()),
            };
            write!(
                to_client,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            continue;
        }
        match method.as_str() {
            "GET" if target.contains("list-type") => &st.lists,
            "GET" => &st.gets,
            "HEAD" => &st.heads,
            "PUT" => &st.puts,
            "DELETE" => &st.deletes,
            _ => &st.others,
        }
        .fetch_add(1, Ordering::Relaxed);
        let n = st.seen.fetch_add(1, Ordering::Relaxed) + 1;
        let every = |c: &AtomicU64| {
            let k = c.load(Ordering::Relaxed);
            k > 0 && n.is_multiple_of(k)
        };
        let started = std::time::Instant::now();
        let latency = st.latency_ms.load(Ordering::Relaxed);
        if latency > 0 {
            std::thread::sleep(Duration::from_millis(latency));
        }
        if st.down.load(Ordering::Relaxed) || every(&st.drop_every) {
            st.faults.fetch_add(1, Ordering::Relaxed);
            let _ = to_client.shutdown(Shutdown::Both);
            return Ok(());
        }
        if every(&st.fail_every) {
            st.faults.fetch_add(1, Ordering::Relaxed);
            // Swallow the request body, then answer 503.
            relay_body(&req, &mut from_client, &mut std::io::sink(), false)?;
            let body =
                "<Error><Code>SlowDown</Code><Message>injected by the test proxy</Message></Error>";
            write!(
                to_client,
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            continue;
        }
        to_server.write_all(&req.raw)?;
        let up = relay_body(&req, &mut from_client, &mut to_server, false)?;
        st.bytes_up.fetch_add(up, Ordering::Relaxed);
        let Some(resp) = read_head(&mut from_server)? else {
            return Ok(());
        };
        to_client.write_all(&resp.raw)?;
        let status: u16 = resp
            .first
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let no_body = method == "HEAD" || status == 204 || status == 304 || status < 200;
        let mut down = 0;
        if !no_body {
            down = relay_body(&resp, &mut from_server, &mut to_client, true)?;
            st.bytes_down.fetch_add(down, Ordering::Relaxed);
        }
        to_client.flush()?;
        if std::env::var_os("S3_PROXY_LOG").is_some() {
            // One line per request, for a timeline of a benchmark step.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            eprintln!(
                "{:.3} {:>5} ms {status} {method} {target} up={up} down={down}",
                now.as_secs_f64(),
                started.elapsed().as_millis()
            );
        }
    }
    Ok(())
}
