//! The kinds of Popoto field, as the attributes declare them and the expansion reads them.

/// What kind of Popoto field a struct field is (mirrors `popoto::FieldKind`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    /// A plain value in the hash.
    Plain,
    /// `key`.
    Key,
    /// `unique_key`.
    UniqueKey,
    /// `auto_key`.
    AutoKey,
    /// `sorted`.
    Sorted,
    /// `confidence(...)`.
    Confidence {
        /// Initial confidence, in [0, 1].
        initial: f64,
        /// Evidence cap, at least 1.
        evidence_cap: u32,
    },
}

impl Kind {
    /// Whether the field is part of the instance key.
    pub(crate) fn is_key(self) -> bool {
        matches!(self, Kind::Key | Kind::UniqueKey | Kind::AutoKey)
    }
}
