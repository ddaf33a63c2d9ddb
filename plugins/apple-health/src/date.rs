//! Apple's timestamps ("2016-04-18 08:25:32 -0700") read from bytes without allocating.

use std::fmt::Write as _;

/// A local time as Apple wrote it, with its UTC offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AppleDate {
    pub(crate) year: u16,
    pub(crate) month: u8,
    pub(crate) day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    offset_minutes: i16,
}

/// A calendar day as a sortable number, 20160418.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Day(u32);

impl Day {
    /// "2016-04-18".
    pub(crate) fn fhir(self) -> String {
        let (y, m, d) = (self.0 / 10_000, self.0 / 100 % 100, self.0 % 100);
        format!("{y:04}-{m:02}-{d:02}")
    }
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
}

impl AppleDate {
    /// "YYYY-MM-DD HH:MM:SS +HHMM"; anything else is `None`.
    pub(crate) fn parse(text: &[u8]) -> Option<AppleDate> {
        if text.len() != 25
            || text[4] != b'-'
            || text[7] != b'-'
            || text[10] != b' '
            || text[13] != b':'
            || text[16] != b':'
            || text[19] != b' '
        {
            return None;
        }
        let sign = match text[20] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let date = AppleDate {
            year: digits(&text[0..4])? as u16,
            month: digits(&text[5..7])? as u8,
            day: digits(&text[8..10])? as u8,
            hour: digits(&text[11..13])? as u8,
            minute: digits(&text[14..16])? as u8,
            second: digits(&text[17..19])? as u8,
            offset_minutes: sign * (digits(&text[21..23])? * 60 + digits(&text[23..25])?) as i16,
        };
        let valid = (1..=12).contains(&date.month)
            && (1..=days_in_month(date.year, date.month)).contains(&date.day)
            && date.hour < 24
            && date.minute < 60
            && date.second < 61
            && date.offset_minutes.abs() < 24 * 60;
        valid.then_some(date)
    }

    pub(crate) fn day(self) -> Day {
        Day(u32::from(self.year) * 10_000 + u32::from(self.month) * 100 + u32::from(self.day))
    }

    /// Seconds since 1970 in UTC, to order instants written with different offsets.
    pub(crate) fn instant(self) -> i64 {
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.offset_minutes) * 60
    }

    /// "2016-04-18T08:25:32-07:00".
    pub(crate) fn fhir(self) -> String {
        let mut out = String::with_capacity(25);
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let offset = self.offset_minutes.unsigned_abs();
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            offset / 60,
            offset % 60
        );
        out
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apple_dates_become_fhir_date_times_with_their_offset() {
        let date = AppleDate::parse(b"2016-04-18 08:25:32 -0700").unwrap();
        assert_eq!(date.fhir(), "2016-04-18T08:25:32-07:00");
        assert_eq!(date.day().fhir(), "2016-04-18");
        let east = AppleDate::parse(b"2021-12-31 23:59:59 +0530").unwrap();
        assert_eq!(east.fhir(), "2021-12-31T23:59:59+05:30");
    }

    #[test]
    fn instants_compare_across_offsets() {
        let utc = AppleDate::parse(b"1970-01-02 00:00:00 +0000").unwrap();
        assert_eq!(utc.instant(), 86_400);
        let pacific = AppleDate::parse(b"2016-04-18 08:25:32 -0700").unwrap();
        let same_in_utc = AppleDate::parse(b"2016-04-18 15:25:32 +0000").unwrap();
        assert_eq!(pacific.instant(), same_in_utc.instant());
        assert_eq!(pacific.instant(), 1_460_993_132);
    }

    #[test]
    fn malformed_dates_are_refused() {
        for bad in [
            &b"2016-04-18T08:25:32-07:00"[..],
            b"2016-04-18 08:25:32",
            b"2016-02-30 08:25:32 -0700",
            b"2016-13-01 08:25:32 -0700",
            b"2016-04-18 25:25:32 -0700",
            b"20x6-04-18 08:25:32 -0700",
            b"2016-04-18 08:25:32 *0700",
        ] {
            assert_eq!(
                AppleDate::parse(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(AppleDate::parse(b"2016-02-29 08:25:32 -0700").is_some());
    }
}
