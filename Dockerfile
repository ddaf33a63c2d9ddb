# Fasten On-Prem image recipe: a Rust builder stage, then a slim runtime with only the binary.
# Build: docker build -t fasten .
# Run:   docker run -p 9090:9090 -v fasten-data:/opt/fasten/data fasten

FROM rust:1.95-bookworm AS build
# Connector plugins are WebAssembly components built by the host's build script.
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release -p fasten

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home-dir /opt/fasten --shell /usr/sbin/nologin fasten \
 && mkdir -p /opt/fasten/data \
 && chown -R fasten:fasten /opt/fasten
COPY --from=build /src/target/release/fasten /usr/local/bin/fasten
COPY config.toml /opt/fasten/config.toml
# The folder third-party plugins are dropped into (bundled ones are inside the binary).
COPY plugin-registry /opt/fasten/plugin-registry
WORKDIR /opt/fasten
USER fasten
# Inside the container Fasten must listen on all interfaces; publish the port to choose who can reach it.
ENV FASTEN_LISTEN=0.0.0.0:9090 \
    FASTEN_DATA_DIR=/opt/fasten/data
VOLUME ["/opt/fasten/data"]
EXPOSE 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
  CMD curl -fsS http://127.0.0.1:9090/healthz || exit 1
CMD ["fasten", "serve"]
