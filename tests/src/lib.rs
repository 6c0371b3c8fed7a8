//! Helpers for the integration tests: start real servers on free ports and stop them.
