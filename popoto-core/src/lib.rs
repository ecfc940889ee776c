//! Runtime of popoto: a Redis ORM partitioned per tenant, on the layout of Python Popoto 1.10.1.
//!
//! Users depend on the `popoto` facade crate; this crate's API is re-exported there and only
//! that crate follows semantic versioning.

pub mod codec;
pub mod error;
pub mod keys;
pub mod model;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use error::{Error, Result};
pub use model::{
    ConfidenceField, Field, FieldHandle, FieldKind, FieldMeta, Key, KeyField, Model, ModelMeta,
    Record, SortedField,
};
