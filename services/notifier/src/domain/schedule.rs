//! When failed deliveries are tried again (DESIGN.md §9).

use chrono::TimeDelta;

/// The delays after each failed attempt; after the last, the delivery has
/// failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<TimeDelta>);

impl Default for RetrySchedule {
    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over about
    /// 27.6 hours.
    fn default() -> Self {
        Self(vec![
            TimeDelta::seconds(5),
            TimeDelta::minutes(5),
            TimeDelta::minutes(30),
            TimeDelta::hours(2),
            TimeDelta::hours(5),
            TimeDelta::hours(10),
            TimeDelta::hours(10),
        ])
    }
}

impl RetrySchedule {
    /// Parses `5s,5m,30m,2h` (units ms, s, m, h); 1 to 20 delays.
    pub fn parse(text: &str) -> Result<Self, String> {
        let delays = text
            .split(',')
            .map(str::trim)
            .map(|part| {
                let (digits, unit): (String, String) = part.chars().partition(char::is_ascii_digit);
                let n: i64 = digits
                    .parse()
                    .map_err(|_| format!("{part:?} is not a number with a unit"))?;
                match unit.as_str() {
                    "ms" => Ok(TimeDelta::milliseconds(n)),
                    "s" => Ok(TimeDelta::seconds(n)),
                    "m" => Ok(TimeDelta::minutes(n)),
                    "h" => Ok(TimeDelta::hours(n)),
                    _ => Err(format!("{part:?}: the unit must be ms, s, m or h")),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() || delays.len() > 20 {
            return Err("between 1 and 20 delays".into());
        }
        Ok(Self(delays))
    }

    /// The delay after failed attempt number `attempts` (1-based), or
    /// `None` when that was the last attempt.
    pub fn after(&self, attempts: u32) -> Option<TimeDelta> {
        let index = usize::try_from(attempts).ok()?.checked_sub(1)?;
        self.0.get(index).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_makes_eight_attempts() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.after(1), Some(TimeDelta::seconds(5)));
        assert_eq!(schedule.after(7), Some(TimeDelta::hours(10)));
        assert_eq!(schedule.after(8), None);
        assert_eq!(schedule.after(0), None);
    }

    #[test]
    fn schedules_parse_with_units_and_refuse_anything_else() {
        let parsed = RetrySchedule::parse("100ms, 1s,2m,1h").unwrap();
        assert_eq!(parsed.after(1), Some(TimeDelta::milliseconds(100)));
        assert_eq!(parsed.after(4), Some(TimeDelta::hours(1)));
        for bad in ["", "5", "5d", "s", "1s,,2s"] {
            assert!(RetrySchedule::parse(bad).is_err(), "{bad:?}");
        }
    }
}
