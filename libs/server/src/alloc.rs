//! The memory allocator of every binary that links this crate: the
//! services, the `billing` command, the console, and their tests and
//! benchmarks, so that what is measured is what ships.
//!
//! mimalloc instead of the system's (glibc) malloc: a real-time check
//! allocates and frees many small buffers on both runtime threads (protobuf
//! messages, HTTP/2 frames, rows), and glibc's arenas spent about 8 % of
//! the saturated machine in `malloc`, `free` and `malloc_consolidate`.
//! With mimalloc the check ran 11–14 % faster in alternating runs of the
//! same benchmark (docs/BENCHMARKS.md, "Session 31").
//!
//! A library may hold the one `#[global_allocator]` of a program; no other
//! crate of the workspace declares one.

/// The allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
