//! Images: decoded under limits, turned upright (EXIF orientation), re-encoded without
//! their metadata (EXIF with GPS positions, XMP, comments), and shrunk to a thumbnail.
//! What others download is only ever our re-encoding, never the uploaded bytes.
//!
//! CPU- and memory-heavy: callers run [`process`] on the blocking pool, a few at a time.

use std::{
    fs::File,
    io::{self, BufReader, BufWriter, Write},
    path::Path,
};

use image::metadata::LoopCount;
use image::{
    codecs::{
        gif::{GifDecoder, GifEncoder, Repeat},
        jpeg::JpegEncoder,
        png::PngEncoder,
        webp::WebPEncoder,
    },
    AnimationDecoder, DynamicImage, ImageDecoder, ImageEncoder, ImageError, ImageFormat,
    ImageReader, Limits, RgbaImage,
};

/// Neither side may be longer (a 20,000 × 20,000 PNG is a few kilobytes of zeros that
/// decodes to 1.6 GB: refused before anything is allocated).
pub const MAX_SIDE: u32 = 12_000;
/// The most a decoded image may take in memory (48 megapixels of RGB fit).
pub const MAX_DECODED_BYTES: u64 = 160 * 1024 * 1024;
/// Animated GIFs are re-encoded frame by frame; these bound the work.
const MAX_GIF_FRAMES: usize = 500;
const MAX_GIF_PIXELS: u64 = 250_000_000;
/// Thumbnails fit in this square.
pub const THUMB_SIDE: u32 = 320;
const JPEG_QUALITY: u8 = 90;
const THUMB_JPEG_QUALITY: u8 = 80;

/// What an image became.
pub struct Processed {
    /// The re-encoded image, in a temporary file.
    pub full: super::upload::TempFile,
    pub full_type: &'static str,
    pub width: u32,
    pub height: u32,
    pub thumbnail: Vec<u8>,
    pub thumbnail_type: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum PictureError {
    #[error("the image is too large to show (at most {MAX_SIDE} × {MAX_SIDE} pixels)")]
    TooLarge,
    #[error("the image is damaged or incomplete")]
    Damaged,
    #[error("image processing failed: {0}")]
    Io(#[from] io::Error),
}

impl From<ImageError> for PictureError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::Limits(_) => PictureError::TooLarge,
            ImageError::IoError(e) if e.kind() != io::ErrorKind::UnexpectedEof => {
                PictureError::Io(e)
            }
            _ => PictureError::Damaged,
        }
    }
}

/// The content type of a format we show inline.
pub fn content_type(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "image/png",
        ImageFormat::Jpeg => "image/jpeg",
        ImageFormat::Gif => "image/gif",
        ImageFormat::WebP => "image/webp",
        _ => "application/octet-stream",
    }
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    limits
}

/// Decodes the image at `source` (its format decided from its bytes by the caller),
/// re-encodes it in the same format into a temporary file in `spool`, and makes a
/// thumbnail.
pub fn process(
    source: &Path,
    format: ImageFormat,
    spool: &Path,
) -> Result<Processed, PictureError> {
    let mut full = super::upload::TempFile::from(tempfile::NamedTempFile::new_in(spool)?);
    let (image, width, height) = if format == ImageFormat::Gif {
        let first = reencode_gif(source, full.as_file_mut())?;
        let (w, h) = first.dimensions();
        (DynamicImage::ImageRgba8(first), w, h)
    } else {
        let image = reencode(source, format, full.as_file_mut())?;
        let (w, h) = (image.width(), image.height());
        (image, w, h)
    };
    full.as_file_mut().sync_all()?;
    let (thumbnail, thumbnail_type) = thumbnail(&image)?;
    Ok(Processed {
        full,
        full_type: content_type(format),
        width,
        height,
        thumbnail,
        thumbnail_type,
    })
}

/// A still image: decoded, turned upright, written out again (keeping its colour profile,
/// which says how to show the colours and nothing about where or who).
fn reencode(
    source: &Path,
    format: ImageFormat,
    out: &mut File,
) -> Result<DynamicImage, PictureError> {
    let mut reader = ImageReader::with_format(BufReader::new(File::open(source)?), format);
    let limits = limits();
    reader.limits(limits.clone());
    let mut decoder = reader.into_decoder()?;
    // `into_decoder` checks the sides; the decoded buffer is checked here, before it is
    // allocated (as `ImageReader::decode` does).
    let mut budget = limits;
    budget.reserve(decoder.total_bytes())?;
    let orientation = decoder.orientation()?;
    let icc = decoder.icc_profile().ok().flatten();
    let mut image = DynamicImage::from_decoder(decoder)?;
    image.apply_orientation(orientation);
    let mut writer = BufWriter::new(out);
    match format {
        ImageFormat::Jpeg => {
            if image.has_alpha() || !matches!(image, DynamicImage::ImageLuma8(_)) {
                image = DynamicImage::ImageRgb8(image.into_rgb8());
            }
            let encoder = JpegEncoder::new_with_quality(&mut writer, JPEG_QUALITY);
            write(&image, encoder, icc)?;
        }
        ImageFormat::WebP => {
            if !matches!(
                image,
                DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_)
            ) {
                image = DynamicImage::ImageRgba8(image.into_rgba8());
            }
            write(&image, WebPEncoder::new_lossless(&mut writer), icc)?;
        }
        _ => write(&image, PngEncoder::new(&mut writer), icc)?,
    }
    writer.flush()?;
    Ok(image)
}

fn write(
    image: &DynamicImage,
    mut encoder: impl ImageEncoder,
    icc: Option<Vec<u8>>,
) -> Result<(), PictureError> {
    if let Some(icc) = icc {
        // Not every encoder takes a profile; the image is still right without one.
        let _ = encoder.set_icc_profile(icc);
    }
    image.write_with_encoder(encoder).map_err(|e| match e {
        ImageError::IoError(e) => PictureError::Io(e),
        other => PictureError::Io(io::Error::other(other)),
    })
}

/// A GIF, animated or not, frame by frame (one frame in memory at a time); returns the
/// first frame for the thumbnail.
fn reencode_gif(source: &Path, out: &mut File) -> Result<RgbaImage, PictureError> {
    let mut decoder = GifDecoder::new(BufReader::new(File::open(source)?))?;
    decoder.set_limits(limits())?;
    let (width, height) = decoder.dimensions();
    let repeat = match decoder.loop_count() {
        LoopCount::Infinite => Repeat::Infinite,
        LoopCount::Finite(n) => Repeat::Finite(u16::try_from(n.get()).unwrap_or(u16::MAX)),
    };
    let mut writer = BufWriter::new(out);
    let mut encoder = GifEncoder::new_with_speed(&mut writer, 10);
    encoder.set_repeat(repeat)?;
    let mut first = None;
    let mut pixels = 0u64;
    for (n, frame) in decoder.into_frames().enumerate() {
        let frame = frame?;
        pixels += u64::from(width) * u64::from(height);
        if n >= MAX_GIF_FRAMES || pixels > MAX_GIF_PIXELS {
            return Err(PictureError::TooLarge);
        }
        if first.is_none() {
            first = Some(frame.buffer().clone());
        }
        encoder.encode_frame(frame)?;
    }
    drop(encoder);
    writer.flush()?;
    first.ok_or(PictureError::Damaged)
}

/// The thumbnail, no larger than [`THUMB_SIDE`] either way: a JPEG, or a PNG where the
/// image has transparency.
fn thumbnail(image: &DynamicImage) -> Result<(Vec<u8>, &'static str), PictureError> {
    let small = if image.width() <= THUMB_SIDE && image.height() <= THUMB_SIDE {
        image.clone()
    } else {
        image.thumbnail(THUMB_SIDE, THUMB_SIDE)
    };
    let mut bytes = Vec::new();
    if small.has_alpha() {
        let small = DynamicImage::ImageRgba8(small.into_rgba8());
        write(&small, PngEncoder::new(&mut bytes), None)?;
        Ok((bytes, "image/png"))
    } else {
        let small = DynamicImage::ImageRgb8(small.into_rgb8());
        let encoder = JpegEncoder::new_with_quality(&mut bytes, THUMB_JPEG_QUALITY);
        write(&small, encoder, None)?;
        Ok((bytes, "image/jpeg"))
    }
}

/// The size of a thumbnail of an image this size (for the page's `width` and `height`).
pub fn thumbnail_size(width: u32, height: u32) -> (u32, u32) {
    if width <= THUMB_SIDE && height <= THUMB_SIDE {
        return (width, height);
    }
    let scale = f64::from(THUMB_SIDE) / f64::from(width.max(height));
    (
        ((f64::from(width) * scale).round() as u32).max(1),
        ((f64::from(height) * scale).round() as u32).max(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgb};

    fn spool() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = ImageBuffer::from_fn(width, height, |x, y| Rgb([x as u8, y as u8, 7]));
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(&mut io::Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    /// A small PNG whose header claims `width` × `height` pixels (a decompression bomb's
    /// header, with its checksum right).
    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = png(1, 1);
        bytes[16..20].copy_from_slice(&width.to_be_bytes());
        bytes[20..24].copy_from_slice(&height.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn an_image_is_reencoded_with_a_thumbnail() {
        let dir = spool();
        let source = dir.path().join("in.png");
        std::fs::write(&source, png(800, 400)).unwrap();
        let p = process(&source, ImageFormat::Png, dir.path()).unwrap();
        assert_eq!((p.width, p.height), (800, 400));
        assert_eq!(p.full_type, "image/png");
        let thumb = image::load_from_memory(&p.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (320, 160));
        assert_eq!(thumbnail_size(800, 400), (320, 160));
        assert_eq!(p.thumbnail_type, "image/jpeg");
    }

    #[test]
    fn bombs_and_broken_images_are_refused() {
        let dir = spool();
        let source = dir.path().join("bomb.png");
        std::fs::write(&source, png_claiming(20_000, 20_000)).unwrap();
        assert!(matches!(
            process(&source, ImageFormat::Png, dir.path()),
            Err(PictureError::TooLarge)
        ));
        let whole = png(300, 300);
        std::fs::write(&source, &whole[..whole.len() / 2]).unwrap();
        assert!(matches!(
            process(&source, ImageFormat::Png, dir.path()),
            Err(PictureError::Damaged)
        ));
    }
}
