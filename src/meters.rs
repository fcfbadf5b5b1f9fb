//! What the meter pages show, computed from a series' readings: min/max-preserving
//! downsampling, consumption per UTC day of a cumulative counter, the usual interval and the
//! ok / error / stale status, and the CSV export. Pure: no I/O and no clock (the time "now"
//! is passed in).

use crate::event::rfc3339_millis;

const DAY_MS: i64 = 86_400_000;

/// One reading: its time, its value (none on an error round), the device's error text.
#[derive(Clone, Debug, PartialEq)]
pub struct Round {
    pub ms: i64,
    pub value: Option<f64>,
    pub status: Option<String>,
}

/// At most `max_points` of `points` (sorted by time): the minimum and the maximum of each of
/// `max_points / 2` equal time buckets, in time order, so peaks and dips survive. Returns the
/// points and whether any were dropped.
pub fn downsample(points: &[(i64, f64)], max_points: usize) -> (Vec<(i64, f64)>, bool) {
    let buckets = (max_points / 2).max(1);
    let (Some(first), Some(last)) = (points.first(), points.last()) else { return (Vec::new(), false) };
    if points.len() <= max_points {
        return (points.to_vec(), false);
    }
    let span = (last.0 as f64 - first.0 as f64).max(1.0);
    let bucket_of = |ms: i64| (((ms as f64 - first.0 as f64) / span * buckets as f64) as usize).min(buckets - 1);
    let mut out = Vec::with_capacity(buckets * 2);
    let mut start = 0;
    while start < points.len() {
        let bucket = bucket_of(points[start].0);
        let len = points[start..].iter().take_while(|p| bucket_of(p.0) == bucket).count();
        push_extremes(&points[start..start + len], &mut out);
        start += len;
    }
    (out, true)
}

/// The minimum and maximum of `bucket`, in time order (one point when they are the same).
fn push_extremes(bucket: &[(i64, f64)], out: &mut Vec<(i64, f64)>) {
    let (mut lo, mut hi) = (0, 0);
    for (i, p) in bucket.iter().enumerate() {
        if p.1 < bucket[lo].1 {
            lo = i;
        }
        if p.1 > bucket[hi].1 {
            hi = i;
        }
    }
    let (a, b) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    out.push(bucket[a]);
    if b != a {
        out.push(bucket[b]);
    }
}

/// One UTC day of a counter.
#[derive(Clone, Debug, PartialEq)]
pub struct Day {
    /// `2026-11-30`.
    pub day: String,
    pub consumption: f64,
    /// Good readings that day.
    pub readings: u64,
}

/// Consumption per UTC day: the differences between consecutive good readings, counted on
/// the day of the later one. Error rounds (no value, or an error text) are skipped; a drop
/// is a reset (a new meter, a counter that wrapped) and counts from the new value. `before`
/// is the last good value before the first round (the first difference counts from it).
pub fn daily(rounds: &[Round], before: Option<f64>) -> Vec<Day> {
    let good = rounds
        .iter()
        .filter(|r| r.status.is_none())
        .filter_map(|r| r.value.map(|v| Stretch { ms: r.ms, good: 1, first: v, last: v, used: 0.0 }));
    daily_of(good, before)
}

/// Consecutive good readings of one UTC day in brief: one reading, or an hour's summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Stretch {
    /// Its time (any time of its day).
    pub ms: i64,
    /// How many good readings.
    pub good: u64,
    pub first: f64,
    pub last: f64,
    /// The consumption between its first and its last reading.
    pub used: f64,
}

/// [`daily`] over stretches in time order: each adds its own consumption and the step from
/// the last good value before it to its first.
pub fn daily_of(stretches: impl IntoIterator<Item = Stretch>, before: Option<f64>) -> Vec<Day> {
    let mut days: Vec<(i64, f64, u64)> = Vec::new();
    let mut previous = before;
    for s in stretches.into_iter().filter(|s| s.good > 0) {
        let used = s.used + previous.map_or(0.0, |p| step(p, s.first));
        previous = Some(s.last);
        let day = s.ms.div_euclid(DAY_MS);
        match days.last_mut() {
            Some(last) if last.0 == day => {
                last.1 += used;
                last.2 += s.good;
            }
            _ => days.push((day, used, s.good)),
        }
    }
    days.into_iter().map(|(day, consumption, readings)| Day { day: date(day), consumption, readings }).collect()
}

/// What a counter used from `previous` to `value`: the difference, or after a reset (a
/// drop) the new value.
fn step(previous: f64, value: f64) -> f64 {
    if value >= previous { value - previous } else { value }
}

/// A run of readings in brief (an hour of a series, kept in `readings_hours`): what the plot
/// and the consumption per day need of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Readings with a value (on the plot, error rounds with a value too).
    pub values: u64,
    /// The first, lowest, highest and last of them (the first of equals).
    pub first: (i64, f64),
    pub min: (i64, f64),
    pub max: (i64, f64),
    pub last: (i64, f64),
    /// Its good readings (a value, no error text) as a [`Stretch`] (`good` 0: none).
    pub stretch: Stretch,
}

/// The summary of `rounds` (in time order); none when none has a value.
pub fn summarize(rounds: &[Round]) -> Option<Summary> {
    let mut points = rounds.iter().filter_map(|r| r.value.map(|v| (r.ms, v)));
    let first = points.next()?;
    let mut s = Summary { values: 1, first, min: first, max: first, last: first, stretch: stretch(rounds)? };
    for p in points {
        s.values += 1;
        if p.1 < s.min.1 {
            s.min = p;
        }
        if p.1 > s.max.1 {
            s.max = p;
        }
        s.last = p;
    }
    Some(s)
}

/// The summary of `a`'s readings followed by `b`'s (every one of `b` after every one of `a`).
pub fn merge(a: &Summary, b: &Summary) -> Summary {
    let (x, y) = (&a.stretch, &b.stretch);
    let stretch = match (x.good, y.good) {
        (_, 0) => x.clone(),
        (0, _) => Stretch { ms: x.ms, ..y.clone() },
        _ => Stretch {
            ms: x.ms,
            good: x.good + y.good,
            first: x.first,
            last: y.last,
            used: x.used + step(x.last, y.first) + y.used,
        },
    };
    Summary {
        values: a.values + b.values,
        first: a.first,
        min: if b.min.1 < a.min.1 { b.min } else { a.min },
        max: if b.max.1 > a.max.1 { b.max } else { a.max },
        last: b.last,
        stretch,
    }
}

/// The summary of `kept`'s readings with `new`'s placed among them: `new` is a run of
/// readings in time order that no reading of `kept` falls within; `before` and `after` are
/// the good values of `kept` just before and just after that run (none at its edges).
pub fn splice(kept: &Summary, new: &Summary, before: Option<f64>, after: Option<f64>) -> Summary {
    let (x, y) = (&kept.stretch, &new.stretch);
    let stretch = match (x.good, y.good) {
        (_, 0) => x.clone(),
        (0, _) => Stretch { ms: x.ms, ..y.clone() },
        _ => {
            let joins = match (before, after) {
                (Some(p), Some(q)) => step(p, y.first) + step(y.last, q) - step(p, q),
                (Some(p), None) => step(p, y.first),
                (None, Some(q)) => step(y.last, q),
                (None, None) => 0.0,
            };
            Stretch {
                ms: x.ms,
                good: x.good + y.good,
                first: if before.is_some() { x.first } else { y.first },
                last: if after.is_some() { x.last } else { y.last },
                used: x.used + y.used + joins,
            }
        }
    };
    // Of equal values the earlier one counts, as in [`summarize`].
    let earlier = |a: (i64, f64), b: (i64, f64)| a.1 == b.1 && a.0 < b.0;
    Summary {
        values: kept.values + new.values,
        first: if new.first.0 < kept.first.0 { new.first } else { kept.first },
        min: if new.min.1 < kept.min.1 || earlier(new.min, kept.min) { new.min } else { kept.min },
        max: if new.max.1 > kept.max.1 || earlier(new.max, kept.max) { new.max } else { kept.max },
        last: if new.last.0 >= kept.last.0 { new.last } else { kept.last },
        stretch,
    }
}

fn stretch(rounds: &[Round]) -> Option<Stretch> {
    let ms = rounds.first()?.ms;
    let good: Vec<f64> = rounds.iter().filter(|r| r.status.is_none()).filter_map(|r| r.value).collect();
    let (first, last) = (good.first().copied().unwrap_or(0.0), good.last().copied().unwrap_or(0.0));
    let used = good.windows(2).fold(0.0, |sum, w| sum + step(w[0], w[1]));
    Some(Stretch { ms, good: good.len() as u64, first, last, used })
}

/// The plot from `summaries` (hours, and single readings at a range's edges, in time order):
/// `(points, total)` when there are more than `max_points` values and each of the
/// `max_points / 2` buckets spans at least an hour, so the hour level is fine enough; none
/// otherwise (the caller reads the readings themselves).
pub fn plot_coarse(summaries: &[Summary], max_points: usize, hour_ms: i64) -> Option<(Vec<(i64, f64)>, u64)> {
    let total: u64 = summaries.iter().map(|s| s.values).sum();
    let span = summaries.last()?.last.0.saturating_sub(summaries.first()?.first.0);
    let buckets = (max_points / 2).max(1) as i64;
    (total > max_points as u64 && span / buckets >= hour_ms).then(|| (coarse(summaries, max_points), total))
}

/// The plot's points from hour summaries (in time order), at most `max_points`: each hour's
/// first, lowest, highest and last reading are the candidates, downsampled as
/// [`downsample`] does. Every point is a real reading, and each hour's extremes are kept.
pub fn coarse(hours: &[Summary], max_points: usize) -> Vec<(i64, f64)> {
    let mut candidates = Vec::with_capacity(hours.len() * 4);
    for h in hours {
        let mut four = [h.first, h.min, h.max, h.last];
        four.sort_by_key(|p| p.0);
        for p in four {
            if candidates.last() != Some(&p) {
                candidates.push(p);
            }
        }
    }
    downsample(&candidates, max_points).0
}

fn date(day: i64) -> String {
    rfc3339_millis(day * DAY_MS).get(..10).unwrap_or_default().to_owned()
}

/// A series' status badge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// The device's last round carried an error text.
    Error,
    /// No reading for longer than three of its usual intervals.
    Stale,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Error => "error",
            Health::Stale => "stale",
        }
    }
}

/// The usual interval in seconds: the median gap between the distinct reading times
/// `recent` (any order); none with fewer than two.
pub fn interval_s(recent: &[i64]) -> Option<f64> {
    let mut times = recent.to_vec();
    times.sort_unstable();
    times.dedup();
    let mut gaps: Vec<i64> = times.windows(2).map(|w| w[1].saturating_sub(w[0])).collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_unstable();
    let mid = gaps.len() / 2;
    let median = if gaps.len() % 2 == 1 { gaps[mid] as f64 } else { (gaps[mid - 1] as f64 + gaps[mid] as f64) / 2.0 };
    Some(median / 1000.0)
}

/// Error when the last round said so; stale when nothing came for more than three usual
/// intervals before `now_ms`; ok otherwise.
pub fn health(status: Option<&str>, last_ms: i64, interval_s: Option<f64>, now_ms: i64) -> Health {
    if status.is_some() {
        return Health::Error;
    }
    match interval_s {
        Some(i) if now_ms.saturating_sub(last_ms) as f64 > 3.0 * i * 1000.0 => Health::Stale,
        _ => Health::Ok,
    }
}

/// The CSV export: `time,value,unit,status`, one line per reading (CRLF), the status `ok` or
/// the device's error text; text cells that a spreadsheet would run as a formula are
/// prefixed with `'`.
pub fn csv(rounds: &[Round], unit: Option<&str>) -> String {
    let mut out = String::from("time,value,unit,status\r\n");
    for r in rounds {
        let value = r.value.map(|v| v.to_string()).unwrap_or_default();
        let status = r.status.as_deref().unwrap_or("ok");
        let cells = [rfc3339_millis(r.ms), value, cell(unit.unwrap_or_default()), cell(status)];
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

fn cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(ms: i64, value: Option<f64>, status: Option<&str>) -> Round {
        Round { ms, value, status: status.map(str::to_owned) }
    }

    #[test]
    fn downsampling_keeps_each_buckets_extremes_and_never_exceeds_the_cap() {
        let points: Vec<(i64, f64)> = (0..100_000).map(|i| (i * 300_000, (i % 97) as f64)).collect();
        let (mut with_spike, max) = (points.clone(), 1000);
        with_spike[54_321].1 = 1e6;
        let (out, dropped) = downsample(&with_spike, max);
        assert!(dropped && out.len() <= max && out.len() > max / 2, "{}", out.len());
        assert!(out.contains(&(54_321 * 300_000, 1e6)), "the spike survives");
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "in time order");
        assert_eq!(downsample(&points[..10], max), (points[..10].to_vec(), false));
    }

    #[test]
    fn daily_consumption_skips_error_rounds_and_counts_a_reset_from_the_new_value() {
        let day = DAY_MS;
        let rounds = [
            round(0, Some(100.0), None),
            round(3_600_000, Some(101.5), None),
            round(7_200_000, None, Some("Rate too high")),
            round(7_300_000, Some(999.0), Some("Neg. Rate")),
            round(day + 1, Some(102.25), None),
            round(day + 2, Some(2.0), None),
            round(day + 3, Some(2.5), None),
        ];
        let days = daily(&rounds, None);
        assert_eq!(
            days,
            [
                Day { day: "1970-01-01".into(), consumption: 1.5, readings: 2 },
                Day { day: "1970-01-02".into(), consumption: 0.75 + 2.0 + 0.5, readings: 3 },
            ]
        );
        assert_eq!(daily(&rounds[1..2], Some(100.0))[0].consumption, 1.5);
    }

    /// Rounds an hour apart in quarters (exact sums), with error rounds and a reset.
    fn hourly_rounds() -> Vec<Round> {
        let mut value = 50.0;
        (0..500_i64)
            .map(|i| {
                value = if i == 250 { 1.0 } else { value + 0.25 * (i % 4) as f64 };
                match i % 37 {
                    5 => round(i * 600_000, None, Some("Rate too high")),
                    6 => round(i * 600_000, Some(1e9), Some("Neg. Rate")),
                    _ => round(i * 600_000, Some(value), None),
                }
            })
            .collect()
    }

    #[test]
    fn hour_summaries_give_the_consumption_per_day_of_the_readings_themselves() {
        let rounds = hourly_rounds();
        let hours: Vec<Summary> =
            rounds.chunk_by(|a, b| a.ms / 3_600_000 == b.ms / 3_600_000).filter_map(summarize).collect();
        assert_eq!(hours.len(), 500 / 6 + 1);
        let by_hours = daily_of(hours.iter().map(|h| h.stretch.clone()), Some(49.0));
        assert_eq!(by_hours, daily(&rounds, Some(49.0)));
        assert_eq!(by_hours.len(), 4);
        assert_eq!(hours.iter().map(|h| h.values).sum::<u64>(), 500 - 14, "error rounds with a value are plotted");
    }

    #[test]
    fn a_summary_extended_by_later_readings_is_the_summary_of_them_all() {
        let rounds = hourly_rounds();
        for cut in [1, 5, 6, 7, 40, 250, 251, 499] {
            let (a, b) = rounds.split_at(cut);
            let merged = merge(&summarize(a).unwrap(), &summarize(b).unwrap());
            assert_eq!(merged, summarize(&rounds).unwrap(), "cut at {cut}");
        }
    }

    #[test]
    fn readings_placed_among_earlier_ones_give_the_summary_of_them_all() {
        let rounds = hourly_rounds();
        let good =
            |rs: &[Round]| -> Vec<f64> { rs.iter().filter(|r| r.status.is_none()).filter_map(|r| r.value).collect() };
        for (from, to) in [(0, 1), (0, 7), (5, 6), (5, 7), (40, 41), (249, 252), (300, 499), (1, 498), (36, 38)] {
            let run = &rounds[from..to];
            let kept: Vec<Round> = rounds[..from].iter().chain(&rounds[to..]).cloned().collect();
            let (before, after) = (good(&rounds[..from]).last().copied(), good(&rounds[to..]).first().copied());
            let Some(new) = summarize(run) else { continue };
            let spliced = splice(&summarize(&kept).unwrap(), &new, before, after);
            let all = summarize(&rounds).unwrap();
            assert_eq!(
                Summary { stretch: Stretch { ms: all.stretch.ms, ..spliced.stretch.clone() }, ..spliced },
                all,
                "run {from}..{to}"
            );
        }
    }

    #[test]
    fn the_hour_level_plot_keeps_every_hours_extremes_within_the_cap() {
        let rounds = hourly_rounds();
        let hours: Vec<Summary> =
            rounds.chunk_by(|a, b| a.ms / 3_600_000 == b.ms / 3_600_000).filter_map(summarize).collect();
        let (points, total) = plot_coarse(&hours, 40, 3_600_000).unwrap();
        assert_eq!(total, 486);
        assert!(points.len() <= 40 && points.windows(2).all(|w| w[0].0 < w[1].0), "{points:?}");
        assert!(points.contains(&(6 * 600_000, 1e9)), "the highest value survives");
        let real: Vec<(i64, f64)> = rounds.iter().filter_map(|r| r.value.map(|v| (r.ms, v))).collect();
        assert!(points.iter().all(|p| real.contains(p)), "every point is a reading");
        assert_eq!(plot_coarse(&hours, 1000, 3_600_000), None, "few enough values: read them all");
        assert_eq!(plot_coarse(&hours, 200, 3_600_000), None, "buckets shorter than an hour");
    }

    #[test]
    fn a_series_is_stale_after_three_usual_intervals_and_in_error_when_the_device_says_so() {
        let recent = [0, 300_000, 600_000, 600_000, 900_000, 2_000_000];
        assert_eq!(interval_s(&recent), Some(300.0));
        assert_eq!(interval_s(&[5]), None);
        assert_eq!(health(None, 900_000, Some(300.0), 900_000 + 900_000), Health::Ok);
        assert_eq!(health(None, 900_000, Some(300.0), 900_001 + 900_000), Health::Stale);
        assert_eq!(health(Some("Rate too high"), 900_000, Some(300.0), 900_000), Health::Error);
        assert_eq!(health(None, 0, None, i64::MAX / 2), Health::Ok);
    }

    #[test]
    fn the_csv_quotes_and_neutralises_text_cells() {
        let text = csv(&[round(0, Some(1.5), None), round(1000, None, Some("=cmd, \"x\""))], Some("m³"));
        assert_eq!(
            text,
            "time,value,unit,status\r\n1970-01-01T00:00:00.000Z,1.5,m³,ok\r\n\
             1970-01-01T00:00:01.000Z,,m³,\"'=cmd, \"\"x\"\"\"\r\n"
        );
    }
}
