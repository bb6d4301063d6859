//! NumPy `.npy` (format 1.0) for little-endian `f32` arrays.

use std::io::Write;
use std::path::Path;

/// Write `data` with `shape` as a C-order `<f4` array.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> std::io::Result<()> {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "shape does not match data");
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' must be a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend(b"\x93NUMPY\x01\x00");
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    write_with_data(path, out, data)
}

/// Append `data` as little-endian `f32` to `head` and write the file atomically (temporary + rename).
fn write_with_data(path: &Path, mut head: Vec<u8>, data: &[f32]) -> std::io::Result<()> {
    for x in data {
        head.extend(x.to_le_bytes());
    }
    let tmp = path.with_extension("partial");
    std::fs::File::create(&tmp)?.write_all(&head)?;
    std::fs::rename(tmp, path)
}

/// Read a `<f4` C-order array: its shape and data.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let err = |off: usize, m: &str| format!("{}: at byte offset {off}: {m}", path.display());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(err(0, "not a .npy file (bad magic)"));
    }
    if bytes[6] != 1 {
        return Err(err(6, "only .npy format version 1 is supported"));
    }
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = bytes.get(10..10 + hlen).ok_or_else(|| err(bytes.len(), "file ends inside the header"))?;
    let header = std::str::from_utf8(header).map_err(|_| err(10, "header is not text"))?;
    if !header.contains("'descr': '<f4'") || header.contains("'fortran_order': True") {
        return Err(err(10, "only little-endian f32 C-order arrays are supported"));
    }
    let shape_txt = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| err(10, "header has no shape"))?;
    let shape: Vec<usize> = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| err(10, "bad shape")))
        .collect::<Result<_, _>>()?;
    let count: usize = shape.iter().product();
    let body = &bytes[10 + hlen..];
    if body.len() != 4 * count {
        return Err(err(
            10 + hlen + body.len().min(4 * count),
            &format!("expected {} data bytes, found {}", 4 * count, body.len()),
        ));
    }
    let data = body.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    Ok((shape, data))
}

/// Write one little-endian `f32` tensor as a safetensors file (8-byte header
/// length, JSON header, raw data), readable by `safetensors.numpy.load_file`.
pub fn write_safetensors_f32(path: &Path, name: &str, shape: &[usize], data: &[f32]) -> std::io::Result<()> {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "shape does not match data");
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[0,{}]}}}}",
        dims.join(","),
        4 * data.len()
    );
    // Pad the header with spaces to 8-byte alignment, as the format recommends.
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + 4 * data.len());
    out.extend((header.len() as u64).to_le_bytes());
    out.extend(header.as_bytes());
    write_with_data(path, out, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trips_and_rejects_truncation() {
        let dir = crate::data::tempdir("npy");
        let p = dir.join("a.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_f32(&p, &[2, 3, 4], &data).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 96) % 64, 0, "64-byte aligned header");
        assert_eq!(read_f32(&p).unwrap(), (vec![2, 3, 4], data));
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        assert!(read_f32(&p).unwrap_err().contains("expected 96 data bytes"));
        write_f32(&p, &[5], &[1.0; 5]).unwrap();
        assert_eq!(read_f32(&p).unwrap().0, vec![5]);
    }

    #[test]
    fn safetensors_header_names_shape_and_offsets() {
        let dir = std::env::temp_dir().join(format!("covdiff-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.safetensors");
        write_safetensors_f32(&p, "samples", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        let b = std::fs::read(&p).unwrap();
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let header: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
        assert_eq!(header["samples"]["shape"], serde_json::json!([2, 3]));
        assert_eq!(header["samples"]["data_offsets"], serde_json::json!([0, 24]));
        assert_eq!(b.len(), 8 + n + 24);
        assert_eq!(f32::from_le_bytes(b[8 + n + 20..].try_into().unwrap()), 6.5);
    }
}
