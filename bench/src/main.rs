//! The ringcache load generator (being built).
fn main() {}
