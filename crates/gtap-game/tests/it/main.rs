//! Integration tests of gtap-game: estimators checked against exact values of small games.

mod adaptive;
mod axioms;
mod common;
mod constraints;
mod control;
mod crossfit;
mod determinism;
mod errors;
mod estimators;
mod exact;
mod parts;
mod props;
mod walks;
