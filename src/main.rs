use portal_gateway::emulator;
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:4100").await?;
    emulator::serve(
        listener,
        emulator::Options::default(),
        std::future::pending(),
    )
    .await
}
