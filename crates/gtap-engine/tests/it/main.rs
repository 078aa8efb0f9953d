//! Engine behaviour on toy stages: caching, invalidation, crash safety, config errors.

mod cluster;
mod config_errors;
mod fixtures;
mod hostile;
mod runs;
