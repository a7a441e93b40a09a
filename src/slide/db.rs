//! A slide's nuclei in SQLite, laid out as TIAToolbox's `SQLiteStore` (schema version
//! 1.0.1) lays out annotations, so that `SQLiteStore("nuclei.db")` opens it, and with a
//! query API of its own ([`NucleiDb`]).
//!
//! - `metadata(key TEXT UNIQUE, value TEXT)`: JSON values; TIAToolbox's `version`,
//!   `compression` (`"zlib"`) and `compression_level`, and nucseg's `nucseg_plan` (the
//!   slide, its size and pixel size, and the run's parameters: [`SlidePlan`](super::SlidePlan)).
//! - `annotations(id INTEGER PRIMARY KEY, key TEXT UNIQUE, objtype TEXT, cx FLOAT, cy FLOAT,
//!   geometry BLOB, properties TEXT, area FLOAT)`: one row per nucleus; `key` its UUID (the
//!   GeoJSON feature's id), `objtype` `"Polygon"`, `(cx, cy)` the centroid of its pixels,
//!   `geometry` the outline as zlib-compressed little-endian WKB, `properties` a JSON object
//!   with `type` (the class), the score and every measurement of the CSV, `area` the
//!   polygon's area (px²), all in level-0 pixels.
//! - `rtree(id, min_x, max_x, min_y, max_y)`: SQLite's R*-tree over the outlines' boxes.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
};

use rusqlite::{params, Connection, OpenFlags};
use serde_json::Value;

use super::SlideError;

/// The database's file name in a slide's output folder.
pub const DB_FILE: &str = "nuclei.db";
/// The TIAToolbox `SQLiteStore` schema version written.
pub const TIATOOLBOX_STORE_VERSION: &str = "1.0.1";
const COMPRESSION_LEVEL: u32 = 6;

fn db_error(path: &Path, e: rusqlite::Error) -> SlideError {
    SlideError::invalid(path, format!("SQLite: {e}"))
}

/// Writes the nuclei database (see the module docs) at a path given by the caller (a
/// temporary one, renamed when complete).
pub struct NucleiDbWriter {
    conn: Connection,
    path: PathBuf,
}

impl NucleiDbWriter {
    /// Creates the tables in a new file at `path` and stores `metadata` (key, JSON value)
    /// beside TIAToolbox's keys; rows go in one transaction until [`finish`](Self::finish).
    pub fn create(path: &Path, metadata: &[(&str, Value)]) -> Result<Self, SlideError> {
        let conn = Connection::open(path).map_err(|e| db_error(path, e))?;
        let e = |e| db_error(path, e);
        conn.execute_batch(
            "CREATE TABLE metadata (key TEXT UNIQUE, value TEXT);
             CREATE VIRTUAL TABLE rtree USING rtree(id, min_x, max_x, min_y, max_y);
             CREATE TABLE annotations(
                 id INTEGER PRIMARY KEY, key TEXT UNIQUE, objtype TEXT,
                 cx FLOAT NOT NULL, cy FLOAT NOT NULL, geometry BLOB, properties TEXT,
                 area FLOAT NOT NULL);",
        )
        .map_err(e)?;
        let mut all = vec![
            ("version", Value::from(TIATOOLBOX_STORE_VERSION)),
            ("compression", Value::from("zlib")),
            ("compression_level", Value::from(COMPRESSION_LEVEL)),
        ];
        all.extend(metadata.iter().map(|(k, v)| (*k, v.clone())));
        for (k, v) in all {
            conn.execute(
                "INSERT INTO metadata (key, value) VALUES (?1, ?2)",
                params![k, v.to_string()],
            )
            .map_err(e)?;
        }
        conn.execute_batch("BEGIN").map_err(e)?;
        Ok(NucleiDbWriter {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Adds one nucleus: its UUID `key`, closed outer `ring`, pixel centroid and
    /// `properties` (a JSON object).
    pub fn insert(
        &mut self,
        key: &str,
        ring: &[[f64; 2]],
        centroid: [f64; 2],
        properties: &Value,
    ) -> Result<(), SlideError> {
        let e = |e| db_error(&self.path, e);
        let (mut min, mut max) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for p in ring {
            for c in 0..2 {
                min[c] = min[c].min(p[c]);
                max[c] = max[c].max(p[c]);
            }
        }
        let geometry = compress(&polygon_wkb(ring));
        self.conn
            .execute(
                "INSERT INTO annotations VALUES (NULL, ?1, 'Polygon', ?2, ?3, ?4, ?5, ?6)",
                params![
                    key,
                    centroid[0],
                    centroid[1],
                    geometry,
                    properties.to_string(),
                    ring_area(ring)
                ],
            )
            .map_err(e)?;
        let id = self.conn.last_insert_rowid();
        self.conn
            .execute(
                "INSERT INTO rtree VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, min[0], max[0], min[1], max[1]],
            )
            .map_err(e)?;
        Ok(())
    }

    /// Commits and closes the file.
    pub fn finish(self) -> Result<(), SlideError> {
        let path = self.path.clone();
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| db_error(&path, e))?;
        self.conn.close().map_err(|(_, e)| db_error(&path, e))
    }
}

/// A nucleus read back from the database.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredNucleus {
    /// Row id (1, 2, … in the order written).
    pub id: i64,
    /// UUID, the GeoJSON feature's id.
    pub key: String,
    /// Centroid of its pixels (level 0).
    pub centroid: [f64; 2],
    /// Box of the outline `[min_x, min_y, max_x, max_y]` (level 0).
    pub bbox: [f64; 4],
    /// Area of the outline (level-0 px²).
    pub area: f64,
    /// The closed outline (level 0).
    pub outline: Vec<[f64; 2]>,
    /// Class, score and measurements.
    pub properties: Value,
}

/// `((column, row), nuclei)` of one grid cell ([`NucleiDb::counts_per_cell`]).
pub type CellCount = ((i64, i64), u64);

/// A nuclei database opened for queries.
pub struct NucleiDb {
    conn: Connection,
    path: PathBuf,
}

impl NucleiDb {
    /// Opens a database written by a slide run (read-only).
    ///
    /// # Errors
    /// Not an SQLite file, or not one of nucseg's (no `nucseg_plan` metadata).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SlideError> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(SlideError::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| db_error(&path, e))?;
        let db = NucleiDb { conn, path };
        if db.metadata("nucseg_plan")?.is_none() {
            return Err(SlideError::invalid(
                &db.path,
                "not a nucseg nuclei database (no nucseg_plan metadata)",
            ));
        }
        Ok(db)
    }

    /// The JSON value stored under `key` in the metadata table.
    pub fn metadata(&self, key: &str) -> Result<Option<Value>, SlideError> {
        let text: Option<String> = match self.conn.query_row(
            "SELECT value FROM metadata WHERE key = ?1",
            params![key],
            |r| r.get(0),
        ) {
            Ok(v) => Some(v),
            Err(rusqlite::Error::QueryReturnedNoRows) => None,
            Err(e) => return Err(db_error(&self.path, e)),
        };
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| SlideError::invalid(&self.path, format!("metadata {key}: {e}")))
        })
        .transpose()
    }

    /// Number of nuclei.
    pub fn count(&self) -> Result<u64, SlideError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM annotations", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| db_error(&self.path, e))
    }

    /// The nuclei whose outline's box meets the rectangle `[x0, y0, x1, y1]` (level 0), by
    /// row id; found through the R-tree.
    pub fn in_rect(&self, rect: [f64; 4]) -> Result<Vec<StoredNucleus>, SlideError> {
        let e = |e| db_error(&self.path, e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.id, a.key, a.cx, a.cy, r.min_x, r.min_y, r.max_x, r.max_y, a.area,
                        a.geometry, a.properties
                 FROM rtree r JOIN annotations a ON a.id = r.id
                 WHERE r.max_x >= ?1 AND r.min_x <= ?3 AND r.max_y >= ?2 AND r.min_y <= ?4
                 ORDER BY a.id",
            )
            .map_err(e)?;
        let rows = stmt
            .query_map(params![rect[0], rect[1], rect[2], rect[3]], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    [r.get(2)?, r.get(3)?],
                    [r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?],
                    r.get::<_, f64>(8)?,
                    r.get::<_, Vec<u8>>(9)?,
                    r.get::<_, String>(10)?,
                ))
            })
            .map_err(e)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, key, centroid, bbox, area, geometry, properties) = row.map_err(e)?;
            let bad = |what: String| SlideError::invalid(&self.path, format!("row {id}: {what}"));
            out.push(StoredNucleus {
                id,
                key,
                centroid,
                bbox,
                area,
                outline: decompress(&geometry)
                    .and_then(|wkb| parse_polygon_wkb(&wkb))
                    .ok_or_else(|| bad("geometry is not a zlib-compressed WKB polygon".into()))?,
                properties: serde_json::from_str(&properties)
                    .map_err(|err| bad(format!("properties: {err}")))?,
            });
        }
        Ok(out)
    }

    /// Nuclei per cell of a `cell`-pixel grid (level 0) by centroid, over the cells that
    /// have any: `((column, row), count)` in row-major order.
    pub fn counts_per_cell(&self, cell: f64) -> Result<Vec<CellCount>, SlideError> {
        if !(cell.is_finite() && cell > 0.0) {
            return Err(SlideError::invalid(&self.path, format!("cell size {cell}")));
        }
        let e = |e| db_error(&self.path, e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT CAST(cx / ?1 AS INTEGER) AS gx, CAST(cy / ?1 AS INTEGER) AS gy, COUNT(*)
                 FROM annotations GROUP BY gy, gx ORDER BY gy, gx",
            )
            .map_err(e)?;
        let rows = stmt
            .query_map(params![cell], |r| {
                Ok(((r.get(0)?, r.get(1)?), r.get::<_, i64>(2)? as u64))
            })
            .map_err(e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }
}

/// A closed ring as a little-endian WKB Polygon with one ring.
fn polygon_wkb(ring: &[[f64; 2]]) -> Vec<u8> {
    let mut b = Vec::with_capacity(13 + 16 * ring.len());
    b.push(1);
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&(ring.len() as u32).to_le_bytes());
    for p in ring {
        b.extend_from_slice(&p[0].to_le_bytes());
        b.extend_from_slice(&p[1].to_le_bytes());
    }
    b
}

fn parse_polygon_wkb(b: &[u8]) -> Option<Vec<[f64; 2]>> {
    let u32_at = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
    let f64_at = |i: usize| Some(f64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?));
    if b.first() != Some(&1) || u32_at(1)? != 3 || u32_at(5)? < 1 {
        return None;
    }
    let n = u32_at(9)? as usize;
    if b.len() < 13 + 16 * n {
        return None;
    }
    (0..n)
        .map(|k| Some([f64_at(13 + 16 * k)?, f64_at(21 + 16 * k)?]))
        .collect()
}

/// The shoelace area of a closed ring.
fn ring_area(ring: &[[f64; 2]]) -> f64 {
    ring.windows(2)
        .map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1])
        .sum::<f64>()
        .abs()
        / 2.0
}

fn compress(bytes: &[u8]) -> Vec<u8> {
    let mut z =
        flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(COMPRESSION_LEVEL));
    z.write_all(bytes).expect("writing to memory");
    z.finish().expect("writing to memory")
}

fn decompress(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(bytes)
        .take(64 << 20)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}
