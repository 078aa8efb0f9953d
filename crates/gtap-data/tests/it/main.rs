//! Integration tests of gtap-data. No test touches the network: downloads are either disabled
//! (`FetchPolicy::Never`) or served by a local HTTP server on 127.0.0.1.

mod fixtures;
mod hostile;

mod checksum;
mod fetch;
mod idx;
mod idx_datasets;
mod mnist;
mod real;
mod real_text;
mod split;
mod text;
mod tiny_imagenet;
mod vocab;
