# Build: a release binary from the locked dependency tree.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin portal-gateway

# Run: a minimal image with CA certificates (for https://api.workos.com), as a non-root user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/portal-gateway /usr/local/bin/portal-gateway
USER nonroot:nonroot
# gRPC; and /metrics, /healthz when the config sets [admin] listen = "0.0.0.0:9090".
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/portal-gateway", "serve"]
CMD ["--config", "/etc/portal-gateway/config.toml", "--listen", "0.0.0.0:50051"]
