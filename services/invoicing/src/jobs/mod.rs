//! Background loops: the worker (period close, auto-finalize, saga recovery).

pub mod worker;
