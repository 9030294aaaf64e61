//! Chopin's server over real sockets, with short timeouts set through the settings: slowloris,
//! idle keep-alive, never-sending connections, oversized heads, the connection cap, the write
//! timeout, graceful shutdown under load, per-core workers, HTTP/2 (prior knowledge) and its
//! stream limit, and `ConnectInfo`. Every test is bounded in time.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use bytes::Bytes;
use chopin_core::Config;
use chopin_core::prelude::*;
use chopin_core::server::{Server, Worker};
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Upper bound of every test.
const LIMIT: Duration = Duration::from_secs(20);

fn config(vars: &[(&str, &str)]) -> Config {
    let mut map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.entry("CHOPIN_ENV".into()).or_insert("test".into());
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), chopin_core::ServeError>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        timeout(LIMIT, self.handle)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server result");
    }
}

fn routes() -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/ip",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        )
        .route("/big", get(|| async { Bytes::from(vec![b'x'; BIG_BODY]) }))
}

const BIG_BODY: usize = 64 * 1024 * 1024;

async fn start(vars: &[(&str, &str)], router: Router) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_config(&config(vars));
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        server
            .serve(listener, router, async {
                let _ = stopped.await;
            })
            .await
    });
    Running { addr, stop, handle }
}

/// Read until the peer closes (EOF or reset); what was read.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Send one HTTP/1.1 request and read one response with a `Content-Length` body.
async fn request(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before the response");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    timeout(LIMIT, f).await.expect("test finished in time")
}

/// Send one more header line every 100 ms, never finishing the head, until the server closes
/// the connection (within 3 s); how long that took.
async fn trickle_until_cut(stream: &mut TcpStream) -> Duration {
    let began = Instant::now();
    let trickle = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if stream
                .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            // A 408 may come before the close: keep going until the read sees the end.
            let mut probe = [0u8; 1024];
            if let Ok(Ok(0) | Err(_)) =
                timeout(Duration::from_millis(1), stream.read(&mut probe)).await
            {
                break;
            }
        }
    };
    timeout(Duration::from_secs(3), trickle)
        .await
        .expect("the slow head was cut");
    began.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_header_trickle_is_cut_within_the_header_timeout() {
    bounded(async {
        let server = start(&[("CHOPIN_HEADER_TIMEOUT", "500ms")], routes()).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(b"GET /ok HTTP/1.1\r\n").await.unwrap();
        let took = trickle_until_cut(&mut stream).await;
        assert!(
            took >= Duration::from_millis(400),
            "cut too early: {took:?}"
        );
        assert!(took < Duration::from_millis(2500), "cut too late: {took:?}");
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_after_a_first_request_is_cut_within_the_header_timeout() {
    bounded(async {
        let server = start(
            &[
                ("CHOPIN_HEADER_TIMEOUT", "500ms"),
                ("CHOPIN_KEEP_ALIVE_TIMEOUT", "60s"),
            ],
            routes(),
        )
        .await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let first = request(&mut stream, "/ok").await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        // The next head trickles in and never completes: it is due within the header
        // timeout, not the (much longer) keep-alive timeout.
        stream.write_all(b"GET /ok HTTP/1.1\r\n").await.unwrap();
        let took = trickle_until_cut(&mut stream).await;
        assert!(
            took >= Duration::from_millis(300),
            "cut too early: {took:?}"
        );
        assert!(took < Duration::from_millis(2500), "cut too late: {took:?}");
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_after_a_slow_request_is_cut_within_twice_the_header_timeout() {
    bounded(async {
        // The timer fires while the slow request is in flight; the head that trickles in
        // after it is still cut on the header timeout's scale, not the keep-alive timeout's.
        let router = routes().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(700)).await;
                "slow"
            }),
        );
        let server = start(
            &[
                ("CHOPIN_HEADER_TIMEOUT", "500ms"),
                ("CHOPIN_KEEP_ALIVE_TIMEOUT", "60s"),
            ],
            router,
        )
        .await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let first = request(&mut stream, "/slow").await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        stream.write_all(b"GET /ok HTTP/1.1\r\n").await.unwrap();
        let took = trickle_until_cut(&mut stream).await;
        assert!(took < Duration::from_millis(1500), "cut too late: {took:?}");
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_first_head_does_not_hold_up_shutdown() {
    bounded(async {
        // Neither the header timeout nor the shutdown deadline comes into it: a connection
        // that never completed a head is dropped as soon as the server drains.
        let server = start(
            &[
                ("CHOPIN_HEADER_TIMEOUT", "30s"),
                ("CHOPIN_SHUTDOWN_TIMEOUT", "30s"),
            ],
            routes(),
        )
        .await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(b"GET /ok HTTP/1.1\r\nHo").await.unwrap();
        // Let the server read the bytes before it drains.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let began = Instant::now();
        timeout(Duration::from_secs(5), server.stop())
            .await
            .expect("the server stopped without waiting for the head");
        let rest = timeout(Duration::from_secs(1), read_to_close(&mut stream))
            .await
            .expect("the connection was closed");
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
        assert!(began.elapsed() < Duration::from_secs(5));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_shed_after_the_idle_timeout() {
    bounded(async {
        let server = start(
            &[
                ("CHOPIN_KEEP_ALIVE_TIMEOUT", "300ms"),
                ("CHOPIN_HEADER_TIMEOUT", "10s"),
            ],
            routes(),
        )
        .await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let first = request(&mut stream, "/ok").await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        // Reused while fresh: keep-alive works.
        let second = request(&mut stream, "/ok").await;
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");
        let idle_from = Instant::now();
        let rest = timeout(Duration::from_secs(3), read_to_close(&mut stream))
            .await
            .expect("the idle connection was closed");
        assert!(rest.is_empty());
        let idle = idle_from.elapsed();
        assert!(
            idle >= Duration::from_millis(250),
            "closed too early: {idle:?}"
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_sending_connections_are_all_shed() {
    bounded(async {
        let server = start(&[("CHOPIN_HEADER_TIMEOUT", "500ms")], routes()).await;
        let mut idle = Vec::new();
        for _ in 0..300 {
            idle.push(TcpStream::connect(server.addr).await.unwrap());
        }
        let closed = futures_util::future::join_all(
            idle.iter_mut()
                .map(|s| timeout(Duration::from_secs(5), read_to_close(s))),
        )
        .await;
        assert!(
            closed.iter().all(Result::is_ok),
            "every idle connection closed"
        );
        // The server still serves.
        let mut fresh = TcpStream::connect(server.addr).await.unwrap();
        assert!(request(&mut fresh, "/ok").await.starts_with("HTTP/1.1 200"));
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_head_gets_431() {
    bounded(async {
        let server = start(&[("CHOPIN_MAX_HEADER_SIZE", "16KiB")], routes()).await;
        let mut small = TcpStream::connect(server.addr).await.unwrap();
        let header = "a".repeat(4 * 1024);
        small
            .write_all(format!("GET /ok HTTP/1.1\r\nHost: t\r\nX-Big: {header}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = small.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

        let mut big = TcpStream::connect(server.addr).await.unwrap();
        let header = "a".repeat(32 * 1024);
        // The server may answer and close before the whole head is written.
        let _ = big
            .write_all(format!("GET /ok HTTP/1.1\r\nHost: t\r\nX-Big: {header}\r\n\r\n").as_bytes())
            .await;
        let reply = read_to_close(&mut big).await;
        assert!(
            reply.starts_with(b"HTTP/1.1 431"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_holds_and_frees() {
    bounded(async {
        let server = start(
            &[
                ("CHOPIN_MAX_CONNECTIONS", "2"),
                ("CHOPIN_KEEP_ALIVE_TIMEOUT", "30s"),
            ],
            routes(),
        )
        .await;
        let mut a = TcpStream::connect(server.addr).await.unwrap();
        let mut b = TcpStream::connect(server.addr).await.unwrap();
        assert!(request(&mut a, "/ok").await.starts_with("HTTP/1.1 200"));
        assert!(request(&mut b, "/ok").await.starts_with("HTTP/1.1 200"));
        // The third connects (the kernel's backlog) but is not served while two are open.
        let mut c = TcpStream::connect(server.addr).await.unwrap();
        c.write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        assert!(
            timeout(Duration::from_millis(500), c.read(&mut buf))
                .await
                .is_err(),
            "the N+1th connection must wait"
        );
        // One closes: the waiting one is served.
        drop(a);
        let n = timeout(Duration::from_secs(3), c.read(&mut buf))
            .await
            .expect("served once a connection closed")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        assert!(request(&mut b, "/ok").await.starts_with("HTTP/1.1 200"));
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_stops_reading_is_cut_after_the_write_timeout() {
    bounded(async {
        let server = start(&[("CHOPIN_WRITE_TIMEOUT", "300ms")], routes()).await;
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        // Stop reading for well over the write timeout, then read what is left.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let got = timeout(Duration::from_secs(10), read_to_close(&mut stream))
            .await
            .expect("the connection was closed");
        assert!(
            got.len() < BIG_BODY,
            "the stalled response was cut ({} bytes arrived)",
            got.len()
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_answers_every_accepted_request() {
    bounded(async {
        let entered = Arc::new(AtomicUsize::new(0));
        let counter = entered.clone();
        let app = App::new(config(&[
            ("CHOPIN_SHUTDOWN_TIMEOUT", "10s"),
            ("CHOPIN_REQUEST_TIMEOUT", "off"),
        ]))
        .router(Router::new().route(
            "/slow",
            get(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    "done"
                }
            }),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.serve_with(listener, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let requests: Vec<_> = (0..40)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.get(format!("http://{addr}/slow")).send().await })
            })
            .collect();
        while entered.load(Ordering::SeqCst) < 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = stop.send(());
        let at_shutdown = entered.load(Ordering::SeqCst);
        let mut answered = 0;
        for request in requests {
            match request.await.unwrap() {
                Ok(response) => {
                    assert_eq!(response.status(), 200);
                    assert_eq!(response.text().await.unwrap(), "done");
                    answered += 1;
                }
                // Only connections the server never accepted may fail.
                Err(err) => assert!(err.is_connect() || err.is_request(), "{err:?}"),
            }
        }
        assert!(
            answered >= at_shutdown,
            "{answered} answered, {at_shutdown} accepted"
        );
        handle.await.unwrap().unwrap();
    })
    .await;
}

/// The default stack's answers, served by `app` through `serve_with`.
async fn answers(workers: usize) -> Vec<(u16, String, Option<String>)> {
    let app = App::new(config(&[])).workers(workers).router(routes());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.serve_with(listener, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for path in ["/ok", "/ip", "/missing", "/health/live"] {
        let response = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let body = response.text().await.unwrap();
        // The request id differs per request; everything else must match.
        let body = match body.find("\"request_id\"") {
            Some(at) => body[..at].to_string(),
            None => body,
        };
        out.push((status, body, content_type));
    }
    let _ = stop.send(());
    handle.await.unwrap().unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_core_mode_serves_the_same_answers() {
    bounded(async {
        let default = answers(0).await;
        let per_core = answers(2).await;
        assert_eq!(default, per_core);
        assert_eq!(default[1].1, "127.0.0.1", "ConnectInfo is inserted");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_core_factory_runs_once_per_worker_on_reuseport_sockets() {
    bounded(async {
        // A free port (port 0 is also fine, but then the test could not know it).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let built = Arc::new(AtomicUsize::new(0));
        let counter = built.clone();
        let server = Server::new(config(&[]).server).workers(2);
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            server
                .serve_workers(
                    addr,
                    move |worker: Worker| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        async move {
                            assert_eq!(worker.count(), 2);
                            let index = worker.index();
                            // Built on the worker's runtime: a current-thread runtime.
                            assert_eq!(
                                tokio::runtime::Handle::current().runtime_flavor(),
                                tokio::runtime::RuntimeFlavor::CurrentThread
                            );
                            Ok(Router::new()
                                .route("/who", get(move || async move { index.to_string() })))
                        }
                    },
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
        });
        let mut seen = HashSet::new();
        for _ in 0..64 {
            // A fresh connection each time: SO_REUSEPORT spreads connections, not requests.
            let mut stream = loop {
                match TcpStream::connect(addr).await {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            };
            let reply = request(&mut stream, "/who").await;
            seen.insert(reply.rsplit("\r\n").next().unwrap().to_string());
            if seen.len() == 2 {
                break;
            }
        }
        assert_eq!(seen.len(), 2, "both workers served: {seen:?}");
        assert_eq!(built.load(Ordering::SeqCst), 2);
        let _ = stop.send(());
        handle.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_works_and_caps_concurrent_streams() {
    bounded(async {
        let active = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (a, p) = (active.clone(), peak.clone());
        let router = routes().route(
            "/hold",
            get(move || {
                let (a, p) = (a.clone(), p.clone());
                async move {
                    let now = a.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    a.fetch_sub(1, Ordering::SeqCst);
                    "held"
                }
            }),
        );
        let server = start(&[("CHOPIN_HTTP2_MAX_STREAMS", "2")], router).await;
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let get = |path: &'static str| {
            let mut sender = sender.clone();
            async move {
                let req = http::Request::get(format!("http://localhost{path}"))
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let response = sender.send_request(req).await.unwrap();
                assert_eq!(response.version(), http::Version::HTTP_2);
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        assert_eq!(get("/ok").await, (http::StatusCode::OK, "ok".into()));
        assert_eq!(get("/ip").await.1, "127.0.0.1");
        let held = futures_util::future::join_all((0..6).map(|_| get("/hold"))).await;
        assert!(held.iter().all(|(s, b)| *s == 200 && b == "held"));
        assert_eq!(
            peak.load(Ordering::SeqCst),
            2,
            "at most CHOPIN_HTTP2_MAX_STREAMS streams run at once"
        );
        server.stop().await;
    })
    .await;
}

/// A `ServerConfig` built by hand may hold values the environment refuses: a head limit
/// below hyper's smallest buffer and timeouts too large for the clock. They serve (the head
/// limit raised to 8 KiB, the timeouts meaning "none") instead of panicking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_built_config_with_extreme_values_serves() {
    bounded(async {
        let mut settings = config(&[]).server;
        settings.max_header_size = 1024;
        settings.header_timeout = Duration::MAX;
        settings.keep_alive_timeout = Duration::MAX;
        settings.write_timeout = Duration::MAX;
        settings.max_connection_age = Some(Duration::MAX);
        settings.http2_keep_alive_interval = Some(Duration::MAX);
        settings.http2_keep_alive_timeout = Duration::MAX;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            Server::new(settings)
                .serve(listener, routes(), async {
                    let _ = stopped.await;
                })
                .await
        });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        assert!(
            request(&mut stream, "/ok")
                .await
                .starts_with("HTTP/1.1 200")
        );
        // A second request on the same connection: the idle timer was re-armed in between.
        assert!(
            request(&mut stream, "/ok")
                .await
                .starts_with("HTTP/1.1 200")
        );
        drop(stream);
        Running { addr, stop, handle }.stop().await;
    })
    .await;
}
