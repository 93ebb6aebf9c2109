//! fleet's benchmarks; see the `[[bench]]` targets of this package and the README.

pub mod instant_model;
