//! An HTTP proxy for benchmarks against an S3 server: adds latency per
//! request (a WAN link) and counts requests and bytes.
//!
//! ```sh
//! cargo run --release --example s3_proxy -- --upstream 127.0.0.1:7480 --listen 127.0.0.1:7481 --latency-ms 20
//! curl -s http://127.0.0.1:7481/__proxy/stats   # requests=.. get=.. put=.. list=.. up=.. down=..
//! curl -s http://127.0.0.1:7481/__proxy/reset   # counters to zero
//! ```
//!
//! The proxy itself lives in `tests/support/http_proxy.rs`, shared with the
//! S3 tests (which also use its fault injection).

#[path = "../tests/support/http_proxy.rs"]
mod http_proxy;

fn main() {
    let mut upstream = None;
    let mut listen = "127.0.0.1:0".to_string();
    let mut latency = 0u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--upstream" => upstream = Some(value()),
            "--listen" => listen = value(),
            "--latency-ms" => {
                latency = value()
                    .parse()
                    .unwrap_or_else(|_| usage("bad --latency-ms"))
            }
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    let upstream = upstream.unwrap_or_else(|| usage("--upstream HOST:PORT is required"));
    let proxy = http_proxy::Proxy::start(&upstream, &listen).unwrap_or_else(|e| {
        eprintln!("s3_proxy: {listen}: {e}");
        std::process::exit(1)
    });
    proxy
        .state
        .latency_ms
        .store(latency, std::sync::atomic::Ordering::Relaxed);
    println!("{}", proxy.endpoint());
    loop {
        std::thread::park();
    }
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "s3_proxy: {msg}\nusage: s3_proxy --upstream HOST:PORT [--listen ADDR] [--latency-ms N]"
    );
    std::process::exit(2)
}
