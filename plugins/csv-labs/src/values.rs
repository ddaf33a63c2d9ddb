//! Result values, units, reference ranges and flags as labs write them.

/// A result cell, read.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultValue {
    Number {
        value: f64,
        /// The number as the lab wrote it, as JSON number text ("5", "13.90"; a decimal comma
        /// becomes a point): what is emitted, so no digit is added or lost.
        written: String,
        /// FHIR's `Quantity.comparator`: `<`, `<=`, `>=` or `>`.
        comparator: Option<&'static str>,
        /// A unit written in the same cell ("5.2 mmol/L").
        unit: Option<String>,
    },
    /// A qualitative result with a SNOMED CT code (Positive, Negative, Detected, Not detected).
    Coded {
        code: &'static str,
        display: &'static str,
        text: String,
    },
    Text(String),
    /// "Pending" and the like: the test exists but has no result yet.
    Pending,
}

/// Reads a number with a decimal point or a decimal comma ("5.2", "5,2", "-0.5", ".5").
/// Thousands separators are not expected in lab values, so "1,234" is 1.234.
pub fn parse_number(text: &str) -> Option<f64> {
    let text = text.trim();
    let unsigned = text
        .strip_prefix('-')
        .or_else(|| text.strip_prefix('+'))
        .unwrap_or(text);
    let separators = unsigned
        .bytes()
        .filter(|b| matches!(b, b'.' | b','))
        .count();
    let digits = unsigned.bytes().filter(u8::is_ascii_digit).count();
    if digits == 0 || separators > 1 || digits + separators != unsigned.len() {
        return None;
    }
    if unsigned.ends_with(['.', ',']) {
        return None;
    }
    text.replace(',', ".").parse().ok()
}

/// A number [`parse_number`] accepts, as JSON number text with the digits it was written with:
/// "5,20" → "5.20", "+3" → "3", ".5" → "0.5", "-.5" → "-0.5".
pub fn json_number_text(text: &str) -> String {
    let text = text.trim().replace(',', ".");
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.strip_prefix('+').unwrap_or(&text)),
    };
    let zero = if digits.starts_with('.') { "0" } else { "" };
    format!("{sign}{zero}{digits}")
}

/// Whether a result cell holds a number written with a decimal point ("5.2", "<0.01").
pub fn has_decimal_point(text: &str) -> bool {
    let text = text
        .trim()
        .trim_start_matches(['<', '>', '=', '≤', '≥'])
        .trim_start();
    let number = text.split_whitespace().next().unwrap_or("");
    number.contains('.') && !number.contains(',') && parse_number(number).is_some()
}

/// Removes the commas of numbers grouped in thousands ("3,400" and "1,234,567.5"), leaving
/// every other comma.
pub fn drop_thousands_commas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if is_thousands_grouped(run) {
            out.extend(run.chars().filter(|c| *c != ','));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() || c == ',' || c == '.' {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

fn is_thousands_grouped(number: &str) -> bool {
    let whole = number.split_once('.').map_or(number, |(whole, fraction)| {
        if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            ""
        } else {
            whole
        }
    });
    let mut groups = whole.split(',');
    let first = groups.next().unwrap_or("");
    let rest: Vec<&str> = groups.collect();
    !rest.is_empty()
        && (1..=3).contains(&first.len())
        && first.bytes().all(|b| b.is_ascii_digit())
        && rest
            .iter()
            .all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()))
}

const COMPARATORS: [(&str, &str); 6] = [
    ("<=", "<="),
    (">=", ">="),
    ("≤", "<="),
    ("≥", ">="),
    ("<", "<"),
    (">", ">"),
];

/// Reads a result cell; `None` when it is empty.
pub fn parse_value(text: &str) -> Option<ResultValue> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let (comparator, rest) = COMPARATORS
        .iter()
        .find_map(|(written, fhir)| text.strip_prefix(written).map(|rest| (Some(*fhir), rest)))
        .unwrap_or((None, text));
    let rest = rest.trim();
    if let Some(value) = parse_number(rest) {
        return Some(ResultValue::Number {
            value,
            written: json_number_text(rest),
            comparator,
            unit: None,
        });
    }
    if let Some((number, unit)) = rest.split_once(char::is_whitespace)
        && let Some(value) = parse_number(number)
        && !unit.trim().is_empty()
        && !unit.trim().starts_with(|c: char| c.is_ascii_digit())
    {
        return Some(ResultValue::Number {
            value,
            written: json_number_text(number),
            comparator,
            unit: Some(unit.trim().to_string()),
        });
    }
    let lower = text.to_lowercase();
    let lower = lower.trim_end_matches('.');
    let coded = |code, display| ResultValue::Coded {
        code,
        display,
        text: text.to_string(),
    };
    Some(match lower {
        "negative" | "neg" | "negativ" | "négatif" | "negatief" | "negativo" => {
            coded("260385009", "Negative")
        }
        "positive" | "pos" | "positiv" | "positif" | "positief" | "positivo" => {
            coded("10828004", "Positive")
        }
        "not detected" | "none detected" | "nicht nachweisbar" | "non détecté" | "no detectado" => {
            coded("260415000", "Not detected")
        }
        "detected" | "nachweisbar" | "détecté" | "detectado" => coded("260373001", "Detected"),
        "pending" | "in progress" | "to follow" | "result to follow" | "ausstehend"
        | "en attente" | "pendiente" => ResultValue::Pending,
        _ => ResultValue::Text(text.to_string()),
    })
}

/// A reference range: bounds where the text gives them, and the text as written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Range {
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub text: Option<String>,
}

/// Reads "3.5-5.0", "3.5 - 5.0 mmol/L", "3,5 bis 5,0", "<5", "≤ 5", ">60"; text it cannot read
/// ("negative", "see report") is kept as the range's text only.
pub fn parse_range(text: &str) -> Option<Range> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut range = Range {
        text: Some(text.to_string()),
        ..Range::default()
    };
    if let Some((fhir, rest)) = COMPARATORS
        .iter()
        .find_map(|(written, fhir)| text.strip_prefix(written).map(|rest| (*fhir, rest)))
    {
        if let Some((bound, _)) = leading_number(rest.trim_start(), false) {
            if fhir.starts_with('<') {
                range.high = Some(bound);
            } else {
                range.low = Some(bound);
            }
        }
        return Some(range);
    }
    if let Some((low, rest)) = leading_number(text, true) {
        let rest = rest.trim_start();
        let after_separator = ["-", "–", "—", "..", "to ", "bis ", "à ", "tot ", "a "]
            .iter()
            .find_map(|s| rest.strip_prefix(s));
        if let Some(after) = after_separator
            && let Some((high, _)) = leading_number(after.trim_start(), true)
        {
            range.low = Some(low);
            range.high = Some(high);
        }
    }
    Some(range)
}

/// The number at the start of `text` and what follows it.
fn leading_number(text: &str, allow_sign: bool) -> Option<(f64, &str)> {
    let mut end = 0;
    for (index, c) in text.char_indices() {
        let sign = index == 0 && allow_sign && c == '-';
        if c.is_ascii_digit() || sign || ((c == '.' || c == ',') && index > 0) {
            end = index + c.len_utf8();
        } else {
            break;
        }
    }
    let number = text[..end].trim_end_matches(['.', ',']);
    Some((parse_number(number)?, &text[number.len()..]))
}

/// A result's interpretation: a code of HL7's ObservationInterpretation, or only the text.
#[derive(Debug, Clone, PartialEq)]
pub enum Flag {
    Coded {
        code: &'static str,
        display: &'static str,
    },
    Text(String),
}

/// Reads the abnormal flags labs print (H, L, HH, LL, A, AA, N, and their words); an empty cell
/// is no flag.
pub fn parse_flag(text: &str) -> Option<Flag> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let lower = text.to_lowercase();
    let key = lower.trim_end_matches(['*', '!']).trim();
    let coded = |code, display| Some(Flag::Coded { code, display });
    match key {
        "h" | "hi" | "high" | "above high normal" | "↑" | "hoch" | "erhöht" | "haut" | "élevé"
        | "hoog" | "alto" => coded("H", "High"),
        "l" | "lo" | "low" | "below low normal" | "↓" | "niedrig" | "erniedrigt" | "tief"
        | "bas" | "laag" | "bajo" => coded("L", "Low"),
        "hh" | "critical high" | "high critical" | "crit high" | "panic high" | "↑↑" => {
            coded("HH", "Critical high")
        }
        "ll" | "critical low" | "low critical" | "crit low" | "panic low" | "↓↓" => {
            coded("LL", "Critical low")
        }
        "a" | "abn" | "abnormal" | "pathologisch" | "auffällig" | "anormal" | "afwijkend" => {
            coded("A", "Abnormal")
        }
        "aa" | "c" | "crit" | "critical" | "panic" | "kritisch" | "critique" | "kritiek"
        | "crítico" => coded("AA", "Critical abnormal"),
        "n" | "normal" | "norm" | "normaal" => coded("N", "Normal"),
        // A flag column holding only '*' marks an abnormal result.
        "" => coded("A", "Abnormal"),
        _ => Some(Flag::Text(text.to_string())),
    }
}

/// The UCUM code of a unit as labs and portals spell it, if Fasten knows it.
pub fn ucum_code(unit: &str) -> Option<&'static str> {
    let key = unit_key(unit);
    UNITS
        .iter()
        .find(|(_, spellings)| spellings.contains(&key.as_str()))
        .map(|(code, _)| *code)
}

/// Lower case without spaces, with the different spellings of micro, powers of ten and squares
/// made one: "x10^3/µL" and "10*3/uL" give the same key.
fn unit_key(unit: &str) -> String {
    let mut key: String = unit
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            'µ' | 'μ' => 'u',
            '²' => '2',
            '³' => '3',
            ',' => '.',
            c => c,
        })
        .collect::<String>()
        .to_lowercase();
    key = key.replace("mcg", "ug");
    for power in ["x10^", "x10*", "x10e", "10^", "10e"] {
        key = key.replace(power, "10*");
    }
    key.replace('^', "")
}

/// UCUM codes and the spellings (as [`unit_key`] leaves them) that mean them.
const UNITS: &[(&str, &[&str])] = &[
    ("mg/dL", &["mg/dl"]),
    ("mmol/L", &["mmol/l"]),
    ("umol/L", &["umol/l"]),
    ("nmol/L", &["nmol/l"]),
    ("pmol/L", &["pmol/l"]),
    ("g/dL", &["g/dl"]),
    ("g/L", &["g/l"]),
    ("mg/L", &["mg/l"]),
    ("ug/L", &["ug/l"]),
    ("ng/L", &["ng/l"]),
    ("ug/dL", &["ug/dl"]),
    ("ng/dL", &["ng/dl"]),
    ("ng/mL", &["ng/ml"]),
    ("pg/mL", &["pg/ml"]),
    ("ug/mL", &["ug/ml"]),
    ("%", &["%", "percent"]),
    (
        "10*3/uL",
        &[
            "k/ul", "k/mm3", "10*3/ul", "10*3/mm3", "thou/ul", "thou/mm3", "/nl", "tsd/ul",
        ],
    ),
    ("10*9/L", &["10*9/l"]),
    (
        "10*6/uL",
        &[
            "m/ul",
            "m/mm3",
            "10*6/ul",
            "10*6/mm3",
            "mil/ul",
            "mill/ul",
            "million/ul",
            "/pl",
            "mio/ul",
        ],
    ),
    ("10*12/L", &["10*12/l"]),
    ("fL", &["fl"]),
    ("pg", &["pg"]),
    ("U/L", &["u/l"]),
    ("U/mL", &["u/ml"]),
    ("[IU]/L", &["iu/l", "[iu]/l"]),
    ("[IU]/mL", &["iu/ml", "[iu]/ml"]),
    ("m[IU]/L", &["miu/l", "m[iu]/l"]),
    ("m[IU]/mL", &["miu/ml", "m[iu]/ml"]),
    ("u[IU]/mL", &["uiu/ml", "u[iu]/ml"]),
    ("meq/L", &["meq/l"]),
    (
        "mL/min/{1.73_m2}",
        &[
            "ml/min/1.73m2",
            "ml/min/{1.73_m2}",
            "ml/min/1.73sqm",
            "ml/min/1.73sq.m",
            "ml/min/1.73",
            "ml/min/bsa",
        ],
    ),
    ("mL/min", &["ml/min"]),
    ("mm/h", &["mm/h", "mm/hr", "mm/1h", "mm/hour"]),
    ("s", &["s", "sec", "secs", "second", "seconds"]),
    ("{ratio}", &["ratio", "{ratio}"]),
    ("{cells}/uL", &["cells/ul", "{cells}/ul"]),
    ("/uL", &["/ul"]),
    ("{copies}/mL", &["copies/ml", "{copies}/ml"]),
    ("mg/g", &["mg/g"]),
    ("mg/mmol", &["mg/mmol"]),
    ("mosm/kg", &["mosm/kg"]),
    ("kg", &["kg"]),
    ("g", &["g"]),
    ("mg", &["mg"]),
    ("cm", &["cm"]),
    ("mL", &["ml"]),
    ("L", &["l"]),
    ("mm[Hg]", &["mmhg", "mm[hg]"]),
    ("/min", &["/min", "bpm", "beats/min"]),
    ("Cel", &["°c", "degc", "cel", "℃"]),
];
