//! MNIST and Fashion-MNIST loading from the standard IDX files.
//!
//! A data directory holds one folder per data set, each with the four files
//! of the original distribution, gzip-compressed or plain:
//!
//! ```text
//! <data_dir>/mnist/train-images-idx3-ubyte[.gz]
//! <data_dir>/mnist/train-labels-idx1-ubyte[.gz]
//! <data_dir>/mnist/t10k-images-idx3-ubyte[.gz]
//! <data_dir>/mnist/t10k-labels-idx1-ubyte[.gz]
//! <data_dir>/fashion-mnist/...   (same four names)
//! ```
//!
//! `scripts/setup-data.sh [DIR]` creates this layout from the original
//! sources. [`default_data_dir`] is `$RELEQ_DATA` if set, else `./data`.
//!
//! For each file, `NAME` is tried first and then `NAME.gz`; whether the
//! content is gzip-compressed is decided by its first two bytes (`1f 8b`),
//! not by the extension. The IDX header (big-endian magic number followed by
//! one big-endian `u32` per dimension) is parsed here; every problem with a
//! file is reported as a [`DataError`] naming the file.
//!
//! Users' data sets are `.npy` files instead ([`NpyFiles`]: images and
//! labels, `--data images.npy,labels.npy` or a directory holding
//! `images.npy` and `labels.npy`); they are read by `crate::eval::load_inputs`
//! because how the images become input codes depends on the model. Their
//! validation split is [`holdout`]: a seeded 10 % of the samples.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

/// Environment variable that overrides the default data directory.
pub const DATA_ENV: &str = "RELEQ_DATA";

/// IDX magic number of an image file (unsigned bytes, 3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;

/// IDX magic number of a label file (unsigned bytes, 1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Number of classes of both data sets; labels are `0..NUM_CLASSES`.
pub const NUM_CLASSES: usize = 10;

/// Most bytes reserved before reading a payload (more grows as read).
const MAX_RESERVE: u64 = 64 << 20;

/// The two magic bytes that start a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A supported data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dataset {
    /// MNIST handwritten digits, 28x28 grey, 60,000 train + 10,000 test.
    Mnist,
    /// Fashion-MNIST clothing images, 28x28 grey, 60,000 train + 10,000 test.
    FashionMnist,
}

impl Dataset {
    /// Every supported data set.
    pub const ALL: [Dataset; 2] = [Dataset::Mnist, Dataset::FashionMnist];

    /// Name of the data set's folder inside the data directory; also its
    /// command-line value name.
    pub fn dir_name(self) -> &'static str {
        match self {
            Dataset::Mnist => "mnist",
            Dataset::FashionMnist => "fashion-mnist",
        }
    }

    /// Human-readable name, e.g. for report titles.
    pub fn title(self) -> &'static str {
        match self {
            Dataset::Mnist => "MNIST",
            Dataset::FashionMnist => "Fashion-MNIST",
        }
    }

    /// Names of the ten classes, indexed by label.
    pub fn class_names(self) -> [&'static str; NUM_CLASSES] {
        match self {
            Dataset::Mnist => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            Dataset::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
        }
    }
}

/// Prints the command-line value name (`mnist`, `fashion-mnist`).
impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// Which part of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training split (`train-*` files, 60,000 samples).
    Train,
    /// The test split (`t10k-*` files, 10,000 samples).
    Test,
}

impl Split {
    /// Prefix of the split's file names (`train` or `t10k`).
    pub fn file_prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }

    /// File name (without `.gz`) of the split's image file.
    pub fn images_file_name(self) -> String {
        format!("{}-images-idx3-ubyte", self.file_prefix())
    }

    /// File name (without `.gz`) of the split's label file.
    pub fn labels_file_name(self) -> String {
        format!("{}-labels-idx1-ubyte", self.file_prefix())
    }
}

/// Prints `train` or `test`.
impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

/// A loaded split: grey images with their labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// Number of images (and labels).
    pub count: usize,
    /// Rows (height) of each image.
    pub rows: usize,
    /// Columns (width) of each image.
    pub cols: usize,
    /// All pixels, image after image, each image row-major:
    /// `count * rows * cols` bytes, 0 = background.
    pub pixels: Vec<u8>,
    /// One label per image, each in `0..NUM_CLASSES`.
    pub labels: Vec<u8>,
}

impl Images {
    /// Pixels of one image (`rows * cols` bytes, row-major).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(i < self.count, "image index {i} out of range (count {})", self.count);
        let size = self.image_size();
        &self.pixels[i * size..(i + 1) * size]
    }

    /// Label of one image.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// Pixels per image (`rows * cols`).
    pub fn image_size(&self) -> usize {
        self.rows * self.cols
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Why a data set could not be loaded. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Neither `NAME` nor `NAME.gz` exists.
    #[error(
        "data file not found: {} (nor {}.gz); to obtain MNIST and Fashion-MNIST run \
         `scripts/setup-data.sh [DIR]` (default DIR: ./data), or point releq at an \
         existing data directory with `--data-dir DIR` or the {DATA_ENV} environment variable \
         (DIR must contain mnist/ and fashion-mnist/)",
        path.display(),
        path.display()
    )]
    Missing {
        /// The path tried first (without `.gz`).
        path: PathBuf,
    },

    /// The file exists but could not be read (or is not valid gzip).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The file does not start with the expected IDX magic number.
    #[error(
        "{}: bad magic number: expected 0x{expected:08x} (IDX {kind} file), found 0x{found:08x}",
        path.display()
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// `"image"` or `"label"`.
        kind: &'static str,
        /// [`IMAGES_MAGIC`] or [`LABELS_MAGIC`].
        expected: u32,
        /// What the file holds instead.
        found: u32,
    },

    /// The (decompressed) file ends before its header or payload does.
    #[error(
        "{}: truncated file: expected {expected} bytes of {part}, found {found}",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// `"header"` or `"payload"`.
        part: &'static str,
        /// Bytes the header announces (or the header's own size).
        expected: u64,
        /// Bytes actually present.
        found: u64,
    },

    /// The header is readable but unusable (dimensions too large, data
    /// after the payload).
    #[error("{}: malformed IDX file: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The image and label files disagree on the number of samples.
    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Number of images in it.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Number of labels in it.
        labels: usize,
    },

    /// A `--data` value that names no `.npy` data set.
    #[error("--data {spec}: {reason}")]
    NpySpec {
        /// The value given.
        spec: String,
        /// What is wrong.
        reason: String,
    },

    /// A label is not a class index (`0..=9`).
    #[error(
        "{}: label {value} at index {index} is out of range (labels must be 0..=9)",
        path.display()
    )]
    BadLabel {
        /// The label file.
        path: PathBuf,
        /// Zero-based sample index.
        index: usize,
        /// The offending value.
        value: u8,
    },
}

/// A data set given as two `.npy` files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyFiles {
    /// The images (any input layout and type `crate::eval` reads).
    pub images: PathBuf,
    /// The labels, one integer per image.
    pub labels: PathBuf,
}

impl NpyFiles {
    /// `images.npy,labels.npy`, or a directory holding `images.npy` and
    /// `labels.npy`. Checks that both files exist.
    pub fn parse(spec: &str) -> Result<Self, DataError> {
        let files = match spec.split_once(',') {
            Some((i, l)) => NpyFiles { images: PathBuf::from(i.trim()), labels: PathBuf::from(l.trim()) },
            None if Path::new(spec).is_dir() => {
                NpyFiles { images: Path::new(spec).join("images.npy"), labels: Path::new(spec).join("labels.npy") }
            }
            None => {
                return Err(DataError::NpySpec {
                    spec: spec.into(),
                    reason: "expected IMAGES.npy,LABELS.npy or a directory holding images.npy and labels.npy".into(),
                })
            }
        };
        for f in [&files.images, &files.labels] {
            if !f.is_file() {
                return Err(DataError::NpySpec { spec: spec.into(), reason: format!("{} is not a file", f.display()) });
            }
        }
        Ok(files)
    }
}

/// The validation split of a user's data set of `n` samples under `seed`:
/// (the rest, in order; the held-out 10 %, `n / 10` samples). The same
/// shuffle `releq train` uses for the built-in training sets.
pub fn holdout(n: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    use rand::seq::SliceRandom as _;
    use rand::SeedableRng as _;
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::MAX));
    let mut val = idx.split_off(n - n / 10);
    idx.sort_unstable();
    val.sort_unstable();
    (idx, val)
}

/// The default data directory: `$RELEQ_DATA` if set (and not empty), else
/// `./data`.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os(DATA_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("./data"),
    }
}

/// Loads one split of a data set from `<data_dir>/<dataset.dir_name()>/`.
///
/// Checks both headers, that the files hold as many bytes as their headers
/// announce, that there are as many labels as images and that every label
/// is below 10.
pub fn load(data_dir: &Path, dataset: Dataset, split: Split) -> Result<Images, DataError> {
    let dir = data_dir.join(dataset.dir_name());
    let images_path = dir.join(split.images_file_name());
    let labels_path = dir.join(split.labels_file_name());

    let (images_path, images) = read_idx(&images_path, IdxKind::Images)?;
    let (labels_path, labels) = read_idx(&labels_path, IdxKind::Labels)?;

    let count = images.dims[0];
    if labels.dims[0] != count {
        return Err(DataError::CountMismatch { images_path, images: count, labels_path, labels: labels.dims[0] });
    }
    if let Some((index, &value)) = labels.data.iter().enumerate().find(|&(_, &v)| usize::from(v) >= NUM_CLASSES) {
        return Err(DataError::BadLabel { path: labels_path, index, value });
    }

    Ok(Images { count, rows: images.dims[1], cols: images.dims[2], pixels: images.data, labels: labels.data })
}

/// Which of the two IDX file types is expected.
#[derive(Debug, Clone, Copy)]
enum IdxKind {
    Images,
    Labels,
}

impl IdxKind {
    fn magic(self) -> u32 {
        match self {
            IdxKind::Images => IMAGES_MAGIC,
            IdxKind::Labels => LABELS_MAGIC,
        }
    }

    fn name(self) -> &'static str {
        match self {
            IdxKind::Images => "image",
            IdxKind::Labels => "label",
        }
    }

    fn ndims(self) -> usize {
        match self {
            IdxKind::Images => 3,
            IdxKind::Labels => 1,
        }
    }
}

/// A parsed IDX file of unsigned bytes.
struct Idx {
    dims: Vec<usize>,
    data: Vec<u8>,
}

/// Opens `path`, or `path.gz` if `path` does not exist. Returns the path
/// actually opened.
fn open_plain_or_gz(path: &Path) -> Result<(PathBuf, File), DataError> {
    match File::open(path) {
        Ok(file) => return Ok((path.to_path_buf(), file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(DataError::Io { path: path.to_path_buf(), source }),
    }
    let mut gz = path.as_os_str().to_owned();
    gz.push(".gz");
    let gz = PathBuf::from(gz);
    match File::open(&gz) {
        Ok(file) => Ok((gz, file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(DataError::Missing { path: path.to_path_buf() }),
        Err(source) => Err(DataError::Io { path: gz, source }),
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads and checks a whole IDX file (plain or gzip). Returns the path
/// actually read (`NAME` or `NAME.gz`) with the content.
fn read_idx(path: &Path, kind: IdxKind) -> Result<(PathBuf, Idx), DataError> {
    let (path, file) = open_plain_or_gz(path)?;
    let mut buffered = BufReader::with_capacity(1 << 16, file);
    // Peek (without consuming) at the first bytes to detect gzip. The first
    // fill of a fresh 64 KiB buffer from a regular file holds at least two
    // bytes unless the file is shorter than that.
    let is_gzip = match buffered.fill_buf() {
        Ok(head) => head.starts_with(&GZIP_MAGIC),
        Err(source) => return Err(DataError::Io { path, source }),
    };
    let idx = if is_gzip {
        parse_idx(&path, kind, &mut MultiGzDecoder::new(buffered))
    } else {
        parse_idx(&path, kind, &mut buffered)
    }?;
    Ok((path, idx))
}

/// Parses IDX content from `reader` (already decompressed).
fn parse_idx(path: &Path, kind: IdxKind, reader: &mut impl Read) -> Result<Idx, DataError> {
    let io_err = |source| DataError::Io { path: path.to_path_buf(), source };
    let header_len = 4 * (1 + kind.ndims());
    let mut header = vec![0u8; header_len];
    let got = read_full(reader, &mut header).map_err(io_err)?;
    let word = |i: usize| u32::from_be_bytes([header[4 * i], header[4 * i + 1], header[4 * i + 2], header[4 * i + 3]]);

    // Check the magic as soon as it is there, so that a wrong or tiny file
    // is reported as such rather than as a truncated one.
    if got >= 4 && word(0) != kind.magic() {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            kind: kind.name(),
            expected: kind.magic(),
            found: word(0),
        });
    }
    if got < header_len {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            part: "header",
            expected: header_len as u64,
            found: got as u64,
        });
    }

    let dims: Vec<u32> = (1..=kind.ndims()).map(word).collect();
    let payload = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .filter(|&n| usize::try_from(n).is_ok())
        .ok_or_else(|| DataError::Malformed {
            path: path.to_path_buf(),
            reason: format!("dimensions {dims:?} are too large"),
        })?;

    // Read at most one byte more than announced: memory grows with the
    // data actually present, never with what a broken header claims.
    // Reserve up front for real-sized data sets (MNIST train: 47 MB).
    let mut data = Vec::with_capacity(payload.min(MAX_RESERVE) as usize);
    reader.take(payload + 1).read_to_end(&mut data).map_err(io_err)?;
    let found = data.len() as u64;
    if found < payload {
        return Err(DataError::Truncated { path: path.to_path_buf(), part: "payload", expected: payload, found });
    }
    if found > payload {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            reason: format!("data after the {payload} bytes of payload announced by dimensions {dims:?}"),
        });
    }

    Ok(Idx {
        // Lossless: usize is at least 32 bits on every host releq supports.
        dims: dims.iter().map(|&d| d as usize).collect(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [IMAGES_MAGIC, count, rows, cols] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v.extend_from_slice(pixels);
        v
    }

    fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [LABELS_MAGIC, labels.len() as u32] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v.extend_from_slice(labels);
        v
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// 3 images of 2x4 pixels with pixel value = 10*image + offset.
    fn sample_pixels() -> Vec<u8> {
        (0..3u8).flat_map(|i| (0..8u8).map(move |p| 10 * i + p)).collect()
    }

    const SAMPLE_LABELS: [u8; 3] = [7, 0, 9];

    /// Writes `files` (name, bytes) into `<tmp>/<dataset dir>/`.
    fn write_set(dataset: Dataset, files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(dataset.dir_name());
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        tmp
    }

    fn good_images() -> Vec<u8> {
        idx_images(3, 2, 4, &sample_pixels())
    }

    fn good_labels() -> Vec<u8> {
        idx_labels(&SAMPLE_LABELS)
    }

    fn check_sample(images: &Images) {
        assert_eq!(images.count, 3);
        assert_eq!(images.len(), 3);
        assert!(!images.is_empty());
        assert_eq!((images.rows, images.cols), (2, 4));
        assert_eq!(images.image_size(), 8);
        assert_eq!(images.pixels, sample_pixels());
        assert_eq!(images.labels, SAMPLE_LABELS);
        assert_eq!(images.image(0), &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(images.image(2), &[20, 21, 22, 23, 24, 25, 26, 27]);
        assert_eq!(images.label(1), 0);
    }

    #[test]
    fn parses_plain_files() {
        let tmp = write_set(
            Dataset::Mnist,
            &[("train-images-idx3-ubyte", good_images()), ("train-labels-idx1-ubyte", good_labels())],
        );
        let images = load(tmp.path(), Dataset::Mnist, Split::Train).unwrap();
        check_sample(&images);
    }

    #[test]
    fn parses_gzipped_files() {
        let tmp = write_set(
            Dataset::FashionMnist,
            &[("t10k-images-idx3-ubyte.gz", gzip(&good_images())), ("t10k-labels-idx1-ubyte.gz", gzip(&good_labels()))],
        );
        let images = load(tmp.path(), Dataset::FashionMnist, Split::Test).unwrap();
        check_sample(&images);
        // The other data set's folder and the other split are not there.
        assert!(matches!(load(tmp.path(), Dataset::Mnist, Split::Test), Err(DataError::Missing { .. })));
        assert!(matches!(load(tmp.path(), Dataset::FashionMnist, Split::Train), Err(DataError::Missing { .. })));
    }

    #[test]
    fn detects_gzip_by_magic_not_extension() {
        // Gzip content without `.gz`, plain content with `.gz`.
        let tmp = write_set(
            Dataset::Mnist,
            &[("t10k-images-idx3-ubyte", gzip(&good_images())), ("t10k-labels-idx1-ubyte.gz", good_labels())],
        );
        let images = load(tmp.path(), Dataset::Mnist, Split::Test).unwrap();
        check_sample(&images);
    }

    #[test]
    fn plain_file_wins_over_gz() {
        let tmp = write_set(
            Dataset::Mnist,
            &[
                ("t10k-images-idx3-ubyte", good_images()),
                ("t10k-images-idx3-ubyte.gz", b"not even gzip".to_vec()),
                ("t10k-labels-idx1-ubyte", good_labels()),
            ],
        );
        check_sample(&load(tmp.path(), Dataset::Mnist, Split::Test).unwrap());
    }

    #[test]
    fn empty_set_is_allowed() {
        let tmp = write_set(
            Dataset::Mnist,
            &[("t10k-images-idx3-ubyte", idx_images(0, 28, 28, &[])), ("t10k-labels-idx1-ubyte", idx_labels(&[]))],
        );
        let images = load(tmp.path(), Dataset::Mnist, Split::Test).unwrap();
        assert!(images.is_empty());
        assert_eq!((images.rows, images.cols), (28, 28));
    }

    #[test]
    fn missing_file_says_how_to_get_data() {
        let tmp = write_set(Dataset::Mnist, &[("train-images-idx3-ubyte", good_images())]);
        let err = load(tmp.path(), Dataset::Mnist, Split::Train).unwrap_err();
        let DataError::Missing { path } = &err else {
            panic!("expected Missing, got {err:?}");
        };
        assert!(path.ends_with("mnist/train-labels-idx1-ubyte"));
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("train-labels-idx1-ubyte.gz"), "{msg}");
        assert!(msg.contains("scripts/setup-data.sh"), "{msg}");
        assert!(msg.contains("--data-dir"), "{msg}");
        assert!(msg.contains("RELEQ_DATA"), "{msg}");

        // A data directory that does not exist at all.
        let err = load(&tmp.path().join("nowhere"), Dataset::FashionMnist, Split::Test).unwrap_err();
        assert!(matches!(err, DataError::Missing { .. }), "{err:?}");
    }

    #[test]
    fn io_error_names_file() {
        // A directory where the image file should be: opens, but reading fails.
        let tmp = write_set(Dataset::Mnist, &[("t10k-labels-idx1-ubyte", good_labels())]);
        let bad = tmp.path().join("mnist/t10k-images-idx3-ubyte");
        std::fs::create_dir(&bad).unwrap();
        let err = load(tmp.path(), Dataset::Mnist, Split::Test).unwrap_err();
        assert!(matches!(&err, DataError::Io { path, .. } if path == &bad), "{err:?}");
        assert!(err.to_string().contains(&bad.display().to_string()));
    }

    #[test]
    fn corrupt_gzip_is_io_error() {
        let mut corrupt = gzip(&good_images());
        let mid = corrupt.len() / 2;
        corrupt.truncate(mid);
        let mut garbage = GZIP_MAGIC.to_vec();
        garbage.extend_from_slice(&[0xff; 64]);
        for bytes in [corrupt, garbage] {
            let tmp = write_set(
                Dataset::Mnist,
                &[("t10k-images-idx3-ubyte.gz", bytes), ("t10k-labels-idx1-ubyte", good_labels())],
            );
            let err = load(tmp.path(), Dataset::Mnist, Split::Test).unwrap_err();
            match &err {
                DataError::Io { path, .. } => {
                    assert!(path.ends_with("mnist/t10k-images-idx3-ubyte.gz"))
                }
                other => panic!("expected Io, got {other:?}"),
            }
        }
    }

    #[test]
    fn bad_magic_in_image_file() {
        // Labels where images should be.
        let tmp = write_set(
            Dataset::Mnist,
            &[("t10k-images-idx3-ubyte", good_labels()), ("t10k-labels-idx1-ubyte", good_labels())],
        );
        let err = load(tmp.path(), Dataset::Mnist, Split::Test).unwrap_err();
        assert!(matches!(err, DataError::BadMagic { expected: IMAGES_MAGIC, found: LABELS_MAGIC, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("t10k-images-idx3-ubyte"), "{msg}");
        assert!(msg.contains("expected 0x00000803"), "{msg}");
        assert!(msg.contains("found 0x00000801"), "{msg}");
    }

    #[test]
    fn bad_magic_in_label_file() {
        let mut labels = good_labels();
        labels[..4].copy_from_slice(&0xdead_beef_u32.to_be_bytes());
        let tmp = write_set(
            Dataset::Mnist,
            &[("t10k-images-idx3-ubyte.gz", gzip(&good_images())), ("t10k-labels-idx1-ubyte.gz", gzip(&labels))],
        );
        let err = load(tmp.path(), Dataset::Mnist, Split::Test).unwrap_err();
        assert!(matches!(err, DataError::BadMagic { expected: LABELS_MAGIC, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("t10k-labels-idx1-ubyte.gz"), "{msg}");
        assert!(msg.contains("expected 0x00000801"), "{msg}");
        assert!(msg.contains("found 0xdeadbeef"), "{msg}");
    }

    #[test]
    fn truncated_payload() {
        let mut images = good_images();
        images.truncate(images.len() - 5); // 24 payload bytes announced, 19 left
        for (name, bytes) in [("t10k-images-idx3-ubyte", images.clone()), ("t10k-images-idx3-ubyte.gz", gzip(&images))]
        {
            let tmp = write_set(Dataset::Mnist, &[(name, bytes), ("t10k-labels-idx1-ubyte", good_labels())]);
            let err = load(tmp.path(), Dataset::Mnist, Split::Test).unwrap_err();
            assert!(matches!(err, DataError::Truncated { part: "payload", expected: 24, found: 19, .. }), "{err:?}");
            let msg = err.to_string();
            assert!(msg.contains(name), "{msg}");
            assert!(msg.contains("expected 24 bytes of payload, found 19"), "{msg}");
        }
    }

    #[test]
    fn truncated_header() {
        let labels = good_labels();
        let tmp = write_set(
            Dataset::Mnist,
            &[("t10k-images-idx3-ubyte", good_images()), ("t10k-labels-idx1-ubyte", labels[..6].to_vec())],
        );
        let err = load(tmp.path(), Dataset::Mnist, Split::Test).unwrap_err();
        assert!(matches!(err, DataError::Truncated { part: "header", expected: 8, found: 6, .. }), "{err:?}");

        // Empty file.
        let tmp = write_set(
            Dataset::Mnist,
            &[("t10k-images-idx3-ubyte", Vec::new()), ("t10k-labels-idx1-ubyte", good_labels())],
        );
        let err = load(tmp.path(), Dataset::Mnist, Split::Test).unwrap_err();
        assert!(matches!(err, DataError::Truncated { part: "header", expected: 16, found: 0, .. }), "{err:?}");
    }

    #[test]
    fn trailing_data_and_huge_dims_are_malformed() {
        let mut images = good_images();
        images.push(0);
        let tmp =
            write_set(Dataset::Mnist, &[("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", good_labels())]);
        let err = load(tmp.path(), Dataset::Mnist, Split::Test).unwrap_err();
        assert!(matches!(err, DataError::Malformed { .. }), "{err:?}");

        // 2^32-1 cubed overflows u64: reported without allocating anything.
        let tmp = write_set(
            Dataset::Mnist,
            &[
                ("t10k-images-idx3-ubyte", idx_images(u32::MAX, u32::MAX, u32::MAX, &[])),
                ("t10k-labels-idx1-ubyte", good_labels()),
            ],
        );
        let err = load(tmp.path(), Dataset::Mnist, Split::Test).unwrap_err();
        assert!(matches!(err, DataError::Malformed { .. }), "{err:?}");

        // Large but representable: a truncation, not a huge allocation.
        let tmp = write_set(
            Dataset::Mnist,
            &[
                ("t10k-images-idx3-ubyte", idx_images(1 << 20, 1 << 10, 1 << 10, &[1, 2])),
                ("t10k-labels-idx1-ubyte", good_labels()),
            ],
        );
        let err = load(tmp.path(), Dataset::Mnist, Split::Test).unwrap_err();
        assert!(
            matches!(err, DataError::Truncated { part: "payload", expected, found: 2, .. } if expected == 1 << 40),
            "{err:?}"
        );
    }

    #[test]
    fn count_mismatch() {
        let tmp = write_set(
            Dataset::Mnist,
            &[("train-images-idx3-ubyte", good_images()), ("train-labels-idx1-ubyte.gz", gzip(&idx_labels(&[1, 2])))],
        );
        let err = load(tmp.path(), Dataset::Mnist, Split::Train).unwrap_err();
        assert!(matches!(err, DataError::CountMismatch { images: 3, labels: 2, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("train-images-idx3-ubyte holds 3 images"), "{msg}");
        assert!(msg.contains("train-labels-idx1-ubyte.gz holds 2 labels"), "{msg}");
    }

    #[test]
    fn label_out_of_range() {
        let tmp = write_set(
            Dataset::Mnist,
            &[("train-images-idx3-ubyte", good_images()), ("train-labels-idx1-ubyte", idx_labels(&[9, 0, 10]))],
        );
        let err = load(tmp.path(), Dataset::Mnist, Split::Train).unwrap_err();
        assert!(matches!(err, DataError::BadLabel { index: 2, value: 10, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("train-labels-idx1-ubyte"), "{msg}");
        assert!(msg.contains("label 10 at index 2"), "{msg}");
    }

    #[test]
    fn npy_files_spec() {
        let tmp = tempfile::tempdir().unwrap();
        let (i, l) = (tmp.path().join("images.npy"), tmp.path().join("labels.npy"));
        let dir = tmp.path().display().to_string();
        assert!(matches!(NpyFiles::parse(&dir), Err(DataError::NpySpec { .. })));
        std::fs::write(&i, b"x").unwrap();
        let e = NpyFiles::parse(&dir).unwrap_err().to_string();
        assert!(e.contains("labels.npy is not a file"), "{e}");
        std::fs::write(&l, b"x").unwrap();
        assert_eq!(NpyFiles::parse(&dir).unwrap(), NpyFiles { images: i.clone(), labels: l.clone() });
        let pair = format!("{},{}", l.display(), i.display());
        assert_eq!(NpyFiles::parse(&pair).unwrap(), NpyFiles { images: l, labels: i });
        let e = NpyFiles::parse("no-such-thing").unwrap_err().to_string();
        assert!(e.contains("--data no-such-thing: expected IMAGES.npy,LABELS.npy"), "{e}");
    }

    #[test]
    fn holdout_is_a_seeded_tenth() {
        let (rest, val) = holdout(105, 3);
        assert_eq!((rest.len(), val.len()), (95, 10));
        let mut all: Vec<usize> = rest.iter().chain(&val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..105).collect::<Vec<_>>());
        assert_eq!(holdout(105, 3), (rest, val.clone()));
        assert_ne!(holdout(105, 4).1, val);
        assert_eq!(holdout(0, 1), (vec![], vec![]));
    }

    #[test]
    fn names_and_parsing() {
        use clap::ValueEnum;
        assert_eq!(Dataset::Mnist.to_string(), "mnist");
        assert_eq!(Dataset::FashionMnist.to_string(), "fashion-mnist");
        for d in Dataset::ALL {
            assert_eq!(Dataset::from_str(&d.to_string(), false).unwrap(), d);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.dir_name()));
            assert_eq!(serde_json::from_str::<Dataset>(&json).unwrap(), d);
        }
        assert!(Dataset::from_str("cifar10", false).is_err());
        assert_eq!(Split::Train.images_file_name(), "train-images-idx3-ubyte");
        assert_eq!(Split::Test.labels_file_name(), "t10k-labels-idx1-ubyte");
        assert_eq!(Split::Test.to_string(), "test");
    }

    #[test]
    fn default_dir_follows_env() {
        let expected = match std::env::var_os(DATA_ENV) {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => PathBuf::from("./data"),
        };
        assert_eq!(default_data_dir(), expected);
    }

    /// The real data: `$RELEQ_DATA`, else `<workspace>/../shared/data`.
    fn real_data_dir() -> Option<PathBuf> {
        let dir = match std::env::var_os(DATA_ENV) {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
        };
        if dir.join("mnist").is_dir() {
            Some(dir)
        } else {
            eprintln!(
                "skipping real-data test: no mnist/ in {} (set {DATA_ENV} or run scripts/setup-data.sh)",
                dir.display()
            );
            None
        }
    }

    #[test]
    fn real_mnist() {
        let Some(dir) = real_data_dir() else { return };
        let test = load(&dir, Dataset::Mnist, Split::Test).unwrap();
        assert_eq!(test.len(), 10_000);
        assert_eq!((test.rows, test.cols), (28, 28));
        assert_eq!(test.pixels.len(), 10_000 * 28 * 28);

        let train = load(&dir, Dataset::Mnist, Split::Train).unwrap();
        assert_eq!(train.len(), 60_000);
        assert_eq!((train.rows, train.cols), (28, 28));
        assert_eq!(&train.labels[..5], &[5, 0, 4, 1, 9]);
        let mut per_class = [0usize; NUM_CLASSES];
        for &l in &train.labels {
            per_class[usize::from(l)] += 1;
        }
        assert_eq!(per_class, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    }

    #[test]
    fn real_fashion_mnist() {
        let Some(dir) = real_data_dir() else { return };
        if !dir.join("fashion-mnist").is_dir() {
            eprintln!("skipping: no fashion-mnist/ in {}", dir.display());
            return;
        }
        let test = load(&dir, Dataset::FashionMnist, Split::Test).unwrap();
        assert_eq!(test.len(), 10_000);
        assert_eq!((test.rows, test.cols), (28, 28));
        let mut per_class = [0usize; NUM_CLASSES];
        for &l in &test.labels {
            per_class[usize::from(l)] += 1;
        }
        assert_eq!(per_class, [1000; NUM_CLASSES]);
    }
}
