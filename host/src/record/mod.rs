//! The record as the family reads it: plain functions that turn stored FHIR resources into what
//! the pages show (lab trends, medical history, the profile, charts, unit conversion, glossary).
//! Nothing here knows about HTTP; every query takes the person id and filters by it.

pub mod ccda_view;
pub mod chart;
pub mod dashboard;
pub mod family;
pub mod glossary;
pub mod history;
pub mod ips;
pub mod labs;
pub mod manual;
pub mod profile;

/// The Observation reader moved to `fhir` (ingest derives each observation's keys with it);
/// kept here under its old name for the pages.
pub use crate::fhir::observation as observations;
/// Units moved to `fhir` (what is derived at ingest uses them too); kept here for the pages.
pub use crate::fhir::units;
