//! `ceiling`: the HTTP stack alone — a bare poem endpoint that reads the body and answers 204.
//! The upper bound hookyard is measured against.

use poem::http::StatusCode;
use poem::listener::TcpListener;
use poem::{Body, Route, Server, handler};

#[handler]
async fn sink(body: Body) -> StatusCode {
    let _ = body.into_bytes().await;
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8081".into());
    Server::new(TcpListener::bind(addr)).run(Route::new().at("/*path", sink)).await
}
