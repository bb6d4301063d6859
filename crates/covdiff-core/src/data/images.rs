//! A folder of PNG/JPEG images: centre-cropped to a square, resized to
//! `d x d`, alpha composited on white. Files directly in the folder are
//! unlabelled; files in sub-folders are labelled by sub-folder (sorted).

use super::{DataError, ImageSet};
use image::imageops::FilterType;
use std::path::{Path, PathBuf};

/// Load every `.png`, `.jpg` and `.jpeg` under `dir` (one level of class sub-folders).
pub fn load_image_folder(dir: &Path, size: usize) -> Result<ImageSet, DataError> {
    if size == 0 {
        return Err(DataError::invalid(dir, "image size must be positive"));
    }
    let (files, classes) = list(dir)?;
    if files.is_empty() {
        return Err(DataError::invalid(dir, "no .png, .jpg or .jpeg files here"));
    }
    let mut bytes = Vec::with_capacity(files.len() * 3 * size * size);
    let mut labels = Vec::with_capacity(files.len());
    for (path, label) in &files {
        let raw = super::read_file(path)?;
        bytes.extend(decode_image(&raw, size, path)?);
        labels.push(*label);
    }
    let labels = (classes > 0).then_some(labels);
    Ok(ImageSet::from_u8(3, size, &bytes, labels))
}

/// One PNG or JPEG from its bytes: centre-cropped to a square, resized to `size x size`, alpha
/// composited on white; 8-bit planes, channel-major. `origin` names the bytes in errors.
pub fn decode_image(raw: &[u8], size: usize, origin: &Path) -> Result<Vec<u8>, DataError> {
    let img =
        image::load_from_memory(raw).map_err(|e| DataError::invalid(origin, format!("cannot decode image: {e}")))?;
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    let side = w.min(h);
    if side == 0 {
        return Err(DataError::invalid(origin, "image has no pixels"));
    }
    let crop = image::imageops::crop_imm(&rgba, (w - side) / 2, (h - side) / 2, side, side).to_image();
    let small = image::imageops::resize(&crop, size as u32, size as u32, FilterType::Triangle);
    let mut planes = vec![0u8; 3 * size * size];
    for (i, px) in small.pixels().enumerate() {
        let a = px[3] as f32 / 255.0;
        for c in 0..3 {
            let v = px[c] as f32 * a + 255.0 * (1.0 - a);
            planes[c * size * size + i] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(planes)
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

/// Files with their labels, and the number of classes (0 when unlabelled).
fn list(dir: &Path) -> Result<(Vec<(PathBuf, u32)>, usize), DataError> {
    let entries = sorted_entries(dir)?;
    let subdirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let top: Vec<(PathBuf, u32)> =
        entries.iter().filter(|p| p.is_file() && is_image(p)).map(|p| (p.clone(), 0)).collect();
    if !top.is_empty() || subdirs.is_empty() {
        return Ok((top, 0));
    }
    let mut files = Vec::new();
    for (label, sub) in subdirs.iter().enumerate() {
        for p in sorted_entries(sub)? {
            if p.is_file() && is_image(&p) {
                files.push((p, label as u32));
            }
        }
    }
    Ok((files, subdirs.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tempdir;

    #[test]
    fn folder_round_trips_with_alpha_on_white() {
        let dir = tempdir("img-ok");
        // Opaque red, and fully transparent black (must become white).
        image::RgbaImage::from_pixel(8, 4, image::Rgba([255, 0, 0, 255])).save(dir.join("a.png")).unwrap();
        image::RgbaImage::from_pixel(4, 4, image::Rgba([0, 0, 0, 0])).save(dir.join("b.png")).unwrap();
        image::RgbImage::from_pixel(6, 6, image::Rgb([0, 0, 255])).save(dir.join("c.jpg")).unwrap();
        std::fs::write(dir.join("notes.txt"), "skip me").unwrap();
        let set = load_image_folder(&dir, 2).unwrap();
        assert_eq!((set.len(), set.channels, set.size), (3, 3, 2));
        assert_eq!(set.labels, None);
        assert_eq!(set.image(0), &[1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0][..]);
        assert!(set.image(1).iter().all(|&x| x == 1.0));
        assert!(set.image(2)[8] > 0.9 && set.image(2)[0] < -0.9, "jpeg blue");
    }

    #[test]
    fn class_subfolders_become_labels_and_bad_files_error() {
        let dir = tempdir("img-classes");
        for (k, name) in ["cat", "dog"].iter().enumerate() {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            image::RgbImage::from_pixel(3, 3, image::Rgb([k as u8 * 100, 0, 0]))
                .save(dir.join(name).join("x.png"))
                .unwrap();
        }
        let set = load_image_folder(&dir, 3).unwrap();
        assert_eq!(set.labels, Some(vec![0, 1]));

        let bad = tempdir("img-bad");
        std::fs::write(bad.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let e = load_image_folder(&bad, 4).unwrap_err().to_string();
        assert!(e.contains("broken.png") && e.contains("cannot decode"), "{e}");
        let empty = tempdir("img-empty");
        assert!(load_image_folder(&empty, 4).unwrap_err().to_string().contains("no .png"));
    }
}
