//! How writes to a shared instance are merged, as a plain value (errors name it).

/// How writes to a shared instance are merged into the authoritative value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Merge {
    /// Each write's fields replace the stored ones, in the order writes reach the server
    /// (inside the write script).
    LastWriteWins,
    /// Each top-level field keeps the write with the greatest [`Tag`](super::Tag) (hybrid logical clock,
    /// then replica id): the result does not depend on arrival order, and an edit made after
    /// seeing another wins over it. Merged in the write script.
    LwwMapCrdt,
    /// A [`MergeStrategy`](super::MergeStrategy) run by the writer under a version check (retried when another write
    /// landed first); tenant writes must go through [`SharedAccess::update`](super::SharedAccess::update).
    Custom,
}

impl Merge {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Merge::LastWriteWins => "lww",
            Merge::LwwMapCrdt => "crdt",
            Merge::Custom => "custom",
        }
    }

    pub(crate) fn parse(code: &str) -> Option<Merge> {
        match code {
            "lww" => Some(Merge::LastWriteWins),
            "crdt" => Some(Merge::LwwMapCrdt),
            "custom" => Some(Merge::Custom),
            _ => None,
        }
    }
}
