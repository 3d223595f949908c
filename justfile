# Developer shortcuts. CI does not need just: it runs .ci/run.

# Run every service locally on embedded SQLite.
up:
    cargo run --release -p billing -- up

# The whole test suite (SQLite and PostgreSQL).
test:
    cargo test --workspace

# The money simulation, long mode: OPS seeded operations on each backend against a
# release credit-ledger killed and restarted at random, checked against the model.
simulate seed="20261129" ops="1000000":
    cargo build --release -p credit-ledger
    SIM_SEED={{seed}} SIM_OPS={{ops}} cargo test --release -p billing-e2e --test simulate -- --nocapture --test-threads 1

# The credit lifecycle's simulation, long mode: OPS top-up/purchase operations and PERIODS
# allocation periods on each backend, invoicing killed at random (debug binaries: failpoints).
simulate-lifecycle seed="20261130" ops="2000" periods="48":
    cargo build -p credit-ledger -p meter-ingest -p invoicing --features invoicing/failpoints
    SIM_SEED={{seed}} SIM_LIFECYCLE_OPS={{ops}} SIM_PERIODS={{periods}} cargo test -p billing-e2e --test simulate_lifecycle -- --nocapture --test-threads 1

# Formatting, clippy, proto lint.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cd proto && npx --yes @bufbuild/buf@1 lint

# A long hostile-input run against every RPC on both backends (FUZZ_CALLS per RPC, FUZZ_SEED);
# unlike the short run in `just test`, any answer slower than 1 s fails it.
fuzz calls="2000" seed="1":
    FUZZ_CALLS={{calls}} FUZZ_SEED={{seed}} FUZZ_MAX_MS=1000 cargo test -p invoicing --test fuzz -- --nocapture

# All benchmarks.
bench: bench-ledger bench-outbox bench-ingest bench-finalize bench-scale bench-notifier bench-realtime bench-export bench-console bench-scale-out

# Ledger throughput and balance-summary latency on SQLite and PostgreSQL.
bench-ledger:
    cargo bench -p credit-ledger --bench ledger

# The outbox's cost on ApplyCredits (issue 13): the ledger bench built with its
# events switch (feature bench-no-events) runs 1,000 customers × 5 grants in
# SLICES slices of 2 s, the grants' events on and off in turn, in one process.
bench-outbox slices="20":
    BENCH_SLICES={{slices}} cargo bench -p credit-ledger --bench ledger --features bench-no-events

# Ingestion throughput, GetUsage latency and the raw COPY ratio (5M events; BENCH_EVENTS to change).
bench-ingest:
    cargo bench -p meter-ingest --bench ingest

# Finalizes/s and latency for 1,000 subscriptions through the three services (BENCH_INVOICES to change).
bench-finalize:
    cargo bench -p invoicing --bench finalize

# A customer's lists, balance and ApplyCredits p50/p99 in an account of 10,000 and of 1,000,000 rows (PostgreSQL).
bench-scale:
    cargo bench -p invoicing --bench scale

# CheckAccess and GetCustomerBalance calls/s and p50/p99, 10 meters × 30 days of usage per customer, with a pgbench baseline (PostgreSQL).
bench-realtime:
    cargo bench -p invoicing --bench realtime

# billing ledger export rows/s to a file, 1,000,000 transactions, with a psql \copy baseline (PostgreSQL; BENCH_ROWS to change).
bench-export:
    cargo bench -p billing --bench export

# Console page p50/p99 for a customer with 100 grants and 1,000 transactions, with a direct-gRPC baseline (PostgreSQL).
bench-console:
    cargo bench -p billing --bench console

# Events per second from a feed to a local webhook receiver.
bench-notifier:
    cargo bench -p notifier --bench deliver

# Finalizes/s with 1 or 3 ledger replicas and 1 or 2 invoicing replicas (real processes, PostgreSQL), with a pgbench baseline.
bench-scale-out:
    cargo build --release -p credit-ledger -p meter-ingest -p invoicing --features invoicing/test-clock
    cargo bench -p billing-e2e --bench scale_out
