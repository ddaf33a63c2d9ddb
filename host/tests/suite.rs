//! The integration test suite, as one binary: every file beside this one is a module of it.
//! One binary rather than one per file, because each links all of wasmtime (about 200 MB) and
//! linking 25 of them cost CI its disk and minutes. Run one area with `cargo test --test suite
//! plugins::`, or one test by name.

mod common;
mod peers;
mod smart_mock;

mod accounts;
mod apple_health;
mod audit;
mod backup;
mod browser;
mod browser_directory;
mod ccda;
mod cli;
mod crash;
mod csv_labs;
mod dashboard;
mod directory;
mod document_view;
mod email;
mod explore;
mod export;
mod fuzz;
mod history;
mod inbox;
mod labs;
mod layering;
mod manual;
mod people;
mod plugin_author;
mod plugin_cli;
mod plugin_units;
mod plugins;
mod provider_apps;
mod read_model;
mod routing;
mod search;
mod site;
mod smart_mock_selftest;
mod sync_errors;
mod sync_peers;
mod upgrade;
mod withings;
