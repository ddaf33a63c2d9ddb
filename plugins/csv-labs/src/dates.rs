//! Reading the dates labs and portals write, and deciding a column's day/month order.

/// How the user said to read dates like 03/05/2024 (the host passes it as the media-type
/// parameter `dates`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateOrder {
    Ymd,
    Mdy,
    Dmy,
}

impl DateOrder {
    pub fn from_parameter(value: &str) -> Option<DateOrder> {
        match value.trim().trim_matches('"').to_ascii_lowercase().as_str() {
            "ymd" => Some(DateOrder::Ymd),
            "mdy" => Some(DateOrder::Mdy),
            "dmy" => Some(DateOrder::Dmy),
            _ => None,
        }
    }
}

/// Which of the two leading parts of a slashed date is the month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayMonth {
    /// 03/05/2024 is March 5.
    MonthFirst,
    /// 03/05/2024 is 3 May.
    DayFirst,
}

impl DayMonth {
    fn describe(self) -> &'static str {
        match self {
            DayMonth::MonthFirst => "month/day",
            DayMonth::DayFirst => "day/month",
        }
    }
}

/// A date as written, before the day/month order is known.
#[derive(Debug, Clone, PartialEq)]
pub struct RawDate {
    pub parts: DateParts,
    pub time: Option<Time>,
    /// `Z` or `+hh:mm`; `None` when the text names no zone (or one Fasten cannot place).
    pub zone: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DateParts {
    /// Year, month, day: 2024-03-05, 2024/03/05, 2024.03.05.
    Known { year: u32, month: u32, day: u32 },
    /// 03/05/2024 or 03-05-2024: which of `first` and `second` is the month depends on the
    /// column.
    Slashed { first: u32, second: u32, year: u32 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Time {
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// Digits after the decimal point of the seconds, as written.
    pub fraction: String,
}

/// A date resolved for FHIR.
#[derive(Debug, Clone, PartialEq)]
pub struct FhirDate {
    /// `effectiveDateTime`: the date alone unless the zone is known, because FHIR allows a time
    /// only with a zone.
    pub effective: String,
    /// Everything the text said, time included, so two results of one day at different times
    /// stay apart.
    pub identity: String,
}

/// Reads ISO dates (with a time and zone or not), slashed dates, and dotted day.month.year
/// dates, each with an optional time (24-hour or with AM/PM).
pub fn parse_raw(text: &str) -> Option<RawDate> {
    let text = text.trim();
    let date_len = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '/' | '.')))
        .unwrap_or(text.len());
    let (date_text, rest) = text.split_at(date_len);
    let parts = parse_date_part(date_text)?;
    let rest = rest.trim_start_matches(|c: char| c == 'T' || c == ',' || c.is_whitespace());
    let (time, zone) = if rest.is_empty() {
        (None, None)
    } else {
        let (time, zone) = parse_time_part(rest)?;
        (Some(time), zone)
    };
    Some(RawDate { parts, time, zone })
}

fn parse_date_part(text: &str) -> Option<DateParts> {
    let separator = text.chars().find(|c| matches!(c, '-' | '/' | '.'))?;
    let pieces: Vec<&str> = text.split(separator).collect();
    let [a, b, c] = pieces.as_slice() else {
        return None;
    };
    if ![a, b, c].iter().all(|p| is_digits(p)) {
        return None;
    }
    let number = |p: &str| p.parse::<u32>().ok();
    if a.len() == 4 && b.len() <= 2 && c.len() <= 2 {
        return Some(DateParts::Known {
            year: number(a)?,
            month: number(b)?,
            day: number(c)?,
        });
    }
    if a.len() > 2 || b.len() > 2 || c.len() != 4 {
        return None;
    }
    let (first, second, year) = (number(a)?, number(b)?, number(c)?);
    if separator == '.' {
        // 05.03.2024 is day.month.year wherever dots are used.
        return Some(DateParts::Known {
            year,
            month: second,
            day: first,
        });
    }
    Some(DateParts::Slashed {
        first,
        second,
        year,
    })
}

fn parse_time_part(text: &str) -> Option<(Time, Option<String>)> {
    let digits_end = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let hour_len = digits_end(text);
    if hour_len == 0 || hour_len > 2 {
        return None;
    }
    let hour: u32 = text[..hour_len].parse().ok()?;
    let rest = text[hour_len..].strip_prefix(':')?;
    let minute_len = digits_end(rest);
    if minute_len != 2 {
        return None;
    }
    let minute: u32 = rest[..2].parse().ok()?;
    let mut rest = &rest[2..];
    let mut second = 0;
    let mut fraction = String::new();
    if let Some(after) = rest.strip_prefix(':') {
        if digits_end(after) != 2 {
            return None;
        }
        second = after[..2].parse().ok()?;
        rest = &after[2..];
        if let Some(after) = rest.strip_prefix('.') {
            let len = digits_end(after);
            if len == 0 {
                return None;
            }
            fraction = after[..len].to_string();
            rest = &after[len..];
        }
    }
    let mut rest = rest.trim_start();
    let lower = rest.to_ascii_lowercase();
    let half = ["am", "a.m.", "pm", "p.m."]
        .iter()
        .find(|h| lower.starts_with(*h))
        .copied();
    let hour = match half {
        Some(h) => {
            rest = rest[h.len()..].trim_start();
            if !(1..=12).contains(&hour) {
                return None;
            }
            match (h.starts_with('p'), hour) {
                (false, 12) => 0,
                (false, h) => h,
                (true, 12) => 12,
                (true, h) => h + 12,
            }
        }
        None => hour,
    };
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let zone = parse_zone(rest)?;
    Some((
        Time {
            hour,
            minute,
            second,
            fraction,
        },
        zone,
    ))
}

/// `Some(None)`: no zone, or a zone name such as "EST" that does not say its offset reliably;
/// `None`: not a zone at all, so not a date-time Fasten can read.
fn parse_zone(text: &str) -> Option<Option<String>> {
    let text = text.trim();
    if text.is_empty() {
        return Some(None);
    }
    if text.eq_ignore_ascii_case("z")
        || text.eq_ignore_ascii_case("utc")
        || text.eq_ignore_ascii_case("gmt")
    {
        return Some(Some("Z".into()));
    }
    let offset = text
        .strip_prefix("UTC")
        .or_else(|| text.strip_prefix("GMT"))
        .unwrap_or(text);
    if let Some(sign) = offset.chars().next().filter(|c| matches!(c, '+' | '-')) {
        let digits: String = offset[1..].chars().filter(|c| *c != ':').collect();
        if !is_digits(&digits) || !matches!(digits.len(), 2 | 4) {
            return None;
        }
        let hours: u32 = digits[..2].parse().ok()?;
        let minutes: u32 = if digits.len() == 4 {
            digits[2..].parse().ok()?
        } else {
            0
        };
        if hours > 14 || minutes > 59 {
            return None;
        }
        return Some(Some(format!("{sign}{hours:02}:{minutes:02}")));
    }
    if (2..=5).contains(&text.len()) && text.chars().all(|c| c.is_ascii_uppercase()) {
        return Some(None);
    }
    None
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Turns a date as written into FHIR's form, given the column's day/month order; the error says
/// what is wrong with it.
pub fn resolve(raw: &RawDate, order: Option<DayMonth>) -> Result<FhirDate, &'static str> {
    let (year, month, day) = match raw.parts {
        DateParts::Known { year, month, day } => (year, month, day),
        DateParts::Slashed {
            first,
            second,
            year,
        } => match order {
            Some(DayMonth::MonthFirst) => (year, first, second),
            Some(DayMonth::DayFirst) => (year, second, first),
            None => return Err("its day/month order is unknown"),
        },
    };
    if !(1..=12).contains(&month) {
        return Err("it has no month");
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err("that day does not exist");
    }
    if !(1800..=2200).contains(&year) {
        return Err("the year is implausible");
    }
    let date = format!("{year:04}-{month:02}-{day:02}");
    let Some(time) = &raw.time else {
        return Ok(FhirDate {
            effective: date.clone(),
            identity: date,
        });
    };
    let fraction = if time.fraction.is_empty() {
        String::new()
    } else {
        format!(".{}", time.fraction)
    };
    let local = format!(
        "{date}T{:02}:{:02}:{:02}{fraction}",
        time.hour, time.minute, time.second
    );
    Ok(match &raw.zone {
        Some(zone) => FhirDate {
            effective: format!("{local}{zone}"),
            identity: format!("{local}{zone}"),
        },
        None => FhirDate {
            effective: date,
            identity: local,
        },
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        _ => 28,
    }
}

/// What a column's slashed dates say about their order, gathered over the whole column.
#[derive(Debug, Default)]
pub struct OrderEvidence {
    /// A date whose first part is over 12, so the first part is the day.
    day_first: Option<(u64, String)>,
    /// A date whose second part is over 12, so the first part is the month.
    month_first: Option<(u64, String)>,
    /// A slashed date that could be read both ways.
    ambiguous: Option<(u64, String)>,
}

impl OrderEvidence {
    pub fn add(&mut self, line: u64, text: &str) {
        let Some(RawDate {
            parts: DateParts::Slashed { first, second, .. },
            ..
        }) = parse_raw(text)
        else {
            return;
        };
        let example = || Some((line, text.trim().to_string()));
        match (first > 12, second > 12) {
            (true, false) if self.day_first.is_none() => self.day_first = example(),
            (false, true) if self.month_first.is_none() => self.month_first = example(),
            (false, false) if self.ambiguous.is_none() => self.ambiguous = example(),
            _ => {}
        }
    }

    /// The column's order: what its dates prove, else what the user chose. `Ok((order,
    /// warning))`, where the warning says the user's choice was overruled by the dates.
    pub fn decide(
        &self,
        column: &str,
        chosen: Option<DateOrder>,
    ) -> Result<(Option<DayMonth>, Option<String>), String> {
        let chosen = match chosen {
            Some(DateOrder::Mdy) => Some(DayMonth::MonthFirst),
            Some(DateOrder::Dmy) => Some(DayMonth::DayFirst),
            Some(DateOrder::Ymd) | None => None,
        };
        let proven = match (&self.day_first, &self.month_first) {
            (Some((day_line, day_text)), Some((month_line, month_text))) => {
                return Err(format!(
                    "The dates in column \"{column}\" mix day/month and month/day: row \
                     {day_line} has {day_text} but row {month_line} has {month_text}. Write \
                     every date of the column the same way and import again."
                ));
            }
            (Some(evidence), None) => Some((DayMonth::DayFirst, evidence)),
            (None, Some(evidence)) => Some((DayMonth::MonthFirst, evidence)),
            (None, None) => None,
        };
        match (proven, chosen) {
            (Some((order, (line, text))), Some(choice)) if choice != order => Ok((
                Some(order),
                Some(format!(
                    "You chose {} dates, but row {line} of column \"{column}\" has {text}, \
                     which can only be {}; the dates were read as {}.",
                    choice.describe(),
                    order.describe(),
                    order.describe()
                )),
            )),
            (Some((order, _)), _) => Ok((Some(order), None)),
            (None, Some(choice)) => Ok((Some(choice), None)),
            (None, None) => match &self.ambiguous {
                Some((line, text)) => Err(format!(
                    "{AMBIGUOUS_MARKER} The dates in column \"{column}\" could be month/day or \
                     day/month (for example {text} on row {line}). Choose the date order and \
                     import again."
                )),
                None => Ok((None, None)),
            },
        }
    }
}

/// The start of the message the host looks for to offer the choice of date order.
pub const AMBIGUOUS_MARKER: &str = "Ambiguous dates:";
