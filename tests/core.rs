//! The core ORM against a private redis-server: layout, atomic writes, queries, scopes, errors.
//! The tests are modules in `tests/core_cases/`.

mod support;

#[path = "core_cases/bulk.rs"]
mod bulk;
#[path = "core_cases/connections.rs"]
mod connections;
#[path = "core_cases/reads.rs"]
mod reads;
#[path = "core_cases/writes.rs"]
mod writes;
