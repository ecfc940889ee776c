//! Quickstart (filled in later).
fn main() {}
