//! IDX files (MNIST, Fashion-MNIST), plain or gzipped.

use super::{read_file, DataError, ImageSet};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Read an IDX file of unsigned bytes: its dimensions and its data.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    parse_idx(&read_file(path)?, path)
}

/// Parse the bytes of an IDX file of unsigned bytes, plain or gzipped: its dimensions and its
/// data. `origin` names the bytes in errors (a path, or a URL in the browser).
pub fn parse_idx(raw: &[u8], origin: &Path) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let path = origin;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(raw)
            .read_to_end(&mut out)
            .map_err(|e| DataError::invalid(path, format!("corrupt gzip stream: {e}")))?;
        out
    } else {
        raw.to_vec()
    };
    if bytes.len() < 4 {
        return Err(DataError::format(path, bytes.len() as u64, "file ends inside the 4-byte IDX magic"));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(DataError::format(
            path,
            0,
            format!("bad IDX magic {:02x}{:02x}, expected 0000", bytes[0], bytes[1]),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(DataError::format(path, 2, format!("IDX type 0x{:02x} is not unsigned bytes (0x08)", bytes[2])));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        return Err(DataError::format(path, 3, "IDX file declares zero dimensions"));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(DataError::format(
            path,
            bytes.len() as u64,
            format!("file ends inside the {ndim}-dimension IDX header"),
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize)
        .collect();
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let count = count.ok_or_else(|| DataError::format(path, 4, "IDX dimensions overflow"))?;
    let have = bytes.len() - header;
    if have != count {
        let what = if have < count { "truncated" } else { "has trailing bytes" };
        return Err(DataError::format(
            path,
            (header + have.min(count)) as u64,
            format!("data {what}: dimensions {dims:?} need {count} bytes after the header, found {have}"),
        ));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// Load images from an IDX `[N, rows, cols]` file, and labels from its sibling
/// (`...images-idx3...` -> `...labels-idx1...`) when that exists.
pub fn load_idx(path: &Path) -> Result<ImageSet, DataError> {
    let images = read_file(path)?;
    match label_path(path) {
        Some(lp) if lp.exists() => idx_images(&images, path, Some((&read_file(&lp)?, &lp))),
        _ => idx_images(&images, path, None),
    }
}

/// Images from the bytes of an IDX `[N, rows, cols]` file, and labels from the bytes of an IDX
/// `[N]` file when given (each with the name that errors give it).
pub fn idx_images(images: &[u8], origin: &Path, labels: Option<(&[u8], &Path)>) -> Result<ImageSet, DataError> {
    let (dims, data) = parse_idx(images, origin)?;
    if dims.len() != 3 || dims[1] != dims[2] {
        return Err(DataError::invalid(origin, format!("expected square images [N, d, d], found dimensions {dims:?}")));
    }
    let labels = match labels {
        Some((bytes, lp)) => {
            let (ldims, l) = parse_idx(bytes, lp)?;
            if ldims != [dims[0]] {
                return Err(DataError::invalid(
                    lp,
                    format!("{} labels for {} images", ldims.iter().product::<usize>(), dims[0]),
                ));
            }
            Some(l.into_iter().map(u32::from).collect())
        }
        None => None,
    };
    Ok(ImageSet::from_u8(1, dims[1], &data, labels))
}

fn label_path(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    name.contains("images-idx3").then(|| path.with_file_name(name.replace("images-idx3", "labels-idx1")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tempdir;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(data);
        b
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn idx_round_trips_plain_and_gzipped_with_labels() {
        let dir = tempdir("idx-ok");
        let pixels: Vec<u8> = (0..2 * 3 * 3).map(|i| (i * 14) as u8).collect();
        let img = idx_bytes(&[2, 3, 3], &pixels);
        let p = write(&dir, "train-images-idx3-ubyte", &img);
        write(&dir, "train-labels-idx1-ubyte", &idx_bytes(&[2], &[7, 3]));
        let set = load_idx(&p).unwrap();
        assert_eq!((set.len(), set.channels, set.size), (2, 1, 3));
        assert_eq!(set.labels, Some(vec![7, 3]));
        assert_eq!(set.pixels[1], 14.0 / 127.5 - 1.0);

        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&img).unwrap();
        let pg = write(&dir, "x-images.gz", &gz.finish().unwrap());
        let set2 = load_idx(&pg).unwrap();
        assert_eq!(set2.pixels, set.pixels);
        assert_eq!(set2.labels, None);

        // The same from bytes, as the browser reads them; bad labels are an error there too.
        let labels = idx_bytes(&[2], &[7, 3]);
        let from_bytes = idx_images(&img, Path::new("images"), Some((&labels, Path::new("labels")))).unwrap();
        assert_eq!((from_bytes.pixels, from_bytes.labels), (set.pixels, set.labels));
        let three = idx_bytes(&[3], &[1, 2, 3]);
        let err = idx_images(&img, Path::new("images"), Some((&three, Path::new("labels")))).unwrap_err();
        assert!(err.to_string().contains("3 labels for 2 images"), "{err}");
    }

    #[test]
    fn corrupt_idx_files_give_errors_with_offsets() {
        let dir = tempdir("idx-bad");
        let good = idx_bytes(&[2, 3, 3], &[0; 18]);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("short", vec![0, 0], "offset 2"),
            ("magic", [&[1u8, 0], &good[2..]].concat(), "bad IDX magic"),
            ("type", [&[0u8, 0, 0x0d], &good[3..]].concat(), "not unsigned bytes"),
            ("header", good[..9].to_vec(), "inside the 3-dimension IDX header"),
            ("trunc", good[..good.len() - 5].to_vec(), "offset 29: data truncated"),
            ("trail", [good.clone(), vec![1]].concat(), "trailing bytes"),
            ("gzip", vec![0x1f, 0x8b, 1, 2, 3], "corrupt gzip"),
        ];
        for (name, bytes, want) in cases {
            let p = write(&dir, name, &bytes);
            let err = load_idx(&p).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains(name), "{name}: {err}");
        }
        let p = write(&dir, "flat-images-idx3", &idx_bytes(&[4], &[0; 4]));
        assert!(load_idx(&p).unwrap_err().to_string().contains("square images"));
        let p = write(&dir, "a-images-idx3-ubyte", &good);
        write(&dir, "a-labels-idx1-ubyte", &idx_bytes(&[3], &[0; 3]));
        assert!(load_idx(&p).unwrap_err().to_string().contains("3 labels for 2 images"));
        assert!(matches!(load_idx(&dir.join("missing")), Err(DataError::Io { .. })));
    }
}
