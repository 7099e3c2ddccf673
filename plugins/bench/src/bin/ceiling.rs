//! The ceiling of `cargo xtask bench`: a bare poem server answering `GET /raw` with the
//! same bytes the bench plugin serves, on the same runtime kind as `larder` (tokio
//! multi-thread, one worker per allowed core). Whatever a cached route loses against this
//! is what Larder's layers cost.
//!
//! `larder-bench-ceiling [--listen ADDR] [--payload-bytes N | --body FILE
//! [--content-type T] [--content-encoding E]]`; prints `listening on http://ADDR` like
//! `larder serve`. `--body` serves a file's bytes as they are (a real route's answer,
//! compressed or not), for the bench's scenarios on real routes.

use bytes::Bytes;
use poem::listener::TcpAcceptor;
use poem::{EndpointExt, Response, Route, get, handler, web::Data};

/// What `/raw` answers.
struct Answer {
    body: Bytes,
    content_type: String,
    content_encoding: Option<String>,
}

#[handler]
fn raw(answer: Data<&std::sync::Arc<Answer>>) -> Response {
    let mut resp = Response::builder().content_type(answer.content_type.as_str());
    if let Some(enc) = &answer.content_encoding {
        resp = resp.header("content-encoding", enc.as_str());
    }
    resp.body(answer.body.clone())
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> std::io::Result<()> {
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let size = arg("--payload-bytes")
        .and_then(|s| s.parse().ok())
        .unwrap_or(larder_bench_plugin::DEFAULT_PAYLOAD_BYTES);
    let body = match arg("--body") {
        Some(path) => Bytes::from(std::fs::read(&path)?),
        None => Bytes::from(larder_bench_plugin::payload(size, 0)),
    };
    let answer = std::sync::Arc::new(Answer {
        body,
        content_type: arg("--content-type").unwrap_or_else(|| "application/json".into()),
        content_encoding: arg("--content-encoding"),
    });
    // The scheduler `larder_core::app::cli::runtime` picks for the same cores (current-thread on one),
    // so the two servers differ only in what runs per request.
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut runtime = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    runtime.enable_all().build()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        println!("listening on http://{}", listener.local_addr()?);
        let app = Route::new().at("/raw", get(raw)).data(answer);
        poem::Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?)
            .run(app)
            .await
    })
}
