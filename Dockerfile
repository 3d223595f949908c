# syntax=docker/dockerfile:1
# All six binaries (credit-ledger, meter-ingest, invoicing, notifier, console, billing) in one
# small non-root image. protoc comes from protoc-bin-vendored: the builder
# needs nothing but the Rust toolchain.
#   docker build -t billing:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Only the service packages: test-only features (failpoints) stay out.
# No debug info, stripped: 12–17 MB binaries instead of 75–98 MB.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=true
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p credit-ledger -p meter-ingest -p invoicing -p notifier -p console -p billing \
 && mkdir -p /out \
 && cp target/release/credit-ledger target/release/meter-ingest \
       target/release/invoicing target/release/notifier target/release/console \
       target/release/billing /out/

# glibc + libgcc, no shell, user 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
WORKDIR /tmp
EXPOSE 50051 50052 50053 50054 8080
# Each pod runs one service; the Deployment sets the command.
ENTRYPOINT ["/usr/local/bin/billing"]
CMD ["--help"]
