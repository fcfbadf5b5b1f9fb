//! The meter endpoints behind the admin token: every reading series (`/api/series`), one
//! series, its points downsampled on the server, its consumption per day, its CSV export
//! and the last image of its source. They read the readings index (`store::journal::series`)
//! on a blocking thread; the computations are in `crate::meters`.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};
use rusqlite::Connection;

use super::guard::{AdminAuth, AdminError, AdminState, Shared, guard, internal, message};
use super::params::Time;
use crate::event::rfc3339_millis;
use crate::meters;
use crate::store::journal::JournalError;
use crate::store::journal::series::{self, SeriesRow};

const HOUR_MS: i64 = 3_600_000;

/// How many recent reading times give a series its usual interval.
const RECENT: usize = 33;
const MAX_POINTS: u32 = 5000;

/// The meter API.
pub struct MetersApi {
    pub state: Shared,
}

/// One reading series (e.g. `ferienhaus / main`).
#[derive(Object)]
pub struct Series {
    /// Url-safe and stable: the same protocol and name give the same id.
    pub id: String,
    pub name: String,
    pub protocol: String,
    pub unit: Option<String>,
    /// `counter` or `gauge`.
    pub kind: String,
    /// The last good value.
    pub last_value: Option<f64>,
    /// Time of the last reading.
    pub last_at: String,
    pub last_ms: i64,
    /// `ok`, `error` (the device's last round carried an error) or `stale` (no reading for
    /// longer than three usual intervals).
    pub status: String,
    /// The device's own error text of its last round.
    pub status_text: Option<String>,
    /// The usual interval between readings (median of recent gaps), in seconds.
    pub interval_s: Option<f64>,
    pub count: u64,
    /// Whether the last image of its source can be fetched (`/image`).
    pub has_image: bool,
}

/// A series' values over a time range.
#[derive(Object)]
pub struct Points {
    /// `[ms, value]` pairs, oldest first.
    pub points: Vec<serde_json::Value>,
    /// Whether the range had more points than `max_points` (each bucket's minimum and
    /// maximum are kept).
    pub downsampled: bool,
    /// How many points the range has.
    pub total: u64,
}

/// One UTC day of a counter.
#[derive(Object)]
pub struct DayUse {
    pub day: String,
    pub consumption: f64,
    /// Good readings that day (error rounds are not counted).
    pub readings: u64,
}

/// A counter's consumption per UTC day.
#[derive(Object)]
pub struct Daily {
    pub days: Vec<DayUse>,
}

/// The CSV export of a series.
#[derive(ApiResponse)]
pub enum CsvFile {
    /// `time,value,unit,status`, one line per reading.
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Ok(PlainText<String>, #[oai(header = "Content-Disposition")] String),
}

/// The last image of a series' source.
#[derive(ApiResponse)]
pub enum Image {
    /// The image's bytes as received.
    #[oai(status = 200, content_type = "image/jpeg")]
    Ok(Binary<Vec<u8>>),
}

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// `since` and `until` (default: everything).
fn range(since: Query<Option<Time>>, until: Query<Option<Time>>) -> (i64, i64) {
    (since.0.map_or(i64::MIN, |t| t.0), until.0.map_or(i64::MAX, |t| t.0))
}

/// Runs `read` on the journal on a blocking thread.
async fn read<T: Send + 'static>(
    state: &AdminState,
    read: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, AdminError> {
    let journal = state.pipeline.journal.clone();
    let done = tokio::task::spawn_blocking(move || journal.reader().and_then(|c| Ok(read(&c)?))).await;
    done.map_err(internal)?.map_err(|e: JournalError| internal(e))
}

/// The series `id` (and what is read with it), or 404.
async fn with_series<T: Send + 'static>(
    state: &AdminState,
    id: String,
    then: impl FnOnce(&Connection, &SeriesRow) -> rusqlite::Result<T> + Send + 'static,
) -> Result<(SeriesRow, T), AdminError> {
    let found = read(state, move |c| {
        let Some(row) = series::find(c, &id)? else { return Ok(Err(id)) };
        let more = then(c, &row)?;
        Ok(Ok((row, more)))
    })
    .await?;
    found.map_err(|id| AdminError::NotFound(message(format!("no series {id:?}"))))
}

fn describe(row: SeriesRow, recent: &[i64], now_ms: i64) -> Series {
    let interval_s = meters::interval_s(recent);
    let health = meters::health(row.status.as_deref(), row.last_ms, interval_s, now_ms);
    Series {
        id: row.slug,
        name: row.name,
        protocol: row.protocol,
        unit: row.unit,
        kind: row.kind,
        last_value: row.last_value,
        last_at: rfc3339_millis(row.last_ms),
        last_ms: row.last_ms,
        status: health.as_str().to_owned(),
        status_text: row.status,
        interval_s,
        count: row.count,
        has_image: row.has_image,
    }
}

/// `ferienhaus / main` → `ferienhaus-main.csv`.
fn file_name(name: &str) -> String {
    let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
    let parts: Vec<&str> = safe.split('-').filter(|p| !p.is_empty()).collect();
    format!("{}.csv", if parts.is_empty() { "series".to_owned() } else { parts.join("-") })
}

/// The plot of `since..until`: `(points, downsampled, total)`, from the hour level where it
/// is fine enough, else from every reading.
fn plot(c: &Connection, row: &SeriesRow, since: i64, until: i64, max: usize) -> rusqlite::Result<Plot> {
    if let Some(summaries) = series::summaries(c, row, since, until)?
        && let Some((points, total)) = meters::plot_coarse(&summaries, max, HOUR_MS)
    {
        return Ok((points, true, total));
    }
    let all = series::points(c, row.id, since, until)?;
    let (kept, downsampled) = meters::downsample(&all, max);
    Ok((kept, downsampled, all.len() as u64))
}

type Plot = (Vec<(i64, f64)>, bool, u64);

#[OpenApi]
impl MetersApi {
    /// Every reading series, by protocol and name, with its last value and status.
    #[oai(path = "/api/series", method = "get")]
    async fn list_series(&self, req: &poem::Request, auth: AdminAuth) -> Result<Json<Vec<Series>>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let rows = read(state, |c| {
            let rows = series::list(c)?;
            rows.into_iter()
                .map(|r| Ok((series::recent_times(c, r.id, RECENT)?, r)))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
        let now = now_ms();
        Ok(Json(rows.into_iter().map(|(recent, row)| describe(row, &recent, now)).collect()))
    }

    /// One series.
    #[oai(path = "/api/series/:id", method = "get")]
    async fn show_series(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        #[oai(validator(pattern = "^[0-9a-f]{16}$"))] id: Path<String>,
    ) -> Result<Json<Series>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let (row, recent) = with_series(state, id.0, |c, row| series::recent_times(c, row.id, RECENT)).await?;
        Ok(Json(describe(row, &recent, now_ms())))
    }

    /// The series' values over a time range, at most `max_points` of them: beyond that, the
    /// minimum and maximum of each time bucket.
    #[oai(path = "/api/series/:id/points", method = "get")]
    async fn points(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        #[oai(validator(pattern = "^[0-9a-f]{16}$"))] id: Path<String>,
        /// From (at or after)
        since: Query<Option<Time>>,
        /// Before
        until: Query<Option<Time>>,
        /// At most this many points (default 1000, at most 5000)
        max_points: Query<Option<u32>>,
    ) -> Result<Json<Points>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let (since, until) = range(since, until);
        let max = max_points.0.unwrap_or(1000).clamp(2, MAX_POINTS) as usize;
        let (_, (kept, downsampled, total)) =
            with_series(state, id.0, move |c, row| plot(c, row, since, until, max)).await?;
        let points = kept.into_iter().map(|(ms, v)| serde_json::json!([ms, v])).collect();
        Ok(Json(Points { points, downsampled, total }))
    }

    /// A counter's consumption per UTC day: differences of consecutive good readings
    /// (error rounds skipped; a drop is a reset, counted from the new value).
    #[oai(path = "/api/series/:id/daily", method = "get")]
    async fn daily(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        #[oai(validator(pattern = "^[0-9a-f]{16}$"))] id: Path<String>,
        /// From (at or after)
        since: Query<Option<Time>>,
        /// Before
        until: Query<Option<Time>>,
    ) -> Result<Json<Daily>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let (since, until) = range(since, until);
        let (row, days) = with_series(state, id.0, move |c, row| {
            if row.kind != "counter" {
                return Ok(Vec::new());
            }
            let before = series::value_before(c, row.id, since)?;
            Ok(match series::summaries(c, row, since, until)? {
                Some(summaries) => meters::daily_of(summaries.into_iter().map(|s| s.stretch), before),
                None => meters::daily(&series::rounds(c, row.id, since, until)?, before),
            })
        })
        .await?;
        if row.kind != "counter" {
            let text = format!("{} is a gauge: consumption per day is for counters", row.name);
            return Err(AdminError::BadRequest(message(text)));
        }
        let days =
            days.into_iter().map(|d| DayUse { day: d.day, consumption: d.consumption, readings: d.readings }).collect();
        Ok(Json(Daily { days }))
    }

    /// The series as CSV (`time,value,unit,status`), as a download.
    #[oai(path = "/api/series/:id/csv", method = "get")]
    async fn csv(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        #[oai(validator(pattern = "^[0-9a-f]{16}$"))] id: Path<String>,
        /// From (at or after)
        since: Query<Option<Time>>,
        /// Before
        until: Query<Option<Time>>,
    ) -> Result<CsvFile, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let (since, until) = range(since, until);
        let (row, rounds) = with_series(state, id.0, move |c, row| series::rounds(c, row.id, since, until)).await?;
        let disposition = format!("attachment; filename=\"{}\"", file_name(&row.name));
        Ok(CsvFile::Ok(PlainText(meters::csv(&rounds, row.unit.as_deref())), disposition))
    }

    /// The last image of the series' source (404 when it sent none).
    #[oai(path = "/api/series/:id/image", method = "get")]
    async fn image(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        #[oai(validator(pattern = "^[0-9a-f]{16}$"))] id: Path<String>,
    ) -> Result<Image, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let (row, image) = with_series(state, id.0, series::image).await?;
        let bytes = image.ok_or_else(|| AdminError::NotFound(message(format!("{} has no image", row.name))))?;
        Ok(Image::Ok(Binary(bytes)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_series_name_becomes_a_plain_file_name() {
        assert_eq!(super::file_name("ferienhaus / main"), "ferienhaus-main.csv");
        assert_eq!(super::file_name("00-04-a3 / Voltage \"x\""), "00-04-a3-Voltage-x.csv");
        assert_eq!(super::file_name("///"), "series.csv");
    }
}
