//! A bare axum "hello" server: the baseline the demo service's throughput is compared with.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().route("/kv/{*key}", axum::routing::get(|| async { "hello" }));
    axum::serve(listener, app).await
}
