//! Which section is which. C-CDA marks a section with a templateId, and also with a LOINC code;
//! some vendors (Epic among them) send only the code, so both are tried.

use roxmltree::Node;

use crate::xml::El;

/// The kinds of section whose entries become resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Allergies,
    Medications,
    /// Discharge, admission and administered medications: the same entries.
    OtherMedications,
    Problems,
    /// Admission, discharge and hospital discharge diagnoses: Problem Concern Acts or
    /// Hospital Admission/Discharge Diagnosis acts.
    Diagnoses,
    HealthConcerns,
    Procedures,
    Results,
    VitalSigns,
    Immunizations,
    Encounters,
    SocialHistory,
    FamilyHistory,
    FunctionalStatus,
    MentalStatus,
    Goals,
    PlanOfTreatment,
    Interventions,
    MedicalEquipment,
    Payers,
    CareTeam,
    /// Any other section: its narrative becomes a note; entries it has are mapped by template
    /// where possible.
    Other,
}

/// (kind, templateId roots, LOINC section codes).
const TABLE: &[(Kind, &[&str], &[&str])] = &[
    (
        Kind::Allergies,
        &[
            "2.16.840.1.113883.10.20.22.2.6",
            "2.16.840.1.113883.10.20.22.2.6.1",
        ],
        &["48765-2"],
    ),
    (
        Kind::Medications,
        &[
            "2.16.840.1.113883.10.20.22.2.1",
            "2.16.840.1.113883.10.20.22.2.1.1",
        ],
        &["10160-0"],
    ),
    (
        Kind::OtherMedications,
        &[
            "2.16.840.1.113883.10.20.22.2.11",
            "2.16.840.1.113883.10.20.22.2.11.1",
            "2.16.840.1.113883.10.20.22.2.44",
            "2.16.840.1.113883.10.20.22.2.38",
        ],
        &["10183-2", "75311-1", "42346-7", "29549-3"],
    ),
    (
        Kind::Problems,
        &[
            "2.16.840.1.113883.10.20.22.2.5",
            "2.16.840.1.113883.10.20.22.2.5.1",
        ],
        &["11450-4"],
    ),
    (
        Kind::Diagnoses,
        &[
            "2.16.840.1.113883.10.20.22.2.43",
            "2.16.840.1.113883.10.20.22.2.24",
            "2.16.840.1.113883.10.20.22.2.16",
        ],
        &["46241-6", "11535-2", "78375-3", "10154-3"],
    ),
    (
        Kind::HealthConcerns,
        &["2.16.840.1.113883.10.20.22.2.58"],
        &["75310-3"],
    ),
    (
        Kind::Procedures,
        &[
            "2.16.840.1.113883.10.20.22.2.7",
            "2.16.840.1.113883.10.20.22.2.7.1",
        ],
        &["47519-4"],
    ),
    (
        Kind::Results,
        &[
            "2.16.840.1.113883.10.20.22.2.3",
            "2.16.840.1.113883.10.20.22.2.3.1",
        ],
        &["30954-2"],
    ),
    (
        Kind::VitalSigns,
        &[
            "2.16.840.1.113883.10.20.22.2.4",
            "2.16.840.1.113883.10.20.22.2.4.1",
        ],
        &["8716-3"],
    ),
    (
        Kind::Immunizations,
        &[
            "2.16.840.1.113883.10.20.22.2.2",
            "2.16.840.1.113883.10.20.22.2.2.1",
        ],
        &["11369-6"],
    ),
    (
        Kind::Encounters,
        &[
            "2.16.840.1.113883.10.20.22.2.22",
            "2.16.840.1.113883.10.20.22.2.22.1",
        ],
        &["46240-8"],
    ),
    (
        Kind::SocialHistory,
        &["2.16.840.1.113883.10.20.22.2.17"],
        &["29762-2"],
    ),
    (
        Kind::FamilyHistory,
        &["2.16.840.1.113883.10.20.22.2.15"],
        &["10157-6"],
    ),
    (
        Kind::FunctionalStatus,
        &["2.16.840.1.113883.10.20.22.2.14"],
        &["47420-5"],
    ),
    (
        Kind::MentalStatus,
        &["2.16.840.1.113883.10.20.22.2.56"],
        &["10190-7"],
    ),
    (
        Kind::Goals,
        &["2.16.840.1.113883.10.20.22.2.60"],
        &["61146-7"],
    ),
    (
        Kind::PlanOfTreatment,
        &["2.16.840.1.113883.10.20.22.2.10"],
        &["18776-5"],
    ),
    (
        Kind::Interventions,
        &["2.16.840.1.113883.10.20.21.2.3"],
        &["62387-6"],
    ),
    (
        Kind::MedicalEquipment,
        &["2.16.840.1.113883.10.20.22.2.23"],
        &["46264-8"],
    ),
    (
        Kind::Payers,
        &["2.16.840.1.113883.10.20.22.2.18"],
        &["48768-6"],
    ),
    (
        Kind::CareTeam,
        &["2.16.840.1.113883.10.20.22.2.500"],
        &["85847-2"],
    ),
];

/// What kind of section this is, by templateId first, then by LOINC code.
pub fn kind_of(section: Node) -> Kind {
    let templates = section.template_ids();
    let code = section.child("code").and_then(|c| c.attr("code"));
    let by_template: Vec<&(Kind, &[&str], &[&str])> = TABLE
        .iter()
        .filter(|(_, roots, _)| templates.iter().any(|t| roots.contains(t)))
        .collect();
    // A section claiming two templates (Interventions and Results, in one example) is the one
    // its code agrees with.
    if let Some((kind, _, _)) = by_template
        .iter()
        .find(|(_, _, codes)| code.is_some_and(|c| codes.contains(&c)))
        .or(by_template.first())
    {
        return *kind;
    }
    if let Some(code) = code
        && let Some((kind, _, _)) = TABLE.iter().find(|(_, _, codes)| codes.contains(&code))
    {
        return *kind;
    }
    Kind::Other
}

/// The section's title as the document gives it, else its code's display name, else a name
/// for its kind.
pub fn title_of(section: Node) -> String {
    section
        .child("title")
        .map(|t| t.text_content())
        .filter(|t| !t.is_empty())
        .or_else(|| {
            section
                .child("code")
                .and_then(|c| c.attr("displayName"))
                .map(crate::xml::collapse)
        })
        .unwrap_or_else(|| format!("{:?}", kind_of(section)))
}
