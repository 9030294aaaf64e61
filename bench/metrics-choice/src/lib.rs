//! Nothing here: the comparison is `benches/choice.rs`.
