//! Integration tests: real SQLite files, real PostgreSQL (when
//! `PROACTIVE_TEST_DATABASE_URL` is set), a real SMTP server over TCP and a
//! change-feed server of the contract on a loopback port.

mod support;

mod chains;
mod cli;
mod email;
mod feed;
mod ingest;
mod restart;
mod rules;
mod schema;
mod snapshot;
