//! Whole-slide images: reading pyramidal TIFF / BigTIFF / Aperio SVS tile by tile
//! ([`TiffSlide`]), writing test pyramids ([`write_pyramid`]), finding the tissue on a
//! low-resolution level ([`TissueMask`]), and segmenting a slide in bounded memory with
//! resumable, shardable runs whose outputs other tools read ([`SlideRun`]): GeoJSON for
//! QuPath and an SQLite database TIAToolbox opens ([`NucleiDb`]).

mod cohort;
mod db;
mod error;
#[cfg(feature = "openslide")]
mod openslide;
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
#[cfg(feature = "openslide")]
pub use openslide::OpenSlideReader;
pub use reader::{
    aperio_field, SlideLevel, SlideReader, TiffSlide, CHUNK_CACHE_BYTES, MAX_CHUNK_BYTES,
    MAX_CHUNK_SIDE, MAX_REGION_PIXELS, MAX_SLIDE_SIDE, PLAUSIBLE_MPP,
};
pub use run::{
    nucleus_uuid, Distribution, Prepared, Shard, SlideConfig, SlidePlan, SlideProgress, SlideRun,
    SlideSummary, StainGroups, GEOJSON_FILE, STAIN_SAMPLE_SIDE, STAIN_SAMPLE_TILES, SUMMARY_FILE,
    THUMBNAIL_FILE, WORK_DIR,
};
pub use store::{read_tile, write_tile};
pub use tissue::{thumbnail, TissueConfig, TissueMask};
pub use writer::{write_pyramid, PyramidOptions, TiffLayout};

/// Opens a slide with the pure-Rust TIFF reader ([`TiffSlide`]); when that fails and the
/// `openslide` feature is on, with OpenSlide (`OpenSlideReader`) instead. The TIFF
/// reader's error is returned when neither reads the file.
///
/// # Errors
/// Neither reader opens the file (see [`TiffSlide::open`]).
pub fn open_slide(path: impl AsRef<std::path::Path>) -> Result<Box<dyn SlideReader>, SlideError> {
    let path = path.as_ref();
    match TiffSlide::open(path) {
        Ok(slide) => Ok(Box::new(slide)),
        #[cfg(feature = "openslide")]
        Err(tiff_error) => match OpenSlideReader::open(path) {
            Ok(slide) => Ok(Box::new(slide)),
            Err(_) => Err(tiff_error),
        },
        #[cfg(not(feature = "openslide"))]
        Err(e) => Err(e),
    }
}
