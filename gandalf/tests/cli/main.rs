//! Gandalf's command-line tools end to end, in one test binary: `gandalf plan` and
//! `gandalf resources discover` against real git repositories made in temporary directories.

mod discover;
mod plan;
