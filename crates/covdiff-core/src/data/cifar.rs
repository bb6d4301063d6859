//! CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes
//! (1024 red, 1024 green, 1024 blue, each 32 x 32 row-major).

use super::{read_file, DataError, ImageSet};
use std::path::{Path, PathBuf};

const RECORD: usize = 1 + 3 * 1024;

/// Load a CIFAR-10 binary batch file, or a directory of them: the training
/// batches `data_batch_*.bin` in order, or `test_batch.bin` if there are none.
pub fn load_cifar10(path: &Path) -> Result<ImageSet, DataError> {
    let files = if path.is_dir() { batch_files(path)? } else { vec![path.to_path_buf()] };
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for f in &files {
        let batch = cifar10_batch(&read_file(f)?, f)?;
        pixels.extend(batch.0);
        labels.extend(batch.1);
    }
    Ok(ImageSet::from_u8(3, 32, &pixels, Some(labels)))
}

/// The pixels (8-bit, channel-major per image) and labels of the bytes of one CIFAR-10 batch;
/// `origin` names them in errors.
pub fn cifar10_batch(bytes: &[u8], origin: &Path) -> Result<(Vec<u8>, Vec<u32>), DataError> {
    let f = origin;
    if bytes.is_empty() {
        return Err(DataError::invalid(f, "empty CIFAR-10 batch"));
    }
    if !bytes.len().is_multiple_of(RECORD) {
        let whole = bytes.len() / RECORD;
        return Err(DataError::format(
            f,
            (whole * RECORD) as u64,
            format!("truncated record {whole}: CIFAR-10 records are {RECORD} bytes, file has {}", bytes.len()),
        ));
    }
    let mut pixels = Vec::with_capacity(bytes.len());
    let mut labels = Vec::with_capacity(bytes.len() / RECORD);
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] > 9 {
            return Err(DataError::format(
                f,
                (i * RECORD) as u64,
                format!("label {} is not a CIFAR-10 class (0-9)", rec[0]),
            ));
        }
        labels.push(rec[0] as u32);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok((pixels, labels))
}

fn batch_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut train: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.starts_with("data_batch_") && n.ends_with(".bin")
        })
        .collect();
    train.sort();
    if train.is_empty() {
        let test = dir.join("test_batch.bin");
        if test.exists() {
            return Ok(vec![test]);
        }
        return Err(DataError::invalid(dir, "no CIFAR-10 batches (data_batch_*.bin or test_batch.bin) here"));
    }
    Ok(train)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tempdir;

    fn record(label: u8, fill: u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(fill, 3072));
        r
    }

    #[test]
    fn cifar_round_trips_a_directory_of_batches() {
        let dir = tempdir("cifar-ok");
        std::fs::write(dir.join("data_batch_2.bin"), [record(5, 255), record(0, 0)].concat()).unwrap();
        std::fs::write(dir.join("data_batch_1.bin"), record(9, 0)).unwrap();
        std::fs::write(dir.join("readme.html"), b"not a batch").unwrap();
        let set = load_cifar10(&dir).unwrap();
        assert_eq!((set.len(), set.channels, set.size), (3, 3, 32));
        assert_eq!(set.labels, Some(vec![9, 5, 0]));
        assert_eq!(set.image(1)[0], 1.0);
        assert_eq!(set.image(0)[3071], -1.0);
    }

    #[test]
    fn corrupt_cifar_batches_give_errors() {
        let dir = tempdir("cifar-bad");
        let trunc = dir.join("trunc.bin");
        std::fs::write(&trunc, [record(1, 0), record(2, 0)[..100].to_vec()].concat()).unwrap();
        let e = load_cifar10(&trunc).unwrap_err().to_string();
        assert!(e.contains("offset 3073") && e.contains("truncated record 1"), "{e}");
        let bad = dir.join("label.bin");
        std::fs::write(&bad, [record(1, 0), record(12, 0)].concat()).unwrap();
        let e = load_cifar10(&bad).unwrap_err().to_string();
        assert!(e.contains("offset 3073") && e.contains("label 12"), "{e}");
        let empty_dir = tempdir("cifar-empty");
        assert!(load_cifar10(&empty_dir).unwrap_err().to_string().contains("no CIFAR-10 batches"));
    }
}
