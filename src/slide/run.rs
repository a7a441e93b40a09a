//! Segmenting a whole slide in bounded memory, resumably, in shards if asked.
//!
//! A run has two phases, each restartable:
//! 1. **Tiles** ([`SlideRun::segment_tiles`]): the slide is seen at the model's pixel size
//!    (the *working* image: level 0 resampled by [`SlidePlan::scale`], read from the
//!    coarsest level fine enough), cut by the same [`Tiler`](crate::postprocess::Tiler) as an image, and every tile with
//!    tissue is segmented and its detections written to `work/tiles/<index>.bin` (one file
//!    per tile, atomically). A killed run resumes from the tiles on disk; a shard `k/n` does
//!    every `n`-th tissue tile from the `k`-th, so shards on a cluster share the work folder.
//! 2. **Stitch** ([`SlideRun::stitch`]): the tile files are fed row by row to the image
//!    tiler's [`Stitcher`], whose [`drain_above`](Stitcher::drain_above) releases the
//!    nuclei no later row can change; overlaps between them are resolved by score
//!    ([`exclusive_masks`]), each nucleus is measured on the slide's pixels and streamed
//!    to `nuclei.geojson.gz` (QuPath detections in level-0 pixel coordinates) and
//!    `nuclei.db` (SQLite in TIAToolbox's `SQLiteStore` layout, [`NucleiDb`](super::NucleiDb)). Memory holds
//!    about two rows of tiles' detections, whatever the slide's size; the result equals a
//!    single-process run's bit for bit, however the tiles were sharded.
//!
//! The outputs (`nuclei.geojson.gz`, `nuclei.db`, `thumbnail.png`, then `summary.json`, last) appear
//! atomically when complete; a folder with a `summary.json` is a finished slide and is left
//! alone (reported as [`Prepared::Complete`]) unless the run is told to overwrite.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Instant,
};

use burn::config::Config;
use image::RgbImage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    db::{NucleiDbWriter, DB_FILE},
    store,
    tissue::{TissueConfig, TissueMask},
    SlideError, SlideReader,
};
use crate::{
    colour::{deconvolve, RUIFROK_HED},
    data::{connected_components, Connectivity},
    export::{measure_nucleus, nucleus_feature, outer_contour, GeoJsonConfig, NucleusMeasurements},
    instances::{Instance, InstanceSegmenter, Nucleus, OverlapConfig},
    postprocess::{exclusive_masks, Stitcher, Tile, TilerConfig},
};

/// Settings of a slide run.
#[derive(Config, Debug, PartialEq)]
pub struct SlideConfig {
    /// The pixel size (µm) the model was trained at: the Kumar / MoNuSeg images are 40×
    /// scans at about 0.25 µm per pixel.
    #[config(default = 0.25)]
    pub model_mpp: f64,
    /// A slide whose pixel size is within this fraction of `model_mpp` is segmented at its
    /// own resolution (no resampling).
    #[config(default = 0.1)]
    pub mpp_tolerance: f64,
    /// Tiles of the working image: the pipeline's default (1024 px at stride 768), so each
    /// slide tile is one model input.
    #[config(
        default = "TilerConfig::new().with_tile_size(1024).with_stride(768).with_batch_size(1)"
    )]
    pub tiling: TilerConfig,
    /// Tissue detection.
    #[config(default = "TissueConfig::new()")]
    pub tissue: TissueConfig,
    /// Detections scored below this are dropped in each tile (the pipeline's threshold).
    #[config(default = "crate::pipeline::DEFAULT_MIN_SCORE")]
    pub min_score: f32,
    /// How overlapping nuclei are made disjoint (the pipeline's rule).
    #[config(default = "OverlapConfig::cleanup()")]
    pub overlaps: OverlapConfig,
    /// Classification, name prefix and origin of the nuclei (the origin shifts the GeoJSON
    /// and the database alike).
    #[config(default = "GeoJsonConfig::new()")]
    pub geojson: GeoJsonConfig,
}

/// Everything that fixes a run's result; saved as `work/plan.json`, so that a resumed run,
/// a shard or a merge refuses to mix tiles made under other settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlidePlan {
    /// The slide's file name.
    pub slide: String,
    /// Its size in bytes (a changed file is another slide).
    pub slide_bytes: u64,
    /// The slide's format (`aperio-svs`, `ome-tiff`, `tiff`).
    pub format: String,
    /// Level-0 size.
    pub width: u32,
    /// Level-0 size.
    pub height: u32,
    /// Microns per level-0 pixel used, `None` when unknown (then `scale` is 1).
    pub mpp: Option<f64>,
    /// Where `mpp` came from: `"file"`, `"option"` or `"unknown"`.
    pub mpp_source: String,
    /// Level-0 pixels per working pixel.
    pub scale: f64,
    /// The pyramid level read.
    pub level: usize,
    /// That level's pixels per working pixel.
    pub level_scale: f64,
    /// Working image size.
    pub working_width: u32,
    /// Working image size.
    pub working_height: u32,
    /// Tile size, stride and matching IoU of the tiler.
    pub tiling: [f64; 3],
    /// The score threshold.
    pub min_score: f32,
    /// The overlap rule (absent in plans of older versions: the plain one).
    #[serde(default = "OverlapConfig::new")]
    pub overlaps: OverlapConfig,
    /// Who segments: the caller's description of the model and its settings.
    pub segmenter: String,
    /// Tiles of the working image in all.
    pub tiles_total: usize,
    /// The tiles with tissue, in row order: the ones segmented.
    pub tissue_tiles: Vec<usize>,
    /// Tissue area in level-0 pixels.
    pub tissue_area_px: f64,
}

/// A shard `index/count` of a slide's tissue tiles (0-based: `0/4` … `3/4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which share, `0..count`.
    pub index: usize,
    /// How many shares.
    pub count: usize,
}

impl Shard {
    /// The whole slide.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether the `k`-th tissue tile belongs to this shard.
    pub fn owns(&self, k: usize) -> bool {
        k % self.count.max(1) == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("shard '{s}': expected k/n with 0 <= k < n (e.g. 0/4 … 3/4)");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// What [`SlideRun::prepare`] found.
pub enum Prepared<'a> {
    /// The folder holds a finished run's outputs; its summary.
    Complete(Box<SlideSummary>),
    /// A run ready to segment tiles (some may be done already) and stitch.
    Ready(Box<SlideRun<'a>>),
}

/// A slide run (see the module docs).
pub struct SlideRun<'a> {
    slide: &'a dyn SlideReader,
    config: SlideConfig,
    out: PathBuf,
    plan: SlidePlan,
    tissue: TissueMask,
    thumbnail: RgbImage,
    /// The working image's tiles (all of them; the plan says which have tissue).
    tiles: Vec<Tile>,
}

/// Progress of a run, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlideProgress {
    /// `"tiles"` or `"stitch"`.
    pub phase: &'static str,
    /// Tiles segmented (this process's share) or rows stitched.
    pub done: usize,
    /// Out of.
    pub total: usize,
    /// Nuclei found so far (raw detections while segmenting, final nuclei while stitching).
    pub nuclei: usize,
}

/// A distribution's mean and quantiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// Mean.
    pub mean: f64,
    /// 5th percentile.
    pub p5: f64,
    /// 25th percentile.
    pub p25: f64,
    /// Median.
    pub median: f64,
    /// 75th percentile.
    pub p75: f64,
    /// 95th percentile.
    pub p95: f64,
}

/// The per-slide summary (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlideSummary {
    /// The run's plan (slide, scale, tiles).
    pub plan: SlidePlan,
    /// Nuclei found.
    pub nuclei: usize,
    /// Tissue area (mm²), when the pixel size is known.
    pub tissue_area_mm2: Option<f64>,
    /// Nuclei per mm² of tissue, when the pixel size is known.
    pub density_per_mm2: Option<f64>,
    /// Nucleus area: µm² when the pixel size is known, else level-0 px².
    pub area: Option<Distribution>,
    /// The unit of `area`.
    pub area_unit: String,
    /// Eccentricity.
    pub eccentricity: Option<Distribution>,
    /// Solidity.
    pub solidity: Option<Distribution>,
    /// Seconds spent segmenting tiles, summed over the processes that did them.
    pub segment_seconds: f64,
    /// Seconds of the stitching phase.
    pub stitch_seconds: f64,
    /// Megapixels of tissue (level 0) per second of segmentation.
    pub tissue_mpx_per_second: f64,
}

/// File names in a slide's output folder.
pub const GEOJSON_FILE: &str = "nuclei.geojson.gz";
/// The summary, written last: its presence marks a finished slide.
pub const SUMMARY_FILE: &str = "summary.json";
/// Thumbnail with the tissue outline and the nuclei density.
pub const THUMBNAIL_FILE: &str = "thumbnail.png";
/// Tissue tiles sampled for the slide's stains ([`SlideRun::stain_sample`]).
pub const STAIN_SAMPLE_TILES: usize = 16;
/// Side of the central square taken from each of them (working pixels).
pub const STAIN_SAMPLE_SIDE: u32 = 512;
/// The work folder (tile files and plan), removed when the slide is finished.
pub const WORK_DIR: &str = "work";

/// Tissue tiles grouped for their stain estimates ([`SlideRun::stain_groups`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StainGroups {
    /// Each group's sample of tissue (one row of pixels).
    pub samples: Vec<RgbImage>,
    /// Each tile's group (an index into `samples`); `None` for tiles without tissue.
    pub group_of_tile: Vec<Option<usize>>,
}

impl<'a> SlideRun<'a> {
    /// Plans a run of `slide` into the folder `out`: pixel size (`mpp` overrides the
    /// file's), level and scale, tissue, tiles. `segmenter` describes the model and its
    /// settings (a resumed run must use the same). With `overwrite`, a finished run or an
    /// unfinished one with other settings is removed first; without it, a finished run is
    /// reported as [`Prepared::Complete`] and other settings are an error.
    ///
    /// # Errors
    /// An implausible `mpp`; the slide cannot be read; the folder holds a run with other
    /// settings.
    pub fn prepare(
        slide: &'a dyn SlideReader,
        config: SlideConfig,
        out: &Path,
        mpp: Option<f64>,
        segmenter: &str,
        overwrite: bool,
    ) -> crate::Result<Prepared<'a>> {
        let path = slide.path().to_path_buf();
        if let Some(problem) = config.overlaps.problem() {
            return Err(SlideError::invalid(out, format!("overlap rule: {problem}")).into());
        }
        let summary_path = out.join(SUMMARY_FILE);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let slide_bytes = std::fs::metadata(&path)
            .map_err(|e| SlideError::io(&path, e))?
            .len();
        if summary_path.exists() && !overwrite {
            let summary: SlideSummary = crate::io::read_json(&summary_path)
                .map_err(|e| SlideError::io(&summary_path, e))?;
            if (summary.plan.slide.as_str(), summary.plan.slide_bytes) != (&name, slide_bytes) {
                return Err(SlideError::invalid(
                    &summary_path,
                    format!(
                        "these are the outputs of another slide ({}, {} bytes), not of {name}; give \
                         this slide its own output folder (another --out, or an id in the \
                         manifest)",
                        summary.plan.slide, summary.plan.slide_bytes
                    ),
                )
                .into());
            }
            return Ok(Prepared::Complete(Box::new(summary)));
        }
        if let Some(m) = mpp {
            if !(m.is_finite() && m >= super::PLAUSIBLE_MPP.0 && m <= super::PLAUSIBLE_MPP.1) {
                return Err(SlideError::PixelSize {
                    path,
                    message: format!(
                        "--mpp {m}: outside the plausible {}–{} µm per pixel",
                        super::PLAUSIBLE_MPP.0,
                        super::PLAUSIBLE_MPP.1
                    ),
                }
                .into());
            }
        }
        let tiler = config.tiling.init()?;
        let (mpp, mpp_source) = match (mpp, slide.mpp()) {
            (Some(m), _) => (Some(m), "option"),
            (None, Some(m)) => (Some(m), "file"),
            (None, None) => (None, "unknown"),
        };
        let mut scale = mpp.map_or(1.0, |m| config.model_mpp / m);
        if (scale - 1.0).abs() <= config.mpp_tolerance {
            scale = 1.0;
        }
        let levels = slide.levels();
        let level = (0..levels.len())
            .rev()
            .find(|&l| levels[l].downsample <= scale * 1.001)
            .unwrap_or(0);
        let level_scale = scale / levels[level].downsample;
        let (w0, h0) = slide.dimensions();
        let (ww, wh) = (
            (w0 as f64 / scale).floor() as u32,
            (h0 as f64 / scale).floor() as u32,
        );
        let (tissue, thumbnail) = TissueMask::detect(slide, &config.tissue)?;
        let tiles = tiler.tiles(ww, wh);
        let tissue_tiles: Vec<usize> = tiles
            .iter()
            .filter(|t| {
                let r = t.rect().map(|v| v as f64 * scale);
                tissue.covers(r)
            })
            .map(|t| t.index)
            .collect();
        let c = tiler.config();
        let plan = SlidePlan {
            slide: name,
            slide_bytes,
            format: slide.format().into(),
            width: w0,
            height: h0,
            mpp,
            mpp_source: mpp_source.into(),
            scale,
            level,
            level_scale,
            working_width: ww,
            working_height: wh,
            tiling: [c.tile_size as f64, c.stride as f64, c.match_iou],
            min_score: config.min_score,
            overlaps: config.overlaps.clone(),
            segmenter: segmenter.into(),
            tiles_total: tiles.len(),
            tissue_tiles,
            tissue_area_px: tissue.area_level0(),
        };
        let work = out.join(WORK_DIR);
        let plan_path = work.join("plan.json");
        if overwrite {
            for f in [SUMMARY_FILE, GEOJSON_FILE, DB_FILE, THUMBNAIL_FILE] {
                remove_if_present(&out.join(f))?;
            }
            match crate::io::read_json::<SlidePlan>(&plan_path) {
                Ok(old) if old == plan => {}
                _ if work.exists() => {
                    std::fs::remove_dir_all(&work).map_err(|e| SlideError::io(&work, e))?
                }
                _ => {}
            }
        }
        std::fs::create_dir_all(work.join("tiles")).map_err(|e| SlideError::io(&work, e))?;
        match crate::io::read_json::<SlidePlan>(&plan_path) {
            Ok(old) if old == plan => {}
            Ok(old) => {
                return Err(SlideError::invalid(
                    &plan_path,
                    format!(
                        "an unfinished run of {} with other settings ({}) is here; use \
                         --overwrite to start again",
                        old.slide,
                        plan_difference(&old, &plan)
                    ),
                )
                .into())
            }
            Err(_) => {
                // Tiles without a readable plan were made under settings nobody can check.
                let tiles = work.join("tiles");
                let orphans = std::fs::read_dir(&tiles)
                    .map_err(|e| SlideError::io(&tiles, e))?
                    .next()
                    .is_some();
                if orphans {
                    return Err(SlideError::invalid(
                        &plan_path,
                        "tile files are here without a readable plan (deleted, or from \
                         another nucseg version); use --overwrite to start again",
                    )
                    .into());
                }
                crate::io::write_json(&plan_path, &plan)
                    .map_err(|e| SlideError::io(&plan_path, e))?
            }
        }
        Ok(Prepared::Ready(Box::new(SlideRun {
            slide,
            config,
            out: out.to_path_buf(),
            plan,
            tissue,
            thumbnail,
            tiles,
        })))
    }

    /// The plan.
    pub fn plan(&self) -> &SlidePlan {
        &self.plan
    }

    /// The tissue mask.
    pub fn tissue(&self) -> &TissueMask {
        &self.tissue
    }

    /// A sample of the slide's tissue at the working scale, for estimating its stains once
    /// ([`Pipeline::fix_source_stains`](crate::pipeline::Pipeline::fix_source_stains)):
    /// the central [`STAIN_SAMPLE_SIDE`]² of up to [`STAIN_SAMPLE_TILES`] tissue tiles,
    /// those most covered by tissue (ties to the first), without their glass
    /// ([`GlassCells`](crate::model::backbone::GlassCells)), the pixels in one row (the
    /// estimates are per pixel: layout means nothing to them). `None` without tissue tiles
    /// or without tissue in them. Deterministic, so every shard of a slide estimates the
    /// same stains.
    pub fn stain_sample(&self) -> Result<Option<RgbImage>, SlideError> {
        self.sample_of(&self.plan.tissue_tiles)
    }

    /// The tissue tiles grouped by the tissue piece (8-connected part of the tissue mask)
    /// covering most of each, with a stain sample per group (as [`stain_sample`] takes
    /// it, from the group's tiles): for slides whose pieces were stained apart (a tissue
    /// microarray's cores, sections from several blocks). A piece under
    /// [`STAIN_SAMPLE_SIDE`]² working pixels, or without tissue in its sample, joins the
    /// group of the whole slide's sample. Deterministic, as [`stain_sample`].
    ///
    /// [`stain_sample`]: Self::stain_sample
    pub fn stain_groups(&self) -> Result<StainGroups, SlideError> {
        let (h, w) = self.tissue.mask.dim();
        let flat: Vec<bool> = self.tissue.mask.iter().copied().collect();
        let labels = connected_components(w as u32, h as u32, &flat, Connectivity::Eight);
        let mut area = vec![0u64; labels.max_id() as usize + 1];
        for &l in labels.as_slice() {
            area[l as usize] += 1;
        }
        let cell = self.tissue.downsample / self.plan.scale;
        let min_area = (STAIN_SAMPLE_SIDE as f64 / cell).powi(2);
        // The piece covering most of each tissue tile (ties to the lower label).
        let mut by_piece: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
        for &i in &self.plan.tissue_tiles {
            let r = self.tiles[i].rect().map(|v| v as f64 * self.plan.scale);
            let mut count: std::collections::BTreeMap<u32, u64> = Default::default();
            let ([x0, y0], [x1, y1]) = self.tissue.cells(r);
            for y in y0..y1 {
                for x in x0..x1 {
                    let l = labels.get(x as u32, y as u32);
                    if l != 0 {
                        *count.entry(l).or_default() += 1;
                    }
                }
            }
            let piece = count
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map_or(0, |(&l, _)| l);
            let piece = if piece != 0 && (area[piece as usize] as f64) >= min_area {
                piece
            } else {
                0
            };
            by_piece.entry(piece).or_default().push(i);
        }
        let mut groups = StainGroups {
            samples: Vec::new(),
            group_of_tile: vec![None; self.tiles.len()],
        };
        let mut rest = by_piece.remove(&0).unwrap_or_default();
        for tiles in by_piece.into_values() {
            match self.sample_of(&tiles)? {
                Some(sample) => {
                    for &i in &tiles {
                        groups.group_of_tile[i] = Some(groups.samples.len());
                    }
                    groups.samples.push(sample);
                }
                None => rest.extend(tiles),
            }
        }
        if !rest.is_empty() {
            if let Some(sample) = self.stain_sample()? {
                for &i in &rest {
                    groups.group_of_tile[i] = Some(groups.samples.len());
                }
                groups.samples.push(sample);
            }
        }
        Ok(groups)
    }

    /// [`stain_sample`](Self::stain_sample) from the tiles `tiles` only.
    fn sample_of(&self, tiles: &[usize]) -> Result<Option<RgbImage>, SlideError> {
        let mut ranked: Vec<(f64, usize)> = tiles
            .iter()
            .map(|&i| {
                let r = self.tiles[i].rect().map(|v| v as f64 * self.plan.scale);
                (self.tissue.share(r), i)
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut chosen: Vec<usize> = ranked
            .iter()
            .take(STAIN_SAMPLE_TILES)
            .map(|r| r.1)
            .collect();
        if chosen.is_empty() {
            return Ok(None);
        }
        chosen.sort_unstable();
        let mut pixels = Vec::new();
        for &i in &chosen {
            let [x0, y0, x1, y1] = self.tiles[i].rect();
            let (w, h) = (
                (x1 - x0).min(STAIN_SAMPLE_SIDE),
                (y1 - y0).min(STAIN_SAMPLE_SIDE),
            );
            let (cx, cy) = (x0 + (x1 - x0 - w) / 2, y0 + (y1 - y0 - h) / 2);
            crate::model::backbone::GlassCells::append_tissue(
                &self.read_working([cx, cy, cx + w, cy + h])?,
                &mut pixels,
            );
        }
        if pixels.is_empty() {
            return Ok(None);
        }
        let sample =
            RgbImage::from_raw((pixels.len() / 3) as u32, 1, pixels).expect("whole pixels");
        Ok(Some(sample))
    }

    fn tile_path(&self, index: usize) -> PathBuf {
        self.out
            .join(WORK_DIR)
            .join("tiles")
            .join(format!("{index:07}.bin"))
    }

    /// The tissue tiles not yet segmented (of any shard).
    pub fn missing_tiles(&self) -> Vec<usize> {
        self.plan
            .tissue_tiles
            .iter()
            .copied()
            .filter(|&i| !self.tile_path(i).exists())
            .collect()
    }

    /// The working image's pixels under `rect` (`[x0, y0, x1, y1]`, working coordinates).
    /// Off the level's own scale, working pixel `X` samples the level bilinearly at
    /// `(X + 0.5)·s − 0.5` (`s` = [`SlidePlan::level_scale`]): one global grid, so
    /// overlapping tiles and the nuclei measured later see the same pixels.
    pub fn read_working(&self, rect: [u32; 4]) -> Result<RgbImage, SlideError> {
        let (w, h) = (rect[2] - rect[0], rect[3] - rect[1]);
        let s = self.plan.level_scale;
        if s == 1.0 {
            return self
                .slide
                .read_region(self.plan.level, rect[0] as i64, rect[1] as i64, w, h);
        }
        let at = |v: u32| (v as f64 + 0.5) * s - 0.5;
        let (lx0, ly0) = (at(rect[0]).floor() as i64, at(rect[1]).floor() as i64);
        let (lx1, ly1) = (
            at(rect[2].saturating_sub(1)).floor() as i64 + 2,
            at(rect[3].saturating_sub(1)).floor() as i64 + 2,
        );
        let region = self.slide.read_region(
            self.plan.level,
            lx0,
            ly0,
            (lx1 - lx0).max(1) as u32,
            (ly1 - ly0).max(1) as u32,
        )?;
        let (rw, rh) = (region.width() as i64, region.height() as i64);
        let px = |x: i64, y: i64| {
            region
                .get_pixel(x.clamp(0, rw - 1) as u32, y.clamp(0, rh - 1) as u32)
                .0
        };
        Ok(RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (at(rect[0] + x), at(rect[1] + y));
            let (x0, y0) = (fx.floor(), fy.floor());
            let (tx, ty) = (fx - x0, fy - y0);
            let (ix, iy) = (x0 as i64 - lx0, y0 as i64 - ly0);
            let (a, b, c, d) = (
                px(ix, iy),
                px(ix + 1, iy),
                px(ix, iy + 1),
                px(ix + 1, iy + 1),
            );
            crate::colour::bilinear_rgb(a, b, c, d, tx, ty)
        }))
    }

    /// Phase 1 for `shard`: segments its tissue tiles that have no readable file yet, one
    /// at a time, with `segmenter` (nuclei scored at least the plan's `min_score`), and writes
    /// each tile's file. Returns the number of tiles segmented now.
    pub fn segment_tiles<S: InstanceSegmenter + ?Sized>(
        &self,
        segmenter: &S,
        shard: Shard,
        progress: impl FnMut(SlideProgress),
    ) -> crate::Result<usize> {
        self.segment_tiles_by(|_| segmenter, shard, progress)
    }

    /// [`segment_tiles`](Self::segment_tiles) with the segmenter of each tile chosen by
    /// its index (e.g. by [`StainGroups::group_of_tile`]).
    pub fn segment_tiles_by<'s, S: InstanceSegmenter + ?Sized + 's>(
        &self,
        segmenter_of: impl Fn(usize) -> &'s S,
        shard: Shard,
        mut progress: impl FnMut(SlideProgress),
    ) -> crate::Result<usize> {
        let tiles = &self.tiles;
        let mine: Vec<usize> = self
            .plan
            .tissue_tiles
            .iter()
            .enumerate()
            .filter(|(k, _)| shard.owns(*k))
            .map(|(_, &i)| i)
            .collect();
        let (mut done, mut segmented, mut nuclei) = (0, 0, 0);
        for &index in &mine {
            let path = self.tile_path(index);
            // A file that does not read back (a disk that filled up, a copy cut short) is
            // segmented again.
            if !path.exists() || store::read_tile(&path, index).is_err() {
                let tile = &tiles[index];
                let start = Instant::now();
                let image = self.read_working(tile.rect())?;
                let found = segmenter_of(index)
                    .segment_batch_above(std::slice::from_ref(&image), self.plan.min_score)?
                    .pop()
                    .unwrap_or_else(|| crate::Instances::new(tile.width, tile.height));
                nuclei += found.len();
                store::write_tile(&path, index, &found, start.elapsed().as_secs_f32())?;
                segmented += 1;
            }
            done += 1;
            progress(SlideProgress {
                phase: "tiles",
                done,
                total: mine.len(),
                nuclei,
            });
        }
        Ok(segmented)
    }

    /// Phase 2: stitches the tile files into the slide's nuclei and writes the outputs (see
    /// the module docs); the work folder is removed after.
    ///
    /// # Errors
    /// Tissue tiles without a file (a shard has not finished: the message lists how many);
    /// a broken tile file; the slide or the outputs cannot be read or written.
    pub fn stitch(&self, mut progress: impl FnMut(SlideProgress)) -> crate::Result<SlideSummary> {
        let start = Instant::now();
        let missing = self.missing_tiles();
        if !missing.is_empty() {
            return Err(SlideError::invalid(
                self.out.join(WORK_DIR),
                format!(
                    "{} of {} tissue tiles are not segmented yet (first: tile {}); run the \
                     missing shards, then stitch",
                    missing.len(),
                    self.plan.tissue_tiles.len(),
                    missing[0]
                ),
            )
            .into());
        }
        let (w, h) = self.thumbnail.dimensions();
        let mut stats = Stats::new(w, h, self.tissue.downsample);
        let mut segment_seconds = 0.0f64;
        let geojson_path = self.out.join(GEOJSON_FILE);
        let db_path = self.out.join(DB_FILE);
        let plan = serde_json::to_value(&self.plan).expect("serializable");
        // Both files are written under temporary names and renamed when complete; an error
        // inside is kept here (the closures can only return I/O errors).
        let mut failure: Option<crate::Error> = None;
        let written = crate::io::write_atomic_via(&db_path, |db_tmp| -> Result<(), String> {
            let mut db = match NucleiDbWriter::create(db_tmp, &[("nucseg_plan", plan)]) {
                Ok(db) => db,
                Err(e) => {
                    failure = Some(e.into());
                    return Err("stopped".into());
                }
            };
            let geojson = crate::io::write_atomic(&geojson_path, |file| {
                let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
                gz.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[")?;
                let streamed = self.stream(
                    &mut gz,
                    &mut db,
                    &mut stats,
                    &mut segment_seconds,
                    &mut progress,
                );
                if let Err(e) = streamed {
                    failure = Some(e);
                    return Err(std::io::Error::other("stopped"));
                }
                gz.write_all(b"]}\n")?;
                gz.finish()?;
                Ok(())
            });
            if failure.is_some() {
                return Err("stopped".into());
            }
            geojson.map_err(|e| SlideError::io(&geojson_path, e).to_string())?;
            db.finish().map_err(|e| e.to_string())
        });
        if let Some(e) = failure {
            return Err(e);
        }
        written.map_err(|e| SlideError::io(&db_path, e))?;
        let thumbnail_path = self.out.join(THUMBNAIL_FILE);
        crate::data::write_rgb_png(
            &thumbnail_path,
            &stats.picture(&self.thumbnail, &self.tissue),
        )?;
        let summary = self.summary(&stats, segment_seconds, start.elapsed().as_secs_f64());
        let summary_path = self.out.join(SUMMARY_FILE);
        crate::io::write_json(&summary_path, &summary)
            .map_err(|e| SlideError::io(&summary_path, e))?;
        let work = self.out.join(WORK_DIR);
        std::fs::remove_dir_all(&work).map_err(|e| SlideError::io(&work, e))?;
        Ok(summary)
    }

    /// The stitching loop: tile files row by row into the stitcher, decided nuclei out to
    /// the GeoJSON stream and the database.
    fn stream(
        &self,
        gz: &mut impl Write,
        db: &mut NucleiDbWriter,
        stats: &mut Stats,
        segment_seconds: &mut f64,
        progress: &mut impl FnMut(SlideProgress),
    ) -> crate::Result<()> {
        let geojson_path = self.out.join(GEOJSON_FILE);
        let tiles = &self.tiles;
        let rows: Vec<&[Tile]> = tiles.chunk_by(|a, b| a.y0 == b.y0).collect();
        let mut has_tissue = vec![false; tiles.len()];
        for &i in &self.plan.tissue_tiles {
            has_tissue[i] = true;
        }
        let mut stitcher = Stitcher::new(
            self.plan.working_width,
            self.plan.working_height,
            self.config.tiling.match_iou,
        );
        for (r, row) in rows.iter().enumerate() {
            for tile in row.iter().filter(|t| has_tissue[t.index]) {
                let (found, seconds) = store::read_tile(&self.tile_path(tile.index), tile.index)?;
                *segment_seconds += seconds as f64;
                stitcher.add(tile, found)?;
            }
            let below = rows.get(r + 1).map_or(u32::MAX, |next| next[0].y0);
            for nucleus in exclusive_masks(stitcher.drain_above(below), &self.plan.overlaps) {
                let n = self.measure(nucleus, stats)?;
                let name = format!("{}{}", self.config.geojson.id_prefix, n.measurements.id);
                let feature = nucleus_feature(
                    &n.ring,
                    &n.key,
                    &name,
                    &n.measurements,
                    &self.config.geojson,
                );
                if stats.count > 1 {
                    gz.write_all(b",\n")
                        .map_err(|e| SlideError::io(&geojson_path, e))?;
                }
                serde_json::to_writer(&mut *gz, &feature)
                    .map_err(|e| SlideError::io(&geojson_path, e.into()))?;
                let mut properties = serde_json::to_value(&n.measurements).expect("serializable");
                properties["type"] = self.config.geojson.class_name.clone().into();
                // The CSV's centroid counts pixel (x, y) as (x, y); the outline and
                // TIAToolbox's cx, cy use pixel corners, so its centre is half a pixel on.
                let half = 0.5 * self.plan.scale;
                db.insert(
                    &n.key,
                    &n.ring,
                    [
                        n.measurements.centroid_x + half,
                        n.measurements.centroid_y + half,
                    ],
                    &properties,
                )?;
            }
            progress(SlideProgress {
                phase: "stitch",
                done: r + 1,
                total: rows.len(),
                nuclei: stats.count,
            });
        }
        Ok(())
    }

    /// One nucleus (working coordinates) in level-0 coordinates: its UUID, outline and
    /// measurements on the slide's pixels; counted in `stats`.
    fn measure(&self, nucleus: Instance, stats: &mut Stats) -> crate::Result<Measured> {
        let m = &nucleus.mask;
        let rect = [m.x0, m.y0, m.x0 + m.width, m.y0 + m.height];
        let pixels = self.read_working(rect)?;
        let [haematoxylin, _, _] = deconvolve(&pixels, &RUIFROK_HED);
        let id = stats.count as u32 + 1;
        let local = Nucleus {
            id,
            mask: crate::InstanceMask {
                x0: 0,
                y0: 0,
                ..m.clone()
            },
            score: nucleus.score,
            class_id: nucleus.class_id,
        };
        let mut r = measure_nucleus(&local, &pixels, &haematoxylin)?;
        let s = self.plan.scale;
        r.centroid_x = (r.centroid_x + m.x0 as f64) * s;
        r.centroid_y = (r.centroid_y + m.y0 as f64) * s;
        r.area = (r.area as f64 * s * s).round() as u64;
        for v in [
            &mut r.perimeter,
            &mut r.equivalent_diameter,
            &mut r.major_axis_length,
            &mut r.minor_axis_length,
        ] {
            *v *= s;
        }
        stats.add(&r, self.plan.mpp);
        // Level-0 coordinates, shifted by the GeoJSON origin (the slide's place in a larger
        // frame; none by default), in both outputs.
        let [ox, oy] = self.config.geojson.origin;
        r.centroid_x += ox;
        r.centroid_y += oy;
        let ring: Vec<[f64; 2]> = outer_contour(m)
            .expect("a nucleus has a pixel")
            .closed_ring([0.0, 0.0])
            .into_iter()
            .map(|[x, y]| [x * s + ox, y * s + oy])
            .collect();
        Ok(Measured {
            key: nucleus_uuid(&self.plan.slide, id),
            ring,
            measurements: r,
        })
    }

    fn summary(&self, stats: &Stats, segment_seconds: f64, stitch_seconds: f64) -> SlideSummary {
        let mm2 = self
            .plan
            .mpp
            .map(|m| self.plan.tissue_area_px * m * m / 1e6);
        SlideSummary {
            plan: self.plan.clone(),
            nuclei: stats.count,
            tissue_area_mm2: mm2,
            density_per_mm2: mm2.filter(|&a| a > 0.0).map(|a| stats.count as f64 / a),
            area: distribution(&stats.area),
            area_unit: if self.plan.mpp.is_some() {
                "µm²"
            } else {
                "px²"
            }
            .into(),
            eccentricity: distribution(&stats.eccentricity),
            solidity: distribution(&stats.solidity),
            segment_seconds,
            stitch_seconds,
            tissue_mpx_per_second: if segment_seconds > 0.0 {
                self.plan.tissue_area_px / 1e6 / segment_seconds
            } else {
                0.0
            },
        }
    }
}

/// A nucleus ready to be written.
struct Measured {
    key: String,
    ring: Vec<[f64; 2]>,
    measurements: NucleusMeasurements,
}

/// A stable UUID (RFC 9562 version 8, from SHA-256) for nucleus `id` of `slide`.
pub fn nucleus_uuid(slide: &str, id: u32) -> String {
    let digest = Sha256::digest(format!("nucseg:{slide}:{id}").as_bytes());
    let mut b: [u8; 16] = digest[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0F) | 0x80;
    b[8] = (b[8] & 0x3F) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn remove_if_present(path: &Path) -> Result<(), SlideError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SlideError::io(path, e)),
        _ => Ok(()),
    }
}

/// The first field in which two plans differ, for the error message.
fn plan_difference(old: &SlidePlan, new: &SlidePlan) -> String {
    let (a, b) = (
        serde_json::to_value(old).expect("serializable"),
        serde_json::to_value(new).expect("serializable"),
    );
    let (a, b) = (
        a.as_object().expect("struct"),
        b.as_object().expect("struct"),
    );
    a.iter()
        .find(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| {
            let show = |v: &serde_json::Value| {
                let s = v.to_string();
                if s.len() > 40 {
                    format!("{}…", &s[..40])
                } else {
                    s
                }
            };
            format!("{k} was {}, now {}", show(v), show(&b[k]))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Histograms of the nuclei measurements (bounded memory, whatever the count) and the
/// nuclei density on a grid of thumbnail cells.
struct Stats {
    count: usize,
    area: Histogram,
    eccentricity: Histogram,
    solidity: Histogram,
    /// Nuclei per thumbnail pixel.
    density: Vec<u32>,
    width: u32,
    height: u32,
    /// Level-0 pixels per thumbnail pixel.
    cell: f64,
}

struct Histogram {
    max: f64,
    bins: Vec<u64>,
    sum: f64,
    n: u64,
}

impl Histogram {
    fn new(max: f64, bins: usize) -> Self {
        Histogram {
            max,
            bins: vec![0; bins],
            sum: 0.0,
            n: 0,
        }
    }

    fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        let k = ((v / self.max) * self.bins.len() as f64).max(0.0) as usize;
        let last = self.bins.len() - 1;
        self.bins[k.min(last)] += 1;
        self.sum += v;
        self.n += 1;
    }

    /// The `q`-quantile, at the centre of its bin.
    fn quantile(&self, q: f64) -> f64 {
        let target = (q * self.n as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (k, &c) in self.bins.iter().enumerate() {
            seen += c;
            if seen >= target {
                return (k as f64 + 0.5) * self.max / self.bins.len() as f64;
            }
        }
        self.max
    }
}

fn distribution(h: &Histogram) -> Option<Distribution> {
    (h.n > 0).then(|| Distribution {
        mean: h.sum / h.n as f64,
        p5: h.quantile(0.05),
        p25: h.quantile(0.25),
        median: h.quantile(0.5),
        p75: h.quantile(0.75),
        p95: h.quantile(0.95),
    })
}

impl Stats {
    /// Counts for a `width × height` thumbnail of `cell` level-0 pixels per pixel.
    fn new(width: u32, height: u32, cell: f64) -> Self {
        Stats {
            count: 0,
            // µm² (0.25 µm/px: 1000 µm² is a 16,000-px nucleus) or px²; 0.1-unit bins.
            area: Histogram::new(20_000.0, 200_000),
            eccentricity: Histogram::new(1.0, 1000),
            solidity: Histogram::new(1.0, 1000),
            density: vec![0; (width * height) as usize],
            width,
            height,
            cell,
        }
    }

    /// Counts one nucleus (measurements in level-0 pixels).
    fn add(&mut self, r: &NucleusMeasurements, mpp: Option<f64>) {
        self.count += 1;
        let unit = mpp.map_or(1.0, |m| m * m);
        self.area.add(r.area as f64 * unit);
        self.eccentricity.add(r.eccentricity);
        self.solidity.add(r.solidity);
        let x = ((r.centroid_x / self.cell) as u32).min(self.width - 1);
        let y = ((r.centroid_y / self.cell) as u32).min(self.height - 1);
        self.density[(y * self.width + x) as usize] += 1;
    }

    /// `thumbnail` with the tissue outlined in green and the nuclei density as a red tint
    /// (the densest cell fully red).
    fn picture(&self, thumbnail: &RgbImage, tissue: &TissueMask) -> RgbImage {
        let mut out = thumbnail.clone();
        let (h, w) = tissue.mask.dim();
        let max = self.density.iter().copied().max().unwrap_or(0).max(1) as f32;
        for y in 0..self.height.min(h as u32) {
            for x in 0..self.width.min(w as u32) {
                let d = self.density[(y * self.width + x) as usize] as f32 / max;
                let p = out.get_pixel_mut(x, y);
                if d > 0.0 {
                    let a = 0.25 + 0.75 * d;
                    p.0 = [
                        (p.0[0] as f32 * (1.0 - a) + 255.0 * a) as u8,
                        (p.0[1] as f32 * (1.0 - a)) as u8,
                        (p.0[2] as f32 * (1.0 - a)) as u8,
                    ];
                }
                let (xu, yu) = (x as usize, y as usize);
                let inside = tissue.mask[[yu, xu]];
                let edge = inside
                    && (xu == 0
                        || yu == 0
                        || xu + 1 == w
                        || yu + 1 == h
                        || !tissue.mask[[yu - 1, xu]]
                        || !tissue.mask[[yu + 1, xu]]
                        || !tissue.mask[[yu, xu - 1]]
                        || !tissue.mask[[yu, xu + 1]]);
                if edge {
                    p.0 = [0, 200, 0];
                }
            }
        }
        out
    }
}
