//! PNG figures that label themselves: image grids with a title and column
//! headers, and heatmap panels with titles and colour scales.

use crate::font;
use image::{Rgb, RgbImage};
use std::path::Path;

const INK: Rgb<u8> = Rgb([0, 0, 0]);
/// Height of one line of text with its padding.
const LINE: usize = font::HEIGHT + 6;

/// Text to draw on a figure: a title over it, and a header per column.
#[derive(Clone, Debug, Default)]
pub struct Labels {
    pub title: String,
    pub columns: Vec<String>,
    /// A title per grid row, drawn at its left (none when empty).
    pub rows: Vec<String>,
}

impl Labels {
    pub fn new(title: impl Into<String>, columns: Vec<String>) -> Self {
        Self { title: title.into(), columns, rows: Vec::new() }
    }

    /// The same labels with a title per row.
    pub fn with_rows(self, rows: Vec<String>) -> Self {
        Self { rows, ..self }
    }

    /// Width of the row titles' margin.
    fn left(&self) -> usize {
        self.rows.iter().map(|t| text_width(t)).max().map_or(0, |w| w + 8)
    }

    fn height(&self) -> usize {
        LINE * (usize::from(!self.title.is_empty()) + usize::from(!self.columns.is_empty()))
    }
}

/// Pixel width of `text` in the figure font.
pub fn text_width(text: &str) -> usize {
    text.chars().count() * font::WIDTH
}

/// Draw `text` with its top-left corner at `(x, y)`; pixels outside the image are skipped.
pub fn draw_text(img: &mut RgbImage, x: usize, y: usize, text: &str, colour: Rgb<u8>) {
    for (k, c) in text.chars().enumerate() {
        for (row, bits) in font::glyph(c).iter().enumerate() {
            for col in 0..font::WIDTH {
                let (px, py) = (x + k * font::WIDTH + col, y + row);
                if bits >> (font::WIDTH - 1 - col) & 1 == 1 && px < img.width() as usize && py < img.height() as usize {
                    img.put_pixel(px as u32, py as u32, colour);
                }
            }
        }
    }
}

/// `text` cut to at most `width` pixels (a trailing `~` marks a cut).
fn fit(text: &str, width: usize) -> String {
    let max = width / font::WIDTH;
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max.saturating_sub(1)).chain(std::iter::once('~')).collect()
    }
}

/// Draw `text` centred on `[x0, x0 + width)` at row `y`, cut to fit.
fn draw_centred(img: &mut RgbImage, x0: usize, width: usize, y: usize, text: &str) {
    let t = fit(text, width);
    draw_text(img, x0 + (width.saturating_sub(text_width(&t))) / 2, y, &t, INK);
}

/// The grid order of images given by column: row `i` holds image `i` of each column in turn,
/// for the first `rows` images (`dim` values each) of every column.
pub fn by_rows(columns: &[Vec<f32>], rows: usize, dim: usize) -> Vec<f32> {
    (0..rows).flat_map(|i| columns.iter().flat_map(move |col| &col[i * dim..(i + 1) * dim])).copied().collect()
}

/// Save `n` images `[C, d, d]` (values in [-1, 1], clipped) as a grid with
/// `cols` columns, each pixel drawn as a `scale x scale` block, 2px gutters,
/// under the title and column headers of `labels`.
pub fn save_grid(
    path: &Path,
    pixels: &[f32],
    channels: usize,
    size: usize,
    cols: usize,
    scale: usize,
    labels: &Labels,
) -> image::ImageResult<()> {
    let dim = channels * size * size;
    let n = pixels.len() / dim;
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols);
    let cell = size * scale + 2;
    let top = labels.height();
    let left = labels.left();
    let width = (left + cols * cell + 2).max(text_width(&labels.title) + 8);
    let mut img = RgbImage::from_pixel(width as u32, (top + rows * cell + 2) as u32, Rgb([255, 255, 255]));
    let mut y = 3;
    if !labels.title.is_empty() {
        draw_centred(&mut img, 0, width, y, &labels.title);
        y += LINE;
    }
    for (c, header) in labels.columns.iter().take(cols).enumerate() {
        draw_centred(&mut img, left + 2 + c * cell, cell - 2, y, header);
    }
    for (r, title) in labels.rows.iter().take(rows).enumerate() {
        let oy = top + 2 + r * cell + (cell.saturating_sub(font::HEIGHT)) / 2;
        draw_text(&mut img, 4, oy, title, INK);
    }
    for k in 0..n {
        let im = &pixels[k * dim..(k + 1) * dim];
        let (ox, oy) = (left + 2 + (k % cols) * cell, top + 2 + (k / cols) * cell);
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

/// `x` in at most 8 characters.
fn short(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1000.0 || x.abs() < 0.01) {
        format!("{x:.1e}")
    } else {
        format!("{x:.3}")
    }
}

/// Heatmaps laid out in rows; each column shares a symmetric colour range
/// (blue negative, white zero, red positive), drawn as a colour bar with its
/// values under the column. `labels` gives the title and the column titles;
/// `row_titles` name the rows at the left. Each panel is about `px` pixels wide.
pub fn save_heatmaps(
    path: &Path,
    rows: &[Vec<Panel>],
    px: usize,
    labels: &Labels,
    row_titles: &[String],
) -> image::ImageResult<()> {
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let ranges: Vec<f64> = (0..ncols)
        .map(|c| {
            rows.iter().filter_map(|r| r.get(c)).flat_map(|p| p.values.iter()).fold(1e-12f64, |m, v| m.max(v.abs()))
        })
        .collect();
    let gap = 8;
    let left = row_titles.iter().map(|t| text_width(t)).max().map_or(0, |w| w + gap);
    let top = labels.height();
    let bar = 10;
    let bottom = gap + bar + 4 + LINE;
    let width = (left + ncols * (px + gap) + gap).max(text_width(&labels.title) + 8);
    let height = top + rows.len() * (px + gap) + gap + bottom;
    let mut img = RgbImage::from_pixel(width as u32, height as u32, Rgb([255, 255, 255]));
    let mut y = 3;
    if !labels.title.is_empty() {
        draw_centred(&mut img, 0, width, y, &labels.title);
        y += LINE;
    }
    for (c, t) in labels.columns.iter().take(ncols).enumerate() {
        draw_centred(&mut img, left + gap + c * (px + gap), px, y, t);
    }
    for (r, row) in rows.iter().enumerate() {
        let oy = top + gap + r * (px + gap);
        if let Some(t) = row_titles.get(r) {
            draw_text(&mut img, gap / 2, oy + px / 2 - font::HEIGHT / 2, t, INK);
        }
        for (c, panel) in row.iter().enumerate() {
            let ox = left + gap + c * (px + gap);
            for y in 0..px {
                for x in 0..px {
                    let (i, j) = (y * panel.n / px, x * panel.n / px);
                    let v = panel.values[i * panel.n + j] / ranges[c];
                    img.put_pixel((ox + x) as u32, (oy + y) as u32, diverging(v));
                }
            }
        }
    }
    // A colour bar per column, from -range to +range.
    let by = top + rows.len() * (px + gap) + gap;
    for (c, range) in ranges.iter().enumerate() {
        let ox = left + gap + c * (px + gap);
        for x in 0..px {
            let v = 2.0 * x as f64 / (px - 1).max(1) as f64 - 1.0;
            for y in 0..bar {
                img.put_pixel((ox + x) as u32, (by + y) as u32, diverging(v));
            }
        }
        let ty = by + bar + 3;
        let (lo, hi) = (short(-range), short(*range));
        draw_text(&mut img, ox, ty, &lo, INK);
        draw_centred(&mut img, ox, px, ty, "0");
        draw_text(&mut img, (ox + px).saturating_sub(text_width(&hi)), ty, &hi, INK);
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
    #[test]
    fn by_rows_interleaves_the_columns() {
        let columns = [vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![7.0, 8.0, 9.0, 10.0, 11.0, 12.0]];
        assert_eq!(super::by_rows(&columns, 2, 2), [1.0, 2.0, 7.0, 8.0, 3.0, 4.0, 9.0, 10.0]);
    }

    use super::*;

    #[test]
    fn grid_and_heatmap_have_the_expected_pixels() {
        let dir = crate::data::tempdir("fig");
        let p = dir.join("g.png");
        // Two grey 2x2 images: black and white.
        save_grid(&p, &[-1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0], 1, 2, 2, 3, &Labels::default()).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (2 * 8 + 2, 10));
        assert_eq!(img.get_pixel(2, 2), &Rgb([0, 0, 0]));
        assert_eq!(img.get_pixel(10, 2), &Rgb([255, 255, 255]));

        let h = dir.join("h.png");
        let m = [1.0, -1.0, 0.0, 0.5];
        save_heatmaps(&h, &[vec![Panel { n: 2, values: &m }]], 4, &Labels::default(), &[]).unwrap();
        let img = image::open(&h).unwrap().to_rgb8();
        assert_eq!(img.get_pixel(8, 8), &Rgb([255, 0, 0]));
        assert_eq!(img.get_pixel(10, 8), &Rgb([0, 0, 255]));
        assert_eq!(img.get_pixel(8, 10), &Rgb([255, 255, 255]));
        // The colour bar under the column runs from blue to red.
        let bar = 8 + 4 + 8;
        assert_eq!(img.get_pixel(8, bar as u32), &Rgb([0, 0, 255]));
        assert_eq!(img.get_pixel(11, bar as u32), &Rgb([255, 0, 0]));
    }

    /// Ink pixels in the rectangle `[x0, x1) x [y0, y1)`.
    fn ink(img: &RgbImage, x0: u32, x1: u32, y0: u32, y1: u32) -> usize {
        (y0..y1).flat_map(|y| (x0..x1).map(move |x| (x, y))).filter(|&(x, y)| img.get_pixel(x, y) == &INK).count()
    }

    #[test]
    fn labels_are_drawn_over_their_columns() {
        let dir = crate::data::tempdir("labels");
        let p = dir.join("g.png");
        // Two white 8x8 images in two columns of 8 * 4 + 2 = 34 px; only the first has a header.
        let labels = Labels::new("", vec!["K".into(), String::new()]);
        save_grid(&p, &[1.0; 128], 1, 8, 2, 4, &labels).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (2 * 34 + 2, LINE as u32 + 34 + 2));
        assert!(ink(&img, 2, 34, 0, LINE as u32) > 5, "a header over column 1");
        assert_eq!(ink(&img, 36, 70, 0, LINE as u32), 0, "nothing over column 2");
        // A glyph is its bitmap: 'K' drawn alone has as many ink pixels as set bits.
        let mut one = RgbImage::from_pixel(font::WIDTH as u32, font::HEIGHT as u32, Rgb([255, 255, 255]));
        draw_text(&mut one, 0, 0, "K", INK);
        let bits: u32 = font::glyph('K').iter().map(|r| r.count_ones()).sum();
        assert_eq!(ink(&one, 0, font::WIDTH as u32, 0, font::HEIGHT as u32), bits as usize);
        assert!(bits > 10);
    }

    #[test]
    fn row_titles_get_a_margin_of_their_own() {
        let dir = crate::data::tempdir("rows");
        let p = dir.join("g.png");
        let labels = Labels::new("", Vec::new()).with_rows(vec!["AB".into(), "C".into()]);
        // Two black 4x4 images in one column of 4 * 2 + 2 = 10 px, under no header.
        save_grid(&p, &[-1.0; 32], 1, 4, 1, 2, &labels).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        let margin = (2 * font::WIDTH + 8) as u32;
        assert_eq!(img.dimensions(), (margin + 10 + 2, 2 * 10 + 2));
        assert!(ink(&img, 0, margin, 0, 12) > 5 && ink(&img, 0, margin, 12, 22) > 3, "a title per row");
        // The images start after the margin.
        assert_eq!(img.get_pixel(margin + 2, 2), &INK);
        assert_eq!(img.get_pixel(margin, 2), &Rgb([255, 255, 255]));
    }
}
