//! PNG figures: image grids and heatmap panels.

use image::{Rgb, RgbImage};
use std::path::Path;

/// Save `n` images `[C, d, d]` (values in [-1, 1], clipped) as a grid with
/// `cols` columns, each pixel drawn as a `scale x scale` block, 2px gutters.
pub fn save_grid(
    path: &Path,
    pixels: &[f32],
    channels: usize,
    size: usize,
    cols: usize,
    scale: usize,
) -> image::ImageResult<()> {
    let dim = channels * size * size;
    let n = pixels.len() / dim;
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols);
    let cell = size * scale + 2;
    let mut img = RgbImage::from_pixel((cols * cell + 2) as u32, (rows * cell + 2) as u32, Rgb([255, 255, 255]));
    for k in 0..n {
        let im = &pixels[k * dim..(k + 1) * dim];
        let (ox, oy) = (2 + (k % cols) * cell, 2 + (k / cols) * cell);
        for i in 0..size * scale {
            for j in 0..size * scale {
                let p = (i / scale) * size + j / scale;
                let v = |c: usize| to_u8(im[c.min(channels - 1) * size * size + p]);
                img.put_pixel((ox + j) as u32, (oy + i) as u32, Rgb([v(0), v(1), v(2)]));
            }
        }
    }
    save_png(&img, path)
}

fn to_u8(x: f32) -> u8 {
    ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// A square matrix to show as a heatmap.
pub struct Panel<'a> {
    pub n: usize,
    /// Row-major `n x n`.
    pub values: &'a [f64],
}

/// Heatmaps laid out in rows; each column shares a symmetric colour range
/// (blue negative, white zero, red positive). Each panel is about `px` pixels wide.
pub fn save_heatmaps(path: &Path, rows: &[Vec<Panel>], px: usize) -> image::ImageResult<()> {
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let ranges: Vec<f64> = (0..ncols)
        .map(|c| {
            rows.iter().filter_map(|r| r.get(c)).flat_map(|p| p.values.iter()).fold(1e-12f64, |m, v| m.max(v.abs()))
        })
        .collect();
    let gap = 8;
    let mut img = RgbImage::from_pixel(
        (ncols * (px + gap) + gap) as u32,
        (rows.len() * (px + gap) + gap) as u32,
        Rgb([255, 255, 255]),
    );
    for (r, row) in rows.iter().enumerate() {
        for (c, panel) in row.iter().enumerate() {
            let (ox, oy) = (gap + c * (px + gap), gap + r * (px + gap));
            for y in 0..px {
                for x in 0..px {
                    let (i, j) = (y * panel.n / px, x * panel.n / px);
                    let v = panel.values[i * panel.n + j] / ranges[c];
                    img.put_pixel((ox + x) as u32, (oy + y) as u32, diverging(v));
                }
            }
        }
    }
    save_png(&img, path)
}

/// Blue (-1) through white (0) to red (+1).
fn diverging(v: f64) -> Rgb<u8> {
    let v = v.clamp(-1.0, 1.0);
    let fade = |t: f64| (255.0 * (1.0 - t)).round() as u8;
    if v >= 0.0 {
        Rgb([255, fade(v), fade(v)])
    } else {
        Rgb([fade(-v), fade(-v), 255])
    }
}

fn save_png(img: &RgbImage, path: &Path) -> image::ImageResult<()> {
    // Write beside the target, then rename: a killed run never leaves half a file.
    let tmp = path.with_extension("png.partial");
    img.save_with_format(&tmp, image::ImageFormat::Png)?;
    std::fs::rename(&tmp, path).map_err(image::ImageError::IoError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_and_heatmap_have_the_expected_pixels() {
        let dir = crate::data::tempdir("fig");
        let p = dir.join("g.png");
        // Two grey 2x2 images: black and white.
        save_grid(&p, &[-1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0], 1, 2, 2, 3).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (2 * 8 + 2, 10));
        assert_eq!(img.get_pixel(2, 2), &Rgb([0, 0, 0]));
        assert_eq!(img.get_pixel(10, 2), &Rgb([255, 255, 255]));

        let h = dir.join("h.png");
        let m = [1.0, -1.0, 0.0, 0.5];
        save_heatmaps(&h, &[vec![Panel { n: 2, values: &m }]], 4).unwrap();
        let img = image::open(&h).unwrap().to_rgb8();
        assert_eq!(img.get_pixel(8, 8), &Rgb([255, 0, 0]));
        assert_eq!(img.get_pixel(10, 8), &Rgb([0, 0, 255]));
        assert_eq!(img.get_pixel(8, 10), &Rgb([255, 255, 255]));
    }
}
