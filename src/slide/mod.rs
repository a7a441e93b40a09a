//! Whole-slide images: reading pyramidal TIFF / BigTIFF / Aperio SVS tile by tile
//! ([`TiffSlide`]), writing test pyramids ([`write_pyramid`]), finding the tissue on a
//! low-resolution level ([`TissueMask`]), and segmenting a slide in bounded memory with
//! resumable, shardable runs whose outputs other tools read ([`SlideRun`]): GeoJSON for
//! QuPath and an SQLite database TIAToolbox opens ([`NucleiDb`]).

mod cohort;
mod db;
mod error;
mod reader;
mod run;
mod store;
mod tissue;
mod writer;

pub use cohort::{cohort_csv, cohort_summaries, read_manifest, task_index, ManifestRow};
pub use db::{
    CellCount, NucleiDb, NucleiDbWriter, StoredNucleus, DB_FILE, TIATOOLBOX_STORE_VERSION,
};
pub use error::SlideError;
pub use reader::{
    aperio_field, SlideLevel, SlideReader, TiffSlide, CHUNK_CACHE_BYTES, MAX_CHUNK_BYTES,
    MAX_CHUNK_SIDE, MAX_REGION_PIXELS, PLAUSIBLE_MPP,
};
pub use run::{
    nucleus_uuid, Distribution, Prepared, Shard, SlideConfig, SlidePlan, SlideProgress, SlideRun,
    SlideSummary, GEOJSON_FILE, SUMMARY_FILE, THUMBNAIL_FILE, WORK_DIR,
};
pub use store::{read_tile, write_tile};
pub use tissue::{thumbnail, TissueConfig, TissueMask};
pub use writer::{write_pyramid, PyramidOptions, TiffLayout};
