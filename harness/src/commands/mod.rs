//! One module per command: its clap arguments and an `exec`.

pub mod boundary;
pub mod cancel;
pub mod conditioned;
pub mod coordinator;
pub mod diff;
pub mod doctor;
pub mod fixture;
pub mod heads;
pub mod health;
pub mod layers;
pub mod manifest;
pub mod quantize;
pub mod report;
pub mod requant_diff;
pub mod run;
pub mod search;
pub mod sensitivity;
pub mod status;
pub mod submit;
pub mod validate;
pub mod verify;
pub mod watch;
pub mod worker;
