//! The per-connection settings of a FHIR sync, parsed from the host's key/value pairs.
//!
//! Every key is optional; a missing or empty value means the default, so a connection made from a
//! catalog entry with no settings at all syncs sensibly. A value that cannot be understood is an
//! `InvalidInput` error rather than a silent default, because the user can fix it and would
//! otherwise never learn why, say, Observations are missing.

/// The resource types searched one by one when `Patient/$everything` is unavailable: the types of
/// R4's Patient compartment that hold a person's own health and cost records (US Core's, plus
/// claims, imaging, specimens and family history), each searched only when the server's
/// CapabilityStatement lists it. Provenance and QuestionnaireResponse are left out (many servers
/// refuse patient searches on them); `extra_types` can add them back.
pub(crate) const DEFAULT_RESOURCE_TYPES: &[&str] = &[
    "AllergyIntolerance",
    "CarePlan",
    "CareTeam",
    "Claim",
    "Condition",
    "Coverage",
    "Device",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Goal",
    "ImagingStudy",
    "Immunization",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Procedure",
    "ServiceRequest",
    "Specimen",
];

pub(crate) const DEFAULT_ACCEPT: &str = "application/fhir+json";
pub(crate) const DEFAULT_PAGE_SIZE: u32 = 50;
pub(crate) const DEFAULT_REFERENCE_ROUNDS: u32 = 2;
pub(crate) const DEFAULT_MAX_REFERENCES: u32 = 1000;

/// Every key this module understands; anything else earns a warning (a typo would otherwise be
/// ignored without a word).
const KNOWN_KEYS: &[&str] = &[
    "accept",
    "everything",
    "resource_types",
    "extra_types",
    "skip_types",
    "category_searches",
    "page_size",
    "reference_rounds",
    "max_references",
    "incremental",
];

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// The Accept header sent with every request.
    pub accept: String,
    /// Try `Patient/{id}/$everything` before searching type by type.
    pub everything: bool,
    /// The types searched one by one, in order, without duplicates.
    pub resource_types: Vec<String>,
    /// Types searched once per category instead of once without one (Epic refuses an
    /// Observation search without a category).
    pub category_searches: Vec<(String, Vec<String>)>,
    /// `_count` of every search.
    pub page_size: u32,
    pub reference_rounds: u32,
    pub max_references: u32,
    /// Ask only for what changed since the previous run's checkpoint.
    pub incremental: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            accept: DEFAULT_ACCEPT.into(),
            everything: true,
            resource_types: DEFAULT_RESOURCE_TYPES
                .iter()
                .map(|t| t.to_string())
                .collect(),
            category_searches: Vec::new(),
            page_size: DEFAULT_PAGE_SIZE,
            reference_rounds: DEFAULT_REFERENCE_ROUNDS,
            max_references: DEFAULT_MAX_REFERENCES,
            incremental: true,
        }
    }
}

impl Settings {
    /// Parses the settings; returns them with warnings about keys that were not understood, or
    /// the message of an `InvalidInput` error.
    pub(crate) fn parse(pairs: &[(String, String)]) -> Result<(Settings, Vec<String>), String> {
        let mut warnings = Vec::new();
        // The last value of a repeated key wins, as in a query string.
        let get = |key: &str| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        for (key, _) in pairs {
            if !KNOWN_KEYS.contains(&key.trim()) {
                warnings.push(format!(
                    "The setting {:?} is not known and was ignored.",
                    key
                ));
            }
        }

        let mut settings = Settings::default();
        if let Some(accept) = get("accept") {
            settings.accept = accept.to_string();
        }
        if let Some(value) = get("everything") {
            settings.everything = parse_bool("everything", value)?;
        }
        if let Some(value) = get("incremental") {
            settings.incremental = parse_bool("incremental", value)?;
        }
        if let Some(value) = get("page_size") {
            settings.page_size = parse_number("page_size", value, 1, 1000)?;
        }
        if let Some(value) = get("reference_rounds") {
            settings.reference_rounds = parse_number("reference_rounds", value, 0, 10)?;
        }
        if let Some(value) = get("max_references") {
            settings.max_references = parse_number("max_references", value, 0, 100_000)?;
        }

        let mut types = match get("resource_types") {
            Some(value) => parse_types("resource_types", value)?,
            None => settings.resource_types.clone(),
        };
        if let Some(value) = get("extra_types") {
            types.extend(parse_types("extra_types", value)?);
        }
        if let Some(value) = get("skip_types") {
            let skip = parse_types("skip_types", value)?;
            types.retain(|t| !skip.contains(t));
        }
        // The Patient is read by id before the searches; `Patient?patient=` is not a valid search.
        types.retain(|t| t != "Patient");
        let mut unique = Vec::with_capacity(types.len());
        for t in types {
            if !unique.contains(&t) {
                unique.push(t);
            }
        }
        settings.resource_types = unique;

        if let Some(value) = get("category_searches") {
            settings.category_searches = parse_category_searches(value)?;
        }
        Ok((settings, warnings))
    }

    /// The categories to search `resource_type` by, if it is searched per category.
    pub(crate) fn categories_for(&self, resource_type: &str) -> Option<&[String]> {
        self.category_searches
            .iter()
            .find(|(t, _)| t == resource_type)
            .map(|(_, categories)| categories.as_slice())
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!(
            "The setting {key} must be \"true\" or \"false\", not {value:?}."
        )),
    }
}

fn parse_number(key: &str, value: &str, min: u32, max: u32) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            format!("The setting {key} must be a whole number from {min} to {max}, not {value:?}.")
        })
}

/// A comma-separated list of resource type names. The names go into URL paths, so anything that
/// is not a plain type name is refused.
fn parse_types(key: &str, value: &str) -> Result<Vec<String>, String> {
    let mut types = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !is_type_name(name) {
            return Err(format!(
                "The setting {key} lists {name:?}, which is not a FHIR resource type name."
            ));
        }
        types.push(name.to_string());
    }
    Ok(types)
}

/// `Observation=laboratory,vital-signs;CarePlan=assess-plan`.
fn parse_category_searches(value: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut searches: Vec<(String, Vec<String>)> = Vec::new();
    for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, categories)) = part.split_once('=') else {
            return Err(format!(
                "The setting category_searches must look like \
                 \"Observation=laboratory,vital-signs;CarePlan=assess-plan\"; {part:?} has no '='."
            ));
        };
        let name = name.trim();
        if !is_type_name(name) {
            return Err(format!(
                "The setting category_searches names {name:?}, which is not a FHIR resource type name."
            ));
        }
        let categories: Vec<String> = categories
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        if categories.is_empty() {
            return Err(format!(
                "The setting category_searches gives no categories for {name}."
            ));
        }
        // `Observation=a;Observation=b` means both.
        match searches.iter_mut().find(|(t, _)| t == name) {
            Some((_, existing)) => {
                for c in categories {
                    if !existing.contains(&c) {
                        existing.push(c);
                    }
                }
            }
            None => searches.push((name.to_string(), categories)),
        }
    }
    Ok(searches)
}

/// Whether `name` looks like a FHIR resource type: an upper-case letter, then letters and digits.
pub(crate) fn is_type_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_settings_means_the_defaults() {
        let (settings, warnings) = Settings::parse(&[]).unwrap();
        assert_eq!(settings, Settings::default());
        assert!(warnings.is_empty());
        assert_eq!(settings.resource_types.len(), DEFAULT_RESOURCE_TYPES.len());
        assert!(!settings.resource_types.iter().any(|t| t == "Provenance"));
    }

    #[test]
    fn empty_values_mean_the_defaults() {
        let (settings, _) =
            Settings::parse(&pairs(&[("page_size", " "), ("everything", "")])).unwrap();
        assert_eq!(settings, Settings::default());
    }

    #[test]
    fn types_are_replaced_extended_and_skipped() {
        let (settings, _) = Settings::parse(&pairs(&[
            ("resource_types", "Condition, Observation,Condition"),
            ("extra_types", "Provenance,Patient"),
            ("skip_types", "Observation"),
        ]))
        .unwrap();
        assert_eq!(settings.resource_types, ["Condition", "Provenance"]);
    }

    #[test]
    fn scalar_settings_are_parsed() {
        let (settings, _) = Settings::parse(&pairs(&[
            ("accept", "application/json"),
            ("everything", "FALSE"),
            ("incremental", "false"),
            ("page_size", "200"),
            ("reference_rounds", "0"),
            ("max_references", "5"),
        ]))
        .unwrap();
        assert_eq!(settings.accept, "application/json");
        assert!(!settings.everything);
        assert!(!settings.incremental);
        assert_eq!(settings.page_size, 200);
        assert_eq!(settings.reference_rounds, 0);
        assert_eq!(settings.max_references, 5);
    }

    #[test]
    fn bad_values_are_refused() {
        for (key, value) in [
            ("everything", "yes"),
            ("page_size", "0"),
            ("page_size", "fifty"),
            ("reference_rounds", "11"),
            ("resource_types", "Observation/../Patient"),
            ("category_searches", "Observation"),
            ("category_searches", "Observation="),
            ("category_searches", "observation=laboratory"),
        ] {
            let result = Settings::parse(&pairs(&[(key, value)]));
            assert!(result.is_err(), "{key}={value} should be refused");
        }
    }

    #[test]
    fn category_searches_are_parsed() {
        let (settings, _) = Settings::parse(&pairs(&[(
            "category_searches",
            " Observation = laboratory, vital-signs ; CarePlan=assess-plan;Observation=laboratory,social-history;",
        )]))
        .unwrap();
        assert_eq!(
            settings.categories_for("Observation").unwrap(),
            ["laboratory", "vital-signs", "social-history"]
        );
        assert_eq!(
            settings.categories_for("CarePlan").unwrap(),
            ["assess-plan"]
        );
        assert!(settings.categories_for("Condition").is_none());
    }

    #[test]
    fn unknown_keys_are_warned_about() {
        let (_, warnings) = Settings::parse(&pairs(&[("pagesize", "10")])).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("pagesize"));
    }
}
