# Multi-stage build of the keyward binary; the runtime image runs as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin keyward

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/keyward --create-home keyward
COPY --from=build /src/target/release/keyward /usr/local/bin/keyward
USER 10001:10001
ENV KEYWARD_DATA_DIR=/var/lib/keyward \
    KEYWARD_BIND=0.0.0.0:8080 \
    KEYWARD_MANAGEMENT_BIND=0.0.0.0:9090 \
    KEYWARD_LOG_FORMAT=json
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD curl -fsS http://127.0.0.1:9090/readyz || exit 1
ENTRYPOINT ["keyward"]
CMD ["serve"]
