//! Checkpoints and the data splits they are trained and evaluated on.
//!
//! A checkpoint is a safetensors file of float parameters (named as in
//! [`crate::nn::spec`]) plus what lies beside it in its directory:
//!
//! - `graph.json` ([`GraphFile`]): the network's [`Spec`] (the op list the
//!   parameters belong to), how its input is made from pixels
//!   ([`InputInfo`]), the data set it is for and where it came from.
//!   `releq train`, `releq finetune` and `releq import` write it, so a
//!   checkpoint carries its own graph and the zoo is one source of graphs
//!   among others;
//! - `train.json` (`releq train`) or `qat.json` (`releq finetune`): the run's
//!   settings (model, data set, seed of the validation split).
//!
//! [`load`] builds the network from `graph.json` if present, else from the
//! zoo model named by the caller or by `train.json` / `qat.json` (older
//! checkpoints), and checks the file tensor by tensor against it.
//! [`Meta`] gathers what the sidecars say about the data.
//!
//! [`load_split`] is the seeded train / validation split of a built-in data
//! set (10 % held out) that training, fine-tuning, calibration and the
//! search share. [`DataSource`] is that or a user's `.npy` data set
//! (`--data images.npy,labels.npy` or a directory): its validation split is
//! the same seeded 10 % ([`data::holdout`], as `releq eval --data --split
//! val`), its training and test images are the rest.

use crate::data::{self, Dataset, Images, NpyFiles, Split};
use crate::nn::net::Net;
use crate::nn::spec::Spec;
use crate::train::{rng, sorted_vars, Result, TrainError};
use crate::zoo::Arch;
use candle_core::{DType, Device};
use candle_nn::VarMap;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Name of the graph description beside a checkpoint.
pub const GRAPH_FILE: &str = "graph.json";

/// Version of [`GraphFile`]'s layout.
pub const GRAPH_FORMAT: u32 = 1;

/// How the network's input tensor is made from an image.
///
/// The network (tensor 0 of the [`Spec`]) always takes
/// `x = (pixel * scale - mean) / std`, laid out NHWC in `.releq` and NCHW in
/// candle; `layout` and `shape` record the source model's own input (e.g.
/// `NCHW` and `[1, 1, 28, 28]` for ONNX, `NHWC` for TFLite).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputInfo {
    /// The source model's input layout (`NCHW`, `NHWC`).
    pub layout: String,
    /// The source model's input shape (batch first), as declared.
    pub shape: Vec<usize>,
    /// Pixel multiplier.
    pub scale: f32,
    /// Subtracted after scaling.
    pub mean: f32,
    /// Divides after subtracting the mean.
    pub std: f32,
}

impl InputInfo {
    /// The preprocessing every releq command applies: pixel / 255, NHWC.
    pub fn pixels_over_255(spec: &Spec) -> Self {
        let [h, w, c] = spec.input;
        Self { layout: "NHWC".into(), shape: vec![1, h, w, c], scale: 1.0 / 255.0, mean: 0.0, std: 1.0 }
    }

    /// Whether this is the preprocessing the data pipeline applies (pixel /
    /// 255, no mean or std); other preprocessing is recorded but refused.
    pub fn is_pixels_over_255(&self) -> bool {
        (self.scale - 1.0 / 255.0).abs() < 1e-9 && self.mean == 0.0 && self.std == 1.0
    }
}

/// `graph.json`: the graph a checkpoint's parameters belong to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphFile {
    /// [`GRAPH_FORMAT`].
    pub format: u32,
    /// The network.
    pub spec: Spec,
    /// How the input is made.
    pub input: InputInfo,
    /// The data set the model is for, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<Dataset>,
    /// Where the graph came from: `zoo:lenet5`, `onnx:model.onnx`, ...
    pub source: String,
}

impl GraphFile {
    /// The graph file of a zoo model.
    pub fn zoo(arch: Arch) -> Self {
        let spec = arch.spec();
        let input = InputInfo::pixels_over_255(&spec);
        Self {
            format: GRAPH_FORMAT,
            spec,
            input,
            dataset: Some(arch.dataset()),
            source: format!("zoo:{}", arch.name()),
        }
    }

    /// Write it as `dir/graph.json`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        crate::train::write_json(&dir.join(GRAPH_FILE), self)
    }

    /// Read `path` and check its format version and preprocessing.
    pub fn read(path: &Path) -> Result<Self> {
        let g: GraphFile = crate::train::read_json(path)?;
        if g.format != GRAPH_FORMAT {
            return Err(TrainError::Graph {
                path: path.into(),
                problem: format!("format {} is not the supported {GRAPH_FORMAT}", g.format),
            });
        }
        if !g.input.is_pixels_over_255() {
            return Err(TrainError::Graph {
                path: path.into(),
                problem: format!(
                    "input preprocessing scale {} mean {} std {} is not supported (only pixel / 255)",
                    g.input.scale, g.input.mean, g.input.std
                ),
            });
        }
        Ok(g)
    }
}

/// The directory of a checkpoint file.
pub fn dir_of(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// The graph file beside `path`, if there is one (an unreadable one is an error).
pub fn graph_of(path: &Path) -> Result<Option<GraphFile>> {
    let g = dir_of(path).join(GRAPH_FILE);
    if g.is_file() {
        GraphFile::read(&g).map(Some)
    } else {
        Ok(None)
    }
}

/// The zoo model recorded by a `train.json` or `qat.json` next to `path`.
pub fn sidecar_arch(path: &Path) -> Option<Arch> {
    #[derive(Deserialize)]
    struct Sidecar {
        arch: Arch,
    }
    let dir = dir_of(path);
    ["train.json", "qat.json"].iter().find_map(|f| {
        let text = std::fs::read_to_string(dir.join(f)).ok()?;
        serde_json::from_str::<Sidecar>(&text).ok().map(|s| s.arch)
    })
}

/// What the files beside a checkpoint say about its data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    /// Data set (train.json, qat.json or graph.json).
    pub dataset: Option<Dataset>,
    /// Seed of the validation split (train.json or qat.json).
    pub seed: Option<u64>,
    /// Training images used (train.json).
    pub limit: Option<usize>,
}

impl Meta {
    /// Read the sidecars of `path` (missing or unreadable ones are skipped).
    pub fn of(path: &Path) -> Self {
        #[derive(Deserialize)]
        struct Side {
            dataset: Option<Dataset>,
            seed: Option<u64>,
            limit: Option<usize>,
        }
        let dir = dir_of(path);
        let side = ["train.json", "qat.json"].iter().find_map(|f| {
            let text = std::fs::read_to_string(dir.join(f)).ok()?;
            serde_json::from_str::<Side>(&text).ok()
        });
        let graph = graph_of(path).ok().flatten();
        Meta {
            dataset: side.as_ref().and_then(|s| s.dataset).or(graph.and_then(|g| g.dataset)),
            seed: side.as_ref().and_then(|s| s.seed),
            limit: side.and_then(|s| s.limit),
        }
    }
}

/// A loaded checkpoint.
pub struct Checkpoint {
    /// The parameters.
    pub vm: VarMap,
    /// The network over them.
    pub net: Net,
    /// Its graph (from graph.json, or the zoo's).
    pub graph: GraphFile,
}

/// The graph of the checkpoint at `path`: `graph.json` beside it, else the
/// zoo model `arch` (or the one train.json / qat.json names). If both a
/// graph.json and `arch` are given they must agree.
pub fn graph_for(path: &Path, arch: Option<Arch>) -> Result<GraphFile> {
    match (graph_of(path)?, arch) {
        (Some(g), Some(a)) if g.spec != a.spec() => Err(TrainError::Graph {
            path: dir_of(path).join(GRAPH_FILE),
            problem: format!("describes `{}`, not the zoo model {} given", g.spec.name, a.name()),
        }),
        (Some(g), _) => Ok(g),
        (None, a) => {
            let a = a.or_else(|| sidecar_arch(path)).ok_or_else(|| TrainError::NoArch { path: path.into() })?;
            Ok(GraphFile::zoo(a))
        }
    }
}

/// Load a safetensors checkpoint into a new network built from its graph
/// ([`graph_for`]). Every parameter must be present with the right shape
/// and nothing else may be in the file; errors name the tensor.
pub fn load(path: &Path, arch: Option<Arch>) -> Result<Checkpoint> {
    let graph = graph_for(path, arch)?;
    let (vm, net) = crate::train::new_model(&graph.spec, 0)?;
    if !path.is_file() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no such checkpoint file");
        return Err(TrainError::Io { path: path.into(), source });
    }
    let mut file = candle_core::safetensors::load(path, &Device::Cpu)?;
    let mismatch = |tensor: &str, problem: String| TrainError::Mismatch {
        path: path.into(),
        arch: graph.spec.name.clone(),
        tensor: tensor.into(),
        problem,
    };
    for (name, var) in sorted_vars(&vm) {
        let t = file.remove(&name).ok_or_else(|| mismatch(&name, "is missing".into()))?;
        if t.dims() != var.dims() {
            return Err(mismatch(&name, format!("has shape {:?}, the model needs {:?}", t.dims(), var.dims())));
        }
        var.set(&t.to_dtype(DType::F32)?)?;
    }
    if let Some(name) = file.keys().min() {
        return Err(mismatch(name, "is not a parameter of the model".into()));
    }
    Ok(Checkpoint { vm, net, graph })
}

/// Write a checkpoint directory: `dir/last.safetensors` from named float
/// parameters (name, shape, values) and `dir/graph.json`; then load it back
/// (which checks every parameter against the graph). Returns the checkpoint
/// file's path.
pub fn write<'a>(
    dir: &Path,
    graph: &GraphFile,
    params: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [f32])>,
) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).map_err(|source| TrainError::Io { path: dir.into(), source })?;
    let mut map = std::collections::HashMap::new();
    for (name, dims, data) in params {
        map.insert(name.to_string(), candle_core::Tensor::from_slice(data, dims, &Device::Cpu)?);
    }
    let path = dir.join("last.safetensors");
    candle_core::safetensors::save(&map, &path)?;
    graph.write(dir)?;
    load(&path, None)?;
    Ok(path)
}

/// Where the images of calibration, fine-tuning and the search come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// A built-in data set in a data directory.
    Builtin {
        /// The data directory (holding `mnist/`, `fashion-mnist/`).
        dir: std::path::PathBuf,
        /// The data set.
        dataset: Dataset,
    },
    /// A user's data set: `.npy` images (uint8 pixels `[N, H, W]` or `[N, H,
    /// W, 1]`, or float32 `pixel / 255` in `[0, 1]`) and integer labels `[N]`.
    Npy(NpyFiles),
}

impl DataSource {
    /// The training images and their seeded validation split (the first
    /// `limit` images of a built-in set's training split if given).
    pub fn split(&self, seed: u64, limit: Option<usize>) -> Result<DataSplit> {
        match self {
            DataSource::Builtin { dir, dataset } => load_split(dir, *dataset, seed, limit),
            DataSource::Npy(files) => {
                let images = npy_images(files)?;
                let (train, val) = data::holdout(images.len(), seed);
                Ok(DataSplit { images, train, val })
            }
        }
    }

    /// The test images: a built-in set's test split, or the samples of a
    /// `.npy` set outside its validation split under `seed`.
    pub fn test(&self, seed: u64) -> Result<Images> {
        match self {
            DataSource::Builtin { dir, dataset } => Ok(data::load(dir, *dataset, Split::Test)?),
            DataSource::Npy(files) => {
                let images = npy_images(files)?;
                let (rest, _) = data::holdout(images.len(), seed);
                Ok(subset(&images, &rest))
            }
        }
    }

    /// `mnist`, or the images file.
    pub fn name(&self) -> String {
        match self {
            DataSource::Builtin { dataset, .. } => dataset.to_string(),
            DataSource::Npy(files) => files.images.display().to_string(),
        }
    }

    /// The built-in data set, if it is one.
    pub fn dataset(&self) -> Option<Dataset> {
        match self {
            DataSource::Builtin { dataset, .. } => Some(*dataset),
            DataSource::Npy(_) => None,
        }
    }
}

/// A user's `.npy` data set as images (see [`DataSource::Npy`]).
pub fn npy_images(files: &NpyFiles) -> Result<Images> {
    let bad = |problem: String| TrainError::Images { path: files.images.clone(), problem };
    let a = crate::npy::read(&files.images).map_err(crate::eval::InputError::from)?;
    let (count, rows, cols) = match a.shape[..] {
        [n, h, w] | [n, h, w, 1] => (n, h, w),
        _ => return Err(bad(format!("has shape {:?}; grey images [N, H, W] or [N, H, W, 1] are supported", a.shape))),
    };
    let pixels = match a.data {
        crate::npy::Data::U8(v) => v,
        crate::npy::Data::F32(v) => {
            if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !(0.0..=1.0).contains(*x)) {
                return Err(bad(format!(
                    "value {x} at flat index {i} is outside [0, 1] (float32 images are pixel / 255)"
                )));
            }
            v.iter().map(|&x| (x * 255.0).round() as u8).collect()
        }
        other => {
            return Err(bad(format!("has type {}; uint8 pixels or float32 in [0, 1] are supported", other.dtype())))
        }
    };
    let la = crate::npy::read(&files.labels).map_err(crate::eval::InputError::from)?;
    let labels = crate::eval::decode_labels(&la, &files.labels, count, 256, &files.images)?;
    Ok(Images { count, rows, cols, pixels, labels: labels.into_iter().map(|l| l as u8).collect() })
}

/// Check that `images` fit the network's input (`[rows, cols, 1]`) and its
/// labels its classes; `source` names the images in the error.
pub fn check_images(spec: &Spec, images: &Images, source: &str) -> Result<()> {
    if spec.input != [images.rows, images.cols, 1] {
        return Err(TrainError::Images {
            path: source.into(),
            problem: format!(
                "holds {}x{} grey images; {} takes {}x{}x{} (HWC)",
                images.rows, images.cols, spec.name, spec.input[0], spec.input[1], spec.input[2]
            ),
        });
    }
    if let Some((i, l)) = images.labels.iter().enumerate().find(|(_, &l)| usize::from(l) >= spec.classes) {
        return Err(TrainError::Images {
            path: source.into(),
            problem: format!("label {l} at index {i} is not one of the {} classes of {}", spec.classes, spec.name),
        });
    }
    Ok(())
}

/// Training images with a seeded train / validation split.
#[derive(Debug, Clone)]
pub struct DataSplit {
    /// The training split's images.
    pub images: Images,
    /// Indices used for training.
    pub train: Vec<usize>,
    /// Indices held out for validation (10 %).
    pub val: Vec<usize>,
}

/// Load the training split (its first `limit` images if given) and hold out
/// 10 % of it for validation with a shuffle seeded by `seed`.
pub fn load_split(data_dir: &Path, dataset: Dataset, seed: u64, limit: Option<usize>) -> Result<DataSplit> {
    let images = data::load(data_dir, dataset, Split::Train)?;
    Ok(split(images, seed, limit))
}

/// Hold out 10 % of `images` (its first `limit` if given) for validation
/// with a shuffle seeded by `seed`.
pub fn split(images: Images, seed: u64, limit: Option<usize>) -> DataSplit {
    let n = limit.unwrap_or(images.len()).min(images.len());
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut rng(seed, u64::MAX));
    let val = idx.split_off(n - n / 10);
    DataSplit { images, train: idx, val }
}

/// The images at `idx`, as a new set.
pub fn subset(images: &Images, idx: &[usize]) -> Images {
    let mut pixels = Vec::with_capacity(idx.len() * images.image_size());
    for &i in idx {
        pixels.extend_from_slice(images.image(i));
    }
    let labels = idx.iter().map(|&i| images.labels[i]).collect();
    Images { count: idx.len(), rows: images.rows, cols: images.cols, pixels, labels }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_json_round_trips_and_wins_over_the_zoo() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = GraphFile::zoo(Arch::Lenet5);
        g.write(dir.path()).unwrap();
        let ckpt = dir.path().join("last.safetensors");
        assert_eq!(graph_for(&ckpt, None).unwrap(), g);
        // A graph that is not the zoo's is used as it is.
        g.spec.name = "mine".into();
        g.source = "onnx:mine.onnx".into();
        g.write(dir.path()).unwrap();
        assert_eq!(graph_for(&ckpt, None).unwrap().spec.name, "mine");
        // ... and disagreeing with a --model given is an error naming the file.
        let e = graph_for(&ckpt, Some(Arch::Lenet5)).unwrap_err().to_string();
        assert!(e.contains("graph.json") && e.contains("mine"), "{e}");
        // Unsupported preprocessing is refused.
        g.input.mean = 0.5;
        g.write(dir.path()).unwrap();
        let e = graph_for(&ckpt, None).unwrap_err().to_string();
        assert!(e.contains("preprocessing"), "{e}");
    }

    #[test]
    fn npy_data_sets_split_like_eval_and_check_the_model() {
        use crate::npy::{write, Data};
        let dir = tempfile::tempdir().unwrap();
        let (imgs, labs) = (dir.path().join("images.npy"), dir.path().join("labels.npy"));
        let pixels: Vec<u8> = (0..20 * 28 * 28).map(|i| (i % 251) as u8).collect();
        write(&imgs, &[20, 28, 28], &Data::U8(pixels.clone())).unwrap();
        write(&labs, &[20], &Data::I64((0..20).map(|i| i % 10).collect())).unwrap();
        let src = DataSource::Npy(NpyFiles::parse(dir.path().to_str().unwrap()).unwrap());
        let split = src.split(5, None).unwrap();
        assert_eq!((split.train.len(), split.val.len()), (18, 2));
        assert_eq!((split.train.clone(), split.val.clone()), data::holdout(20, 5), "the split of `releq eval --data`");
        assert_eq!(split.images.pixels, pixels);
        assert_eq!(split.images.labels[13], 3);
        let test = src.test(5).unwrap();
        assert_eq!(test, subset(&split.images, &split.train));
        let spec = Arch::Lenet5.spec();
        check_images(&spec, &split.images, "images.npy").unwrap();
        // float32 pixel / 255 reads back as the same pixels.
        write(&imgs, &[20, 28, 28, 1], &Data::F32(pixels.iter().map(|&p| p as f32 / 255.0).collect())).unwrap();
        assert_eq!(src.split(5, None).unwrap().images.pixels, pixels);
        // Wrong sizes and out-of-range values are named.
        write(&imgs, &[20, 32, 32], &Data::U8(vec![0; 20 * 32 * 32])).unwrap();
        let images = src.split(5, None).unwrap().images;
        let e = check_images(&spec, &images, "images.npy").unwrap_err().to_string();
        assert!(e.contains("32x32") && e.contains("28x28x1"), "{e}");
        write(&imgs, &[20, 28, 28], &Data::F32(vec![2.0; 20 * 28 * 28])).unwrap();
        let e = src.split(5, None).unwrap_err().to_string();
        assert!(e.contains("images.npy") && e.contains("outside [0, 1]"), "{e}");
        write(&imgs, &[20, 784], &Data::U8(vec![0; 20 * 784])).unwrap();
        let e = src.split(5, None).unwrap_err().to_string();
        assert!(e.contains("[20, 784]"), "{e}");
    }

    #[test]
    fn without_graph_json_the_zoo_name_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("last.safetensors");
        assert!(matches!(graph_for(&ckpt, None), Err(TrainError::NoArch { .. })));
        std::fs::write(dir.path().join("train.json"), r#"{"arch":"resnet8","dataset":"fashion-mnist","seed":7}"#)
            .unwrap();
        assert_eq!(graph_for(&ckpt, None).unwrap().spec, Arch::Resnet8.spec());
        let m = Meta::of(&ckpt);
        assert_eq!((m.dataset, m.seed), (Some(Dataset::FashionMnist), Some(7)));
    }
}
