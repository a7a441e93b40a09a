//! Data sets: a MoNuSeg / Kumar folder (images + XML polygons or label maps), with the Kumar
//! et al. (2017) train / test split by name, and a generic folder of image / mask pairs
//! (e.g. Naylor et al.'s TNBC set).

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use super::{
    image_io::read_rgb, label_map::read_instance_mask, monuseg_xml::read_monuseg_xml, DataError,
    LabelMap, MaskKind, RgbImage,
};

/// Tissue of origin, as Kumar et al. (2017) name it (their "liver" images are TCGA lung
/// cases by project code; the name is kept for comparability with the literature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Organ {
    Breast,
    Kidney,
    Liver,
    Prostate,
    Bladder,
    Colon,
    Stomach,
}

impl Organ {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Organ::Breast => "breast",
            Organ::Kidney => "kidney",
            Organ::Liver => "liver",
            Organ::Prostate => "prostate",
            Organ::Bladder => "bladder",
            Organ::Colon => "colon",
            Organ::Stomach => "stomach",
        }
    }
}

impl fmt::Display for Organ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The split of Kumar et al. (2017), used by Jung et al. (2019): 16 training images (4 each
/// of breast, kidney, liver, prostate) and 14 test images (8 of the same organs, 6 of
/// unseen organs: bladder, colon, stomach).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KumarSplit {
    /// The 16 training images.
    Train,
    /// The 8 test images of the training organs.
    TestSameOrgan,
    /// The 6 test images of unseen organs.
    TestUnseenOrgan,
    /// All 14 test images.
    Test,
    /// All 30 images.
    All,
}

impl KumarSplit {
    /// Whether an image of split `of` belongs to this (possibly compound) split.
    pub fn contains(self, of: KumarSplit) -> bool {
        match self {
            KumarSplit::All => true,
            KumarSplit::Test => {
                matches!(of, KumarSplit::TestSameOrgan | KumarSplit::TestUnseenOrgan)
            }
            s => s == of,
        }
    }

    /// The Kumar image ids of this split.
    pub fn ids(self) -> Vec<&'static str> {
        KUMAR_IMAGES
            .iter()
            .filter(|(_, _, s)| self.contains(*s))
            .map(|(id, _, _)| *id)
            .collect()
    }

    /// The name used in `index.tsv` and on command lines.
    pub fn name(self) -> &'static str {
        match self {
            KumarSplit::Train => "train",
            KumarSplit::TestSameOrgan => "test_same_organ",
            KumarSplit::TestUnseenOrgan => "test_unseen_organ",
            KumarSplit::Test => "test",
            KumarSplit::All => "all",
        }
    }
}

impl FromStr for KumarSplit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            KumarSplit::Train,
            KumarSplit::TestSameOrgan,
            KumarSplit::TestUnseenOrgan,
            KumarSplit::Test,
            KumarSplit::All,
        ]
        .into_iter()
        .find(|k| k.name() == s)
        .ok_or_else(|| {
            format!("unknown split `{s}`: expected train, test_same_organ, test_unseen_organ, test or all")
        })
    }
}

use KumarSplit::{TestSameOrgan as SAME, TestUnseenOrgan as UNSEEN, Train as TRAIN};
use Organ::*;

/// The 30 images of Kumar et al. (2017) = the MoNuSeg 2018 training set: TCGA id, organ,
/// split.
pub const KUMAR_IMAGES: [(&str, Organ, KumarSplit); 30] = [
    ("TCGA-18-5592-01Z-00-DX1", Liver, TRAIN),
    ("TCGA-21-5784-01Z-00-DX1", Liver, SAME),
    ("TCGA-21-5786-01Z-00-DX1", Liver, SAME),
    ("TCGA-38-6178-01Z-00-DX1", Liver, TRAIN),
    ("TCGA-49-4488-01Z-00-DX1", Liver, TRAIN),
    ("TCGA-50-5931-01Z-00-DX1", Liver, TRAIN),
    ("TCGA-A7-A13E-01Z-00-DX1", Breast, TRAIN),
    ("TCGA-A7-A13F-01Z-00-DX1", Breast, TRAIN),
    ("TCGA-AR-A1AK-01Z-00-DX1", Breast, TRAIN),
    ("TCGA-AR-A1AS-01Z-00-DX1", Breast, TRAIN),
    ("TCGA-AY-A8YK-01A-01-TS1", Colon, UNSEEN),
    ("TCGA-B0-5698-01Z-00-DX1", Kidney, SAME),
    ("TCGA-B0-5710-01Z-00-DX1", Kidney, SAME),
    ("TCGA-B0-5711-01Z-00-DX1", Kidney, TRAIN),
    ("TCGA-CH-5767-01Z-00-DX1", Prostate, SAME),
    ("TCGA-DK-A2I6-01A-01-TS1", Bladder, UNSEEN),
    ("TCGA-E2-A14V-01Z-00-DX1", Breast, SAME),
    ("TCGA-E2-A1B5-01Z-00-DX1", Breast, SAME),
    ("TCGA-G2-A2EK-01A-02-TSB", Bladder, UNSEEN),
    ("TCGA-G9-6336-01Z-00-DX1", Prostate, TRAIN),
    ("TCGA-G9-6348-01Z-00-DX1", Prostate, TRAIN),
    ("TCGA-G9-6356-01Z-00-DX1", Prostate, TRAIN),
    ("TCGA-G9-6362-01Z-00-DX1", Prostate, SAME),
    ("TCGA-G9-6363-01Z-00-DX1", Prostate, TRAIN),
    ("TCGA-HE-7128-01Z-00-DX1", Kidney, TRAIN),
    ("TCGA-HE-7129-01Z-00-DX1", Kidney, TRAIN),
    ("TCGA-HE-7130-01Z-00-DX1", Kidney, TRAIN),
    ("TCGA-KB-A93J-01A-01-TS1", Stomach, UNSEEN),
    ("TCGA-NH-A8F7-01A-01-TS1", Colon, UNSEEN),
    ("TCGA-RD-A8N9-01A-01-TS1", Stomach, UNSEEN),
];

/// Where a sample's ground truth comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TruthFile {
    /// An instance label map (or a binary mask, split per its [`MaskKind`]).
    LabelMap(PathBuf, MaskKind),
    /// A MoNuSeg XML annotation, rasterized on load.
    Xml(PathBuf),
}

impl TruthFile {
    /// The file's path.
    pub fn path(&self) -> &Path {
        match self {
            TruthFile::LabelMap(p, _) | TruthFile::Xml(p) => p,
        }
    }

    /// Reads the truth; an XML file is rasterized at `size` (the image's width, height),
    /// an error if any of its polygons lies wholly outside that image.
    pub fn read(&self, size: (u32, u32)) -> Result<LabelMap, DataError> {
        match self {
            TruthFile::LabelMap(p, kind) => read_instance_mask(p, *kind),
            TruthFile::Xml(p) => {
                let annotation = read_monuseg_xml(p)?;
                annotation.check_inside(p, size.0, size.1)?;
                Ok(annotation.to_label_map(size.0, size.1))
            }
        }
    }
}

/// One image of a data set, before loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleInfo {
    /// The file stem shared by the image and its truth.
    pub id: String,
    /// The image file.
    pub image: PathBuf,
    /// The ground truth, when the data set has it.
    pub truth: Option<TruthFile>,
    /// Organ, for the Kumar images.
    pub organ: Option<Organ>,
    /// Kumar split, for the Kumar images.
    pub split: Option<KumarSplit>,
}

impl SampleInfo {
    /// Loads the image and its truth, checking that their sizes agree.
    pub fn load(&self) -> Result<Sample, DataError> {
        let image = read_rgb(&self.image)?;
        let size = image.dimensions();
        let labels = match &self.truth {
            Some(truth) => {
                let labels = truth.read(size)?;
                if labels.dimensions() != size {
                    return Err(DataError::SizeMismatch {
                        a: self.image.clone(),
                        a_size: size,
                        b: truth.path().to_path_buf(),
                        b_size: labels.dimensions(),
                    });
                }
                Some(labels)
            }
            None => None,
        };
        Ok(Sample {
            info: self.clone(),
            image,
            labels,
        })
    }

    /// Loads the image and its truth, which `purpose` (e.g. "training") needs: a sample
    /// without ground truth is [`DataError::Dataset`] saying so.
    pub fn load_annotated(&self, purpose: &str) -> Result<(RgbImage, LabelMap), DataError> {
        let sample = self.load()?;
        let labels = sample.labels.ok_or_else(|| DataError::Dataset {
            dir: self.image.clone(),
            message: format!("{purpose} needs ground truth, and this image has none"),
        })?;
        Ok((sample.image, labels))
    }
}

/// A loaded image with its ground truth.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Where it came from.
    pub info: SampleInfo,
    /// The H&E image.
    pub image: RgbImage,
    /// The instance label map, when the data set has truth.
    pub labels: Option<LabelMap>,
}

/// A MoNuSeg / Kumar folder: `images/<id>.tif` (or the official `Tissue Images/`), and for
/// truth `labels/<id>.png` label maps or `annotations/<id>.xml` (or `Annotations/`)
/// polygons. Label maps are preferred where both exist.
#[derive(Debug, Clone)]
pub struct MonusegDataset {
    root: PathBuf,
    samples: Vec<SampleInfo>,
}

impl MonusegDataset {
    /// Scans a MoNuSeg folder. Images without any truth file are an error naming them.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, DataError> {
        let root = root.as_ref().to_path_buf();
        let images_dir = first_dir(&root, &["images", "Tissue Images", "Tissue images"])
            .ok_or_else(|| DataError::Dataset {
                dir: root.clone(),
                message: "no images/ (or `Tissue Images/`) folder: not a MoNuSeg folder".into(),
            })?;
        let labels = list_files(
            &first_dir(&root, &["labels"]).unwrap_or_default(),
            &["png", "tif", "tiff"],
        )?;
        let xmls = list_files(
            &first_dir(&root, &["annotations", "Annotations"]).unwrap_or_default(),
            &["xml"],
        )?;
        let images = list_files(&images_dir, IMAGE_EXTENSIONS)?;
        if images.is_empty() {
            return Err(DataError::Dataset {
                dir: images_dir,
                message: "no images (.tif, .png, .jpg) found".into(),
            });
        }
        let mut missing = Vec::new();
        let mut samples = Vec::new();
        for (id, image) in images {
            let truth = if let Some(p) = labels.get(&id) {
                TruthFile::LabelMap(p.clone(), MaskKind::Instance)
            } else if let Some(p) = xmls.get(&id) {
                TruthFile::Xml(p.clone())
            } else {
                missing.push(id);
                continue;
            };
            let kumar = KUMAR_IMAGES.iter().find(|(k, _, _)| *k == id);
            samples.push(SampleInfo {
                organ: kumar.map(|k| k.1),
                split: kumar.map(|k| k.2),
                id,
                image,
                truth: Some(truth),
            });
        }
        if !missing.is_empty() {
            return Err(DataError::Pairing {
                dir: root,
                message: format!(
                    "{} image(s) have neither labels/<id>.png nor annotations/<id>.xml: {}",
                    missing.len(),
                    name_list(&missing)
                ),
            });
        }
        Ok(MonusegDataset { root, samples })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every image, sorted by id.
    pub fn samples(&self) -> &[SampleInfo] {
        &self.samples
    }

    /// The images of a Kumar split. An error if the folder lacks any of them, so that a
    /// reported figure is never silently computed on fewer images.
    pub fn split(&self, split: KumarSplit) -> Result<Vec<SampleInfo>, DataError> {
        let wanted = split.ids();
        let missing: Vec<String> = wanted
            .iter()
            .filter(|id| !self.samples.iter().any(|s| s.id == **id))
            .map(|id| id.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(DataError::Dataset {
                dir: self.root.clone(),
                message: format!(
                    "the Kumar `{}` split needs {} image(s) not found here: {}",
                    split.name(),
                    missing.len(),
                    name_list(&missing)
                ),
            });
        }
        Ok(self
            .samples
            .iter()
            .filter(|s| wanted.contains(&s.id.as_str()))
            .cloned()
            .collect())
    }
}

/// A folder of images and a folder of masks (label maps or binary masks) paired by file
/// stem, e.g. Naylor et al.'s `images/NN_k.png` + `masks/NN_k.png`.
#[derive(Debug, Clone)]
pub struct PairedFolderDataset {
    samples: Vec<SampleInfo>,
}

impl PairedFolderDataset {
    /// Pairs `images_dir` with `masks_dir` by stem. Any unpaired name on either side is an
    /// error listing them.
    pub fn open(
        images_dir: impl AsRef<Path>,
        masks_dir: impl AsRef<Path>,
        kind: MaskKind,
    ) -> Result<Self, DataError> {
        let (images_dir, masks_dir) = (images_dir.as_ref(), masks_dir.as_ref());
        let images = list_files(images_dir, IMAGE_EXTENSIONS)?;
        let masks = list_files(masks_dir, &["png", "tif", "tiff"])?;
        if images.is_empty() {
            return Err(DataError::Dataset {
                dir: images_dir.to_path_buf(),
                message: "no images found".into(),
            });
        }
        let no_mask: Vec<String> = images
            .keys()
            .filter(|k| !masks.contains_key(*k))
            .cloned()
            .collect();
        let no_image: Vec<String> = masks
            .keys()
            .filter(|k| !images.contains_key(*k))
            .cloned()
            .collect();
        if !no_mask.is_empty() || !no_image.is_empty() {
            let mut parts = Vec::new();
            if !no_mask.is_empty() {
                parts.push(format!(
                    "{} image(s) without a mask in {}: {}",
                    no_mask.len(),
                    masks_dir.display(),
                    name_list(&no_mask)
                ));
            }
            if !no_image.is_empty() {
                parts.push(format!(
                    "{} mask(s) without an image: {}",
                    no_image.len(),
                    name_list(&no_image)
                ));
            }
            return Err(DataError::Pairing {
                dir: images_dir.to_path_buf(),
                message: parts.join("; "),
            });
        }
        let samples = images
            .into_iter()
            .map(|(id, image)| SampleInfo {
                truth: Some(TruthFile::LabelMap(masks[&id].clone(), kind)),
                id,
                image,
                organ: None,
                split: None,
            })
            .collect();
        Ok(PairedFolderDataset { samples })
    }

    /// Naylor et al.'s TNBC layout: `root/images` and `root/masks` (binary, 255 = nucleus;
    /// touching nuclei are not separated, so instances are connected components).
    pub fn naylor(root: impl AsRef<Path>) -> Result<Self, DataError> {
        let root = root.as_ref();
        Self::open(root.join("images"), root.join("masks"), MaskKind::Binary)
    }

    /// Every pair, sorted by id.
    pub fn samples(&self) -> &[SampleInfo] {
        &self.samples
    }
}

fn first_dir(root: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| root.join(n)).find(|p| p.is_dir())
}

/// Files of a folder with one of `extensions`, keyed by stem. A missing folder is empty
/// (an empty path means "no folder"); two files with one stem (`x.png`, `x.jpg`) are a
/// [`DataError::DuplicateStem`], never a silent choice.
pub(crate) fn list_files(
    dir: &Path,
    extensions: &[&str],
) -> Result<BTreeMap<String, PathBuf>, DataError> {
    let mut out = BTreeMap::new();
    if dir.as_os_str().is_empty() {
        return Ok(out);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string);
        if let (Some(ext), Some(stem)) = (ext, stem) {
            if extensions.contains(&ext.as_str()) && !stem.starts_with('.') && path.is_file() {
                if let Some(first) = out.insert(stem.clone(), path.clone()) {
                    let (first, second) = if first < path {
                        (first, path)
                    } else {
                        (path, first)
                    };
                    return Err(DataError::DuplicateStem {
                        dir: dir.to_path_buf(),
                        stem,
                        first,
                        second,
                    });
                }
            }
        }
    }
    Ok(out)
}

pub(crate) fn name_list(names: &[String]) -> String {
    let mut s = names.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 8 {
        s.push_str(&format!(", … ({} more)", names.len() - 8));
    }
    s
}

/// The image files (PNG, JPEG, TIFF) of a folder, sorted by name; an error if the folder
/// is missing or holds none.
pub fn list_images(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, DataError> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(DataError::Dataset {
            dir: dir.to_path_buf(),
            message: "not a folder".into(),
        });
    }
    let files: Vec<PathBuf> = list_files(dir, IMAGE_EXTENSIONS)?.into_values().collect();
    if files.is_empty() {
        return Err(DataError::Dataset {
            dir: dir.to_path_buf(),
            message: "no .png, .jpg or .tif images found".into(),
        });
    }
    Ok(files)
}

/// The annotated images of a data-set folder, whatever its layout: a MoNuSeg / Kumar folder
/// (`images/` with `labels/` or `annotations/`), or a folder of pairs `images/` +
/// `masks/` (binary or instance masks, split by [`MaskKind::Auto`]). Sorted by id.
pub fn open_dataset(root: impl AsRef<Path>) -> Result<Vec<SampleInfo>, DataError> {
    let root = root.as_ref();
    let has = |name: &str| root.join(name).is_dir();
    if has("masks") && !has("labels") && !has("annotations") && !has("Annotations") {
        let images =
            first_dir(root, &["images", "Tissue Images"]).ok_or_else(|| DataError::Dataset {
                dir: root.to_path_buf(),
                message: "has masks/ but no images/".into(),
            })?;
        return Ok(
            PairedFolderDataset::open(images, root.join("masks"), MaskKind::Auto)?
                .samples()
                .to_vec(),
        );
    }
    Ok(MonusegDataset::open(root)?.samples().to_vec())
}

/// The images named by a command-line argument: the file itself, or every image in a
/// folder (sorted). An error if it is neither, or a folder without images.
pub fn image_inputs(path: impl AsRef<Path>) -> Result<Vec<PathBuf>, DataError> {
    let path = path.as_ref();
    if path.is_file() {
        Ok(vec![path.to_path_buf()])
    } else if path.is_dir() {
        list_images(path)
    } else {
        Err(DataError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        ))
    }
}

/// Files of an existing folder with one of `extensions`, keyed by stem; an error naming the
/// folder if it does not exist.
pub(crate) fn files_by_stem(
    dir: &Path,
    extensions: &[&str],
) -> Result<BTreeMap<String, PathBuf>, DataError> {
    if !dir.is_dir() {
        return Err(DataError::Dataset {
            dir: dir.to_path_buf(),
            message: "not a folder".into(),
        });
    }
    list_files(dir, extensions)
}

/// File extensions read as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "tif", "tiff", "jpg", "jpeg"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kumar_table_has_the_paper_split() {
        let count = |s: KumarSplit| KUMAR_IMAGES.iter().filter(|k| s.contains(k.2)).count();
        assert_eq!(count(KumarSplit::Train), 16);
        assert_eq!(count(KumarSplit::TestSameOrgan), 8);
        assert_eq!(count(KumarSplit::TestUnseenOrgan), 6);
        assert_eq!(count(KumarSplit::Test), 14);
        for organ in [Breast, Kidney, Liver, Prostate] {
            let n = KUMAR_IMAGES
                .iter()
                .filter(|k| k.1 == organ && k.2 == TRAIN)
                .count();
            assert_eq!(n, 4, "{organ}");
        }
        for k in KUMAR_IMAGES.iter().filter(|k| k.2 == UNSEEN) {
            assert!(matches!(k.1, Bladder | Colon | Stomach));
        }
        assert_eq!("test".parse::<KumarSplit>(), Ok(KumarSplit::Test));
        assert!("val".parse::<KumarSplit>().is_err());
    }

    #[test]
    fn paired_folder_reports_unpaired_names() {
        let dir = crate::test_util::temp_dir("pairs");
        let (im, mk) = (dir.join("images"), dir.join("masks"));
        std::fs::create_dir_all(&im).unwrap();
        std::fs::create_dir_all(&mk).unwrap();
        let img = RgbImage::new(4, 4);
        img.save(im.join("a.png")).unwrap();
        img.save(im.join("b.png")).unwrap();
        image::GrayImage::new(4, 4).save(mk.join("a.png")).unwrap();
        image::GrayImage::new(4, 3).save(mk.join("c.png")).unwrap();
        let err = PairedFolderDataset::open(&im, &mk, MaskKind::Binary).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("b") && msg.contains("c"), "{msg}");

        std::fs::remove_file(im.join("b.png")).unwrap();
        std::fs::rename(mk.join("c.png"), mk.join("b.png")).unwrap();
        img.save(im.join("b.png")).unwrap();
        let ds = PairedFolderDataset::open(&im, &mk, MaskKind::Binary).unwrap();
        assert_eq!(ds.samples().len(), 2);
        assert!(ds.samples()[0].load().is_ok());
        let err = ds.samples()[1].load().unwrap_err();
        assert!(matches!(err, DataError::SizeMismatch { .. }), "{err}");
        assert!(err.to_string().contains("4x3"), "{err}");
    }
}
