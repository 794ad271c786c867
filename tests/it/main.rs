//! Integration tests: real SQLite files, real PostgreSQL (when
//! `PROACTIVE_TEST_DATABASE_URL` is set), a real SMTP server over TCP and a
//! change-feed server and e-address and SMS gateways of the contracts on
//! loopback ports.

mod gateways;
mod support;

mod api;
mod audit;
mod callbacks;
mod chains;
mod citizen;
mod cli;
mod crash;
mod dbloss;
mod eaddress;
mod email;
mod feed;
mod ingest;
mod leases;
mod pacing;
mod pages;
mod restart;
mod routing;
mod rules;
mod schema;
mod serve;
mod simulate;
mod sms;
mod snapshot;
mod withdrawal;
