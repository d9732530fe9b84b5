//! Business hours per route. Told the local weekday and time, never asks the clock.

use serde::{Deserialize, Serialize};

/// The English name of `weekday` (1 = Monday … 7 = Sunday).
pub fn weekday_name(weekday: u8) -> &'static str {
    const NAMES: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    NAMES
        .get(usize::from(weekday.saturating_sub(1)))
        .copied()
        .unwrap_or("the next working day")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    /// Days open, 1 = Monday … 7 = Sunday.
    pub days: Vec<u8>,
    /// "HH:MM", local time.
    pub open: String,
    pub close: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HoursError {
    #[error("`{0}` is not a time like 09:00")]
    Time(String),
    #[error("day {0} is not 1 (Monday) to 7 (Sunday)")]
    Day(u8),
}

fn minutes(s: &str) -> Result<u16, HoursError> {
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| HoursError::Time(s.into()))?;
    let (h, m): (u16, u16) = (
        h.parse().map_err(|_| HoursError::Time(s.into()))?,
        m.parse().map_err(|_| HoursError::Time(s.into()))?,
    );
    if h > 24 || m > 59 || (h == 24 && m > 0) {
        return Err(HoursError::Time(s.into()));
    }
    Ok(h * 60 + m)
}

impl Hours {
    pub fn validate(&self) -> Result<(), HoursError> {
        minutes(&self.open)?;
        minutes(&self.close)?;
        if let Some(d) = self.days.iter().find(|d| !(1..=7).contains(*d)) {
            return Err(HoursError::Day(*d));
        }
        Ok(())
    }

    /// Open on `weekday` (1 = Monday) at `minute` past local midnight.
    pub fn is_open(&self, weekday: u8, minute: u16) -> bool {
        let (Ok(open), Ok(close)) = (minutes(&self.open), minutes(&self.close)) else {
            return false;
        };
        self.days.contains(&weekday) && minute >= open && minute < close
    }

    /// When the team is next open after (`weekday`, `minute`): (weekday, "HH:MM").
    pub fn next_open(&self, weekday: u8, minute: u16) -> Option<(u8, String)> {
        let open = minutes(&self.open).ok()?;
        for ahead in 0..8u8 {
            let day = (weekday - 1 + ahead) % 7 + 1;
            if self.days.contains(&day) && (ahead > 0 || minute < open) {
                return Some((day, self.open.clone()));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn office() -> Hours {
        Hours {
            days: vec![1, 2, 3, 4, 5],
            open: "09:00".into(),
            close: "17:30".into(),
        }
    }

    #[test]
    fn open_and_closed() {
        let h = office();
        assert!(h.validate().is_ok());
        assert!(h.is_open(1, 9 * 60));
        assert!(!h.is_open(1, 17 * 60 + 30));
        assert!(!h.is_open(6, 12 * 60));
        assert_eq!(h.next_open(5, 18 * 60), Some((1, "09:00".into())));
        assert_eq!(h.next_open(2, 8 * 60), Some((2, "09:00".into())));
    }

    #[test]
    fn bad_hours_are_refused() {
        let mut h = office();
        h.open = "9am".into();
        assert!(h.validate().is_err());
        let mut h = office();
        h.days.push(8);
        assert_eq!(h.validate(), Err(HoursError::Day(8)));
    }
}
