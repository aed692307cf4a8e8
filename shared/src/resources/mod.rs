//! The resource map and the affected-set planner (SPEC §6).
//!
//! A repository describes its services and packages in `.gandalf/resources.toml`; given the files
//! a change touches, the planner says which resources are affected, what must be built (and in
//! which parallel levels), what must be deployed, and which files nothing claims. Gandalf's queue
//! uses it for every candidate, `gandalf plan` exposes it on the command line, and
//! `gandalf resources discover` writes a first map from what the repository already declares.
//!
//! ```
//! use shared::resources::ResourceMap;
//!
//! let map = ResourceMap::parse(r#"
//!     ignore = ["**/*.md"]
//!     [[resource]]
//!     name = "common"
//!     type = "package"
//!     paths = ["libs/common/**"]
//!     [[resource]]
//!     name = "billing"
//!     type = "service"
//!     paths = ["services/billing/**"]
//!     depends_on = ["common"]
//! "#).unwrap();
//! let plan = map.plan(["libs/common/src/lib.rs", "README.md"]);
//! assert_eq!(plan.affected, ["billing", "common"]);
//! assert_eq!(plan.levels, [vec!["common"], vec!["billing"]]);
//! assert_eq!(plan.deploy, ["billing"]);
//! assert_eq!(
//!     plan.to_json(),
//!     r#"{"all":false,"affected":["billing","common"],"levels":[["common"],["billing"]],"deploy":["billing"],"unmapped":[]}"#
//! );
//! ```
//!
//! Layout: `map` parses and validates the TOML (read by `raw`: a fast reader for plainly written
//! maps, `toml` for everything else and for the error messages), `glob` validates globs and pins their meaning
//! (globset is the reference), `pattern` turns a glob into segment patterns and matches them,
//! `index` holds a map's globs in a trie of literal leading segments so a path meets only the globs
//! that can match it, `planner` computes plans, `cache` keeps parsed maps by blob SHA,
//! `discover` proposes a map for an existing repository. Everything here is pure
//! (no database, no network; `discover` only reads files), so it is cheap to test exhaustively.

mod cache;
pub mod discover;
mod glob;
mod index;
mod map;
mod pattern;
mod planner;
mod raw;

pub use cache::{MapCache, git_blob_sha};
pub use map::{MapError, Problem, ProblemKind, Resource, ResourceMap, Unmapped};
pub use planner::{Plan, Reason};

#[cfg(test)]
mod tests;
