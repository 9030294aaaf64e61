//! Procedural macros for Chopin.
//!
//! Chopin adds a macro only where it removes real boilerplate. This crate currently has none
//! exported for applications; the pass-through SQL projection derive will live here.
//! It builds and is tested as part of the workspace so that later macros land on a working
//! crate.
