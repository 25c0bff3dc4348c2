//! When `run` writes the daily summaries: a cron expression in a time zone,
//! at most once per day, surviving restarts.
//!
//! The scheduler is a pure function of the clock and a small state file
//! (`_bouncelens/state/summary-schedule.json`, holding the last day
//! summarised), so tests drive it with a clock of their own instead of
//! sleeping. After a restart the state file prevents a second run for a
//! day already done; a fire time missed while the job was down is caught
//! up at the next check.

use std::path::PathBuf;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::sink::commit::write_atomic;

/// Parses a five-field cron expression.
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    Cron::new(expr).parse().map_err(|e| {
        format!("{expr:?} is not a cron expression (`minute hour day month weekday`, e.g. `0 1 * * *`): {e}")
    })
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct ScheduleState {
    /// The last day whose summaries were written by the scheduler.
    last_day: Option<NaiveDate>,
}

/// Decides when the daily summary is due.
pub struct DailySchedule {
    cron: Cron,
    zone: Tz,
    state_file: PathBuf,
    state: ScheduleState,
}

impl DailySchedule {
    pub fn new(expr: &str, zone: Tz, state_file: PathBuf) -> Result<Self, String> {
        let cron = parse_cron(expr)?;
        let state = std::fs::read_to_string(&state_file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Ok(Self { cron, zone, state_file, state })
    }

    /// The day to summarise if a fire time has passed at `now` that has not
    /// been acted on: the day before the latest fire time, in the zone.
    pub fn due(&self, now: DateTime<Utc>) -> Option<NaiveDate> {
        let local_now = now.with_timezone(&self.zone);
        // The latest fire time at or before now, within the last two days.
        let start = local_now - Duration::days(2);
        let mut latest = None;
        for t in self.cron.iter_after(start) {
            if t > local_now {
                break;
            }
            latest = Some(t);
        }
        let day = latest?.date_naive().pred_opt()?;
        match self.state.last_day {
            Some(done) if done >= day => None,
            _ => Some(day),
        }
    }

    /// Records that `day` was summarised.
    pub fn mark_done(&mut self, day: NaiveDate) -> std::io::Result<()> {
        self.state.last_day = Some(day);
        let bytes = serde_json::to_vec(&self.state).expect("serializable");
        write_atomic(&self.state_file, &bytes).map_err(std::io::Error::other)
    }

    /// The next fire time after `now`, for logging.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&now.with_timezone(&self.zone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(zone: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        zone.with_ymd_and_hms(y, m, d, h, min, 0).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn fires_once_per_day_in_the_configured_zone() {
        let dir = tempfile::tempdir().unwrap();
        let zone: Tz = "Asia/Shanghai".parse().unwrap();
        let file = dir.path().join("s.json");
        let mut s = DailySchedule::new("0 1 * * *", zone, file.clone()).unwrap();
        // 00:59 Shanghai on Dec 3: yesterday's fire time (Dec 2 01:00) is
        // due for Dec 1 on a fresh state.
        let before = at(zone, 2026, 12, 3, 0, 59);
        assert_eq!(s.due(before), NaiveDate::from_ymd_opt(2026, 12, 1));
        s.mark_done(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()).unwrap();
        assert_eq!(s.due(before), None);
        // 01:00 Shanghai is 17:00 UTC the day before: due for Dec 2.
        let fire = at(zone, 2026, 12, 3, 1, 0);
        assert_eq!(fire, Utc.with_ymd_and_hms(2026, 12, 2, 17, 0, 0).unwrap());
        assert_eq!(s.due(fire), NaiveDate::from_ymd_opt(2026, 12, 2));
        s.mark_done(NaiveDate::from_ymd_opt(2026, 12, 2).unwrap()).unwrap();
        // Later the same day: nothing more.
        assert_eq!(s.due(at(zone, 2026, 12, 3, 23, 59)), None);
        // A restart reads the state file: no second run for Dec 2.
        let restarted = DailySchedule::new("0 1 * * *", zone, file).unwrap();
        assert_eq!(restarted.due(at(zone, 2026, 12, 3, 12, 0)), None);
        // The next day fires again.
        assert_eq!(
            restarted.due(at(zone, 2026, 12, 4, 1, 0)),
            NaiveDate::from_ymd_opt(2026, 12, 3)
        );
    }

    #[test]
    fn a_bad_expression_is_refused_with_an_example() {
        let err = parse_cron("every day").unwrap_err();
        assert!(err.contains("0 1 * * *"), "{err}");
    }
}
