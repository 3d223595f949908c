//! Background loops: the expiry sweeper.

pub mod sweeper;
