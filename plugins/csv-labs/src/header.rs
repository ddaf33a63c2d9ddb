//! Finding the header line and the delimiter, and what each column holds.

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Name,
    Code,
    Value,
    Unit,
    Range,
    RangeLow,
    RangeHigh,
    Flag,
    Date,
    Lab,
    Orderer,
    Specimen,
    Panel,
}

/// Column names as [`normalise`] leaves them, per role, most telling first: when two columns
/// have the same role (say "Collected" and "Reported"), the one named earlier here wins. A few
/// German, French, Dutch and Spanish names are included because labs there export this way too.
pub(crate) const SYNONYMS: &[(Role, &[&str])] = &[
    (
        Role::Name,
        &[
            "testname",
            "test",
            "analyte",
            "analytename",
            "component",
            "componentname",
            "labtest",
            "testdescription",
            "description",
            "observation",
            "observationname",
            "name",
            "analyse",
            "analysis",
            "untersuchung",
            "parameter",
            "examen",
            "bepaling",
            "onderzoek",
            "prueba",
            "analito",
            "determinacion",
        ],
    ),
    (
        Role::Code,
        &[
            "loinc",
            "loinccode",
            "loincnumber",
            "codeloinc",
            "testcode",
            "code",
            "componentcode",
            "analytecode",
            "kode",
            "codigo",
            "codigoloinc",
        ],
    ),
    (
        Role::Value,
        &[
            "result",
            "resultvalue",
            "value",
            "observationvalue",
            "results",
            "wert",
            "ergebnis",
            "messwert",
            "resultat",
            "valeur",
            "uitslag",
            "waarde",
            "resultaat",
            "resultado",
            "valor",
        ],
    ),
    (
        Role::Unit,
        &[
            "units",
            "unit",
            "uom",
            "unitofmeasure",
            "unitofmeasurement",
            "resultunit",
            "resultunits",
            "einheit",
            "unite",
            "unites",
            "eenheid",
            "unidad",
            "unidades",
        ],
    ),
    (
        Role::Range,
        &[
            "referencerange",
            "refrange",
            "referenceinterval",
            "normalrange",
            "range",
            "reference",
            "referencevalues",
            "normalvalues",
            "standardrange",
            "referenzbereich",
            "normbereich",
            "normalbereich",
            "referenz",
            "normwert",
            "normwerte",
            "valeursdereference",
            "intervalledereference",
            "normes",
            "referentiewaarde",
            "referentiewaarden",
            "normaalwaarde",
            "rangodereferencia",
            "valoresdereferencia",
            "rango",
        ],
    ),
    (
        Role::RangeLow,
        &[
            "reflow",
            "referencelow",
            "rangelow",
            "referencerangelow",
            "normallow",
            "lowerlimit",
            "lowerreferencelimit",
            "low",
            "refmin",
            "min",
            "refunten",
            "referenzunten",
            "normunten",
            "untergrenze",
            "unten",
            "ondergrens",
            "minimo",
            "limiteinferior",
        ],
    ),
    (
        Role::RangeHigh,
        &[
            "refhigh",
            "referencehigh",
            "rangehigh",
            "referencerangehigh",
            "normalhigh",
            "upperlimit",
            "upperreferencelimit",
            "high",
            "refmax",
            "max",
            "refoben",
            "referenzoben",
            "normoben",
            "obergrenze",
            "oben",
            "bovengrens",
            "maximo",
            "limitesuperior",
        ],
    ),
    (
        Role::Flag,
        &[
            "flag",
            "abnormalflag",
            "flags",
            "abnormalflags",
            "resultflag",
            "abnormal",
            "interpretation",
            "kennzeichen",
            "bewertung",
            "vlag",
            "interpretacion",
            "indicador",
        ],
    ),
    (
        Role::Date,
        &[
            "collected",
            "collectiondate",
            "datecollected",
            "collectiondatetime",
            "collectedon",
            "specimendate",
            "specimencollected",
            "sampledate",
            "drawdate",
            "datedrawn",
            "observationdate",
            "effectivedate",
            "date",
            "datetime",
            "resultdate",
            "resulted",
            "resultedon",
            "reported",
            "reporteddate",
            "datereported",
            "entnahmedatum",
            "abnahmedatum",
            "datum",
            "befunddatum",
            "dateprelevement",
            "datedeprelevement",
            "afnamedatum",
            "fecha",
            "fechademuestra",
        ],
    ),
    (
        Role::Lab,
        &[
            "performinglab",
            "performinglaboratory",
            "lab",
            "laboratory",
            "labname",
            "performer",
            "performingorganization",
            "labor",
            "laboratoire",
            "laboratorium",
            "laboratorio",
        ],
    ),
    (
        Role::Orderer,
        &[
            "orderingprovider",
            "orderingphysician",
            "orderedby",
            "orderingclinician",
            "requestedby",
            "physician",
            "doctor",
            "provider",
            "arzt",
            "einsender",
            "medecin",
            "prescripteur",
            "arts",
            "aanvrager",
            "medico",
        ],
    ),
    (
        Role::Specimen,
        &[
            "specimen",
            "specimentype",
            "sample",
            "sampletype",
            "material",
            "probenmaterial",
            "probe",
            "echantillon",
            "materiaal",
            "monster",
            "muestra",
            "tipodemuestra",
        ],
    ),
    (
        Role::Panel,
        &[
            "panel",
            "panelname",
            "testgroup",
            "ordername",
            "order",
            "testpanel",
            "group",
            "profile",
            "gruppe",
            "profil",
            "auftrag",
            "bilan",
            "groupe",
            "groep",
            "perfil",
            "grupo",
        ],
    ),
];

/// The delimiters tried, in the order a tie is broken.
pub const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Lines before the header that are skipped ("Patient: ...", "Exported on ...").
pub const MAX_PREAMBLE_LINES: usize = 10;

/// The header line that was found and what its columns hold.
#[derive(Debug, Clone)]
pub struct Columns {
    /// The header's column names as written (for messages).
    pub names: Vec<String>,
    roles: Vec<(Role, usize)>,
    /// The header's index among the file's non-blank records.
    pub header_record: usize,
    /// The header's line number in the file (1-based).
    pub header_line: u64,
}

impl Columns {
    pub fn index(&self, role: Role) -> Option<usize> {
        self.roles.iter().find(|(r, _)| *r == role).map(|(_, i)| *i)
    }

    pub fn has(&self, role: Role) -> bool {
        self.index(role).is_some()
    }

    /// The column's name as written in the file.
    pub fn name(&self, role: Role) -> &str {
        self.index(role)
            .and_then(|i| self.names.get(i))
            .map_or("", String::as_str)
    }

    /// The names, quoted and comma-separated, as messages show them.
    pub fn quoted_names(&self) -> String {
        quoted_list(&self.names)
    }
}

/// Lower-case letters and digits only, with common accents removed, so "Ref. Range",
/// "REFERENCE_RANGE" and "reference range" compare equal.
pub fn normalise(name: &str) -> String {
    name.chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            'à' | 'á' | 'â' | 'ä' | 'ã' => Some('a'),
            'è' | 'é' | 'ê' | 'ë' => Some('e'),
            'ì' | 'í' | 'î' | 'ï' => Some('i'),
            'ò' | 'ó' | 'ô' | 'ö' | 'õ' => Some('o'),
            'ù' | 'ú' | 'û' | 'ü' => Some('u'),
            'ñ' => Some('n'),
            'ç' => Some('c'),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The role of a column name and its rank among that role's names (lower is better).
fn role_of(name: &str) -> Option<(Role, usize)> {
    let lookup = |key: &str| {
        SYNONYMS.iter().find_map(|(role, names)| {
            names
                .iter()
                .position(|n| *n == key)
                .map(|rank| (*role, rank))
        })
    };
    let key = normalise(name);
    if key.is_empty() {
        return None;
    }
    // "Result (numeric)" or "Value [mg/dL]": the bracketed part only qualifies the name.
    lookup(&key).or_else(|| {
        let bare: String = strip_bracketed(name);
        lookup(&normalise(&bare))
    })
}

fn strip_bracketed(name: &str) -> String {
    let mut depth = 0usize;
    let mut out = String::new();
    for c in name.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// What a record's fields would mean as a header: each role goes to the column whose name ranks
/// best for it.
pub fn header_roles(fields: &[String]) -> Vec<(Role, usize)> {
    let mut best: Vec<(Role, usize, usize)> = Vec::new();
    for (index, field) in fields.iter().enumerate() {
        let Some((role, rank)) = role_of(field) else {
            continue;
        };
        match best.iter_mut().find(|(r, _, _)| *r == role) {
            Some(slot) if rank < slot.2 => *slot = (role, index, rank),
            Some(_) => {}
            None => best.push((role, index, rank)),
        }
    }
    best.into_iter()
        .map(|(role, index, _)| (role, index))
        .collect()
}

/// The outcome of looking for the header in the first lines of the file.
#[derive(Debug)]
pub enum Detection {
    Found {
        delimiter: u8,
        columns: Columns,
    },
    /// A line had a test name column but none for the value.
    NoValueColumn {
        line: u64,
        names: Vec<String>,
    },
    NotFound {
        first_line: String,
    },
}

/// Tries each delimiter on the first lines of `head` and keeps the one whose header line names
/// the most known columns; the header is the first line that has a test name and a value column.
pub fn detect(head: &str) -> Detection {
    let mut best: Option<(usize, u8, Columns)> = None;
    let mut name_without_value: Option<(u64, Vec<String>)> = None;
    for delimiter in DELIMITERS {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(head.as_bytes());
        let mut record = csv::StringRecord::new();
        let mut index = 0usize;
        while index <= MAX_PREAMBLE_LINES {
            match reader.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                // A quote left open in a preamble line, or a line cut off at the end of `head`.
                Err(_) => break,
            }
            if is_blank(&record) {
                continue;
            }
            let line = record.position().map_or(0, csv::Position::line);
            let fields: Vec<String> = record.iter().map(|f| f.trim().to_string()).collect();
            let roles = header_roles(&fields);
            let has = |role| roles.iter().any(|(r, _)| *r == role);
            if has(Role::Name) && has(Role::Value) {
                let score = roles.len();
                if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                    best = Some((
                        score,
                        delimiter,
                        Columns {
                            names: fields,
                            roles,
                            header_record: index,
                            header_line: line,
                        },
                    ));
                }
                break;
            }
            if has(Role::Name) && fields.len() > 1 && name_without_value.is_none() {
                name_without_value = Some((line, fields));
            }
            index += 1;
        }
    }
    if let Some((_, delimiter, columns)) = best {
        return Detection::Found { delimiter, columns };
    }
    if let Some((line, names)) = name_without_value {
        return Detection::NoValueColumn { line, names };
    }
    let first_line = head
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    Detection::NotFound {
        first_line: shorten(first_line, 120),
    }
}

pub fn is_blank(record: &csv::StringRecord) -> bool {
    record.iter().all(|f| f.trim().is_empty())
}

pub fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max_chars).collect();
        format!("{cut}…")
    }
}
