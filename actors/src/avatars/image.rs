//! The pure avatar pipeline: bytes in, three square renditions out, no I/O and no runtime.
//!
//! Steps, each refusing with its own [`AvatarError`] before any costly work:
//! 1. the declared media type must be `image/jpeg`, `image/png` or `image/webp` (else 415);
//! 2. the body must fit `max_bytes` (else 413);
//! 3. the content's magic bytes must be the declared format (else 415);
//! 4. the header is read — only the header — and `width × height` must fit `max_pixels` and
//!    the shorter side be at least [`MIN_SIDE`] (else 422). A pixel bomb (a tiny file whose
//!    header claims 100000×100000) is refused here, before a pixel buffer exists. The decoder
//!    also gets `image::Limits` (`max_alloc` = 8 bytes × `max_pixels`, the size of a 16-bit RGBA
//!    buffer), so a decoder that would allocate more than the header promised stops too;
//! 5. decode (a corrupt or truncated file is 422), turn it upright by its EXIF orientation,
//!    centre-crop to a square, resize to 512, 256 and 64 px, convert colours from an embedded
//!    RGB ICC profile (e.g. Display P3 from phones) to sRGB, and encode afresh.
//!
//! Re-encoding from bare pixels is what removes metadata: no EXIF (GPS, camera, time), XMP,
//! IPTC, ICC profile, comment or text chunk of the upload reaches an output, because the
//! encoders are never given any. Only a JPEG's JFIF APP0 header is written.
//!
//! Sizes and formats (`docs/PERFORMANCE.md`, "Avatar pipeline", has the numbers):
//! - Every rendition is exactly `px × px`, so clients and CSS can rely on it. A source whose
//!   square is smaller than 512 px is upscaled (Catmull-Rom, which does not ring) rather than
//!   served smaller: the 32 px minimum bounds how soft that gets, and a soft upscale costs few
//!   bytes.
//! - Downscaling uses Lanczos3. A square of 2048 px or more is first area-averaged to 1024 px
//!   (exact box filter, no aliasing), which keeps a 12-megapixel photo fast without a visible
//!   difference; 256 and 64 are made from the 512 rendition.
//! - Opaque images become baseline JPEG at quality 85 (4:4:4, as the `image` encoder writes
//!   it): a 512 px photo is some tens of KB, and q85 has no visible artefacts at avatar sizes.
//!   Images with any transparent pixel become lossless WebP (the `image` crate encodes no lossy
//!   WebP; its lossless encoder beats PNG in size and speed), resized with premultiplied alpha
//!   so edges do not darken. An alpha channel that is fully opaque counts as opaque.
//! - Animated PNG or WebP: the first frame only.
//!
//! Refuses: other formats (GIF, AVIF, HEIC, SVG: no decoder is compiled in), guessing a type
//! the client did not declare, and keeping any byte of the upload's metadata.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPEncoder;
use image::imageops::FilterType;
use image::{
    DynamicImage, ExtendedColorType, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage,
    Rgba, RgbaImage,
};

use super::{AvatarError, Processed, Rendition};

/// The rendition sizes, in pixels, largest first.
pub const SIZES: [u32; 3] = [512, 256, 64];
/// The shortest accepted side of an upload, in pixels.
pub const MIN_SIDE: u32 = 32;
/// Quality of JPEG renditions (1–100).
const JPEG_QUALITY: u8 = 85;
/// Squares at least this large are area-averaged to [`PRE_SHRINK_TO`] before Lanczos3.
const PRE_SHRINK_FROM: u32 = 2048;
const PRE_SHRINK_TO: u32 = 1024;
/// Bytes per pixel the decoder may allocate: a 16-bit RGBA image.
const MAX_BYTES_PER_PIXEL: u64 = 8;

/// What an upload may weigh; from `[avatars]` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest body, in bytes.
    pub max_bytes: usize,
    /// Most pixels (width × height) by the header.
    pub max_pixels: u64,
}

impl Limits {
    /// The limits of `[avatars]` (`KEYWARD_AVATARS__MAX_BYTES`, `__MAX_PIXELS`).
    pub fn from_settings(settings: &keyward_config::AvatarSettings) -> Limits {
        Limits {
            max_bytes: settings.max_bytes,
            max_pixels: settings.max_pixels,
        }
    }
}

impl Default for Limits {
    /// 5 MiB and 40 megapixels, as DESIGN.md promises.
    fn default() -> Self {
        Limits::from_settings(&keyward_config::AvatarSettings::default())
    }
}

/// The format a `Content-Type` value declares, if it is one of the accepted three.
/// Parameters (`; charset=…`) and case are ignored.
pub fn declared_format(content_type: &str) -> Option<ImageFormat> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/png" => Some(ImageFormat::Png),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

/// A format's usual name, for messages (`guess_format` knows more formats than are decoded).
fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::WebP => "WebP",
        ImageFormat::Gif => "GIF",
        ImageFormat::Avif => "AVIF",
        ImageFormat::Bmp => "BMP",
        ImageFormat::Tiff => "TIFF",
        ImageFormat::Ico => "ICO",
        ImageFormat::Tga => "TGA",
        ImageFormat::Hdr => "HDR",
        ImageFormat::OpenExr => "OpenEXR",
        ImageFormat::Pnm => "PNM",
        ImageFormat::Dds => "DDS",
        ImageFormat::Qoi => "QOI",
        ImageFormat::Farbfeld => "farbfeld",
        _ => "non-web",
    }
}

/// Checks that are free (no decoding): the declared type and the size. The async wrapper runs
/// them before waiting for a pipeline slot, so these refusals never queue.
pub fn precheck(
    declared_content_type: &str,
    len: usize,
    limits: &Limits,
) -> Result<ImageFormat, AvatarError> {
    let format =
        declared_format(declared_content_type).ok_or_else(|| AvatarError::UnsupportedType {
            declared: declared_content_type.chars().take(100).collect(),
        })?;
    if len > limits.max_bytes {
        return Err(AvatarError::TooLarge {
            max_bytes: limits.max_bytes,
        });
    }
    Ok(format)
}

/// The whole pipeline, on the calling thread (CPU-bound: tens to hundreds of milliseconds).
/// [`super::AvatarPipeline::process`] runs it off the async runtime.
pub fn process_blocking(
    declared_content_type: &str,
    body: &[u8],
    limits: &Limits,
) -> Result<Processed, AvatarError> {
    let format = precheck(declared_content_type, body.len(), limits)?;
    let found = image::guess_format(body).ok();
    if found != Some(format) {
        return Err(AvatarError::TypeMismatch {
            declared: format_name(format),
            found: found.map(format_name),
        });
    }

    if format == ImageFormat::Jpeg && !jpeg_has_end(body) {
        // The JPEG decoder fills a truncated scan with grey instead of failing.
        return Err(AvatarError::Undecodable(
            "the JPEG file ends early (truncated upload?)".to_owned(),
        ));
    }
    let decoded = decode(body, format, limits)?;
    let square = centre_square(decoded.image);
    let sizes = if is_opaque(&square) {
        opaque_renditions(square.into_rgb8(), decoded.icc.as_ref())?
    } else {
        transparent_renditions(square.into_rgba8(), decoded.icc.as_ref())?
    };
    Ok(Processed { sizes })
}

struct Decoded {
    /// Upright (EXIF orientation applied), in the source's colour space.
    image: DynamicImage,
    /// A transform from the embedded RGB ICC profile to sRGB, when there is one.
    icc: Option<IccToSrgb>,
}

fn decode(body: &[u8], format: ImageFormat, limits: &Limits) -> Result<Decoded, AvatarError> {
    let too_many = || AvatarError::TooManyPixels {
        max: limits.max_pixels,
    };
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(MAX_BYTES_PER_PIXEL));
    let mut reader = ImageReader::with_format(Cursor::new(body), format);
    reader.limits(decoder_limits.clone());
    // Reads the header (and, for PNG, the chunks before the pixel data): nothing proportional
    // to the claimed dimensions is allocated yet.
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| undecodable(e, format, too_many))?;

    let (width, height) = decoder.dimensions();
    if u64::from(width).saturating_mul(u64::from(height)) > limits.max_pixels {
        return Err(too_many());
    }
    if width.min(height) < MIN_SIDE {
        return Err(AvatarError::TooSmall { min: MIN_SIDE });
    }
    decoder_limits.max_image_width = Some(width);
    decoder_limits.max_image_height = Some(height);
    decoder
        .set_limits(decoder_limits)
        .map_err(|e| undecodable(e, format, too_many))?;

    // Metadata is read only to be applied (orientation, colours) and is then dropped.
    let orientation = decoder.orientation().ok();
    let icc = decoder
        .icc_profile()
        .ok()
        .flatten()
        .and_then(|icc| IccToSrgb::new(&icc));
    let mut image =
        DynamicImage::from_decoder(decoder).map_err(|e| undecodable(e, format, too_many))?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(Decoded { image, icc })
}

/// A decoder's error as the caller's answer. Its text names the format's problem, never memory.
fn undecodable(
    err: ImageError,
    format: ImageFormat,
    too_many: impl Fn() -> AvatarError,
) -> AvatarError {
    match err {
        ImageError::Limits(_) => too_many(),
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            AvatarError::Undecodable(format!(
                "the {} file ends early (truncated upload?)",
                format_name(format)
            ))
        }
        other => {
            let text: String = other.to_string().chars().take(200).collect();
            AvatarError::Undecodable(format!(
                "the {} file is corrupt: {text}",
                format_name(format)
            ))
        }
    }
}

/// Whether a JPEG has an end-of-image marker after its first scan starts. Segments before the
/// scan are skipped by their lengths, so an EXIF thumbnail's own markers do not count; inside
/// scan data a 0xFF byte is always followed by 0x00 or a restart marker, so FF D9 there is the
/// real end. Bytes after it (some cameras append trailers) are allowed.
fn jpeg_has_end(body: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= body.len() {
        if body[i] != 0xff {
            return false;
        }
        match body[i + 1] {
            // Fill bytes before a marker.
            0xff => i += 1,
            // Markers that stand alone (no length): TEM, RST0-7.
            0x01 | 0xd0..=0xd7 => i += 2,
            // Start of scan: look for the end after it.
            0xda => return body[i..].windows(2).any(|w| w == [0xff, 0xd9]),
            _ => {
                let len = usize::from(u16::from_be_bytes([body[i + 2], body[i + 3]]));
                i += 2 + len;
            }
        }
    }
    false
}

fn centre_square(image: DynamicImage) -> DynamicImage {
    let (width, height) = (image.width(), image.height());
    let side = width.min(height);
    if width == height {
        return image;
    }
    image.crop_imm((width - side) / 2, (height - side) / 2, side, side)
}

/// Whether no pixel is transparent (no alpha channel, or one that is everywhere opaque).
fn is_opaque(image: &DynamicImage) -> bool {
    match image {
        DynamicImage::ImageLumaA8(i) => i.pixels().all(|p| p.0[1] == u8::MAX),
        DynamicImage::ImageRgba8(i) => i.pixels().all(|p| p.0[3] == u8::MAX),
        DynamicImage::ImageLumaA16(i) => i.pixels().all(|p| p.0[1] == u16::MAX),
        DynamicImage::ImageRgba16(i) => i.pixels().all(|p| p.0[3] == u16::MAX),
        DynamicImage::ImageRgba32F(i) => i.pixels().all(|p| p.0[3] >= 1.0),
        other => !other.color().has_alpha(),
    }
}

/// Downscale with Lanczos3 (area-averaging huge squares first), upscale with Catmull-Rom.
/// The pixel type is kept.
fn resize_square(src: &DynamicImage, px: u32) -> DynamicImage {
    let side = src.width();
    if side == px {
        return src.clone();
    }
    if side < px {
        return src.resize_exact(px, px, FilterType::CatmullRom);
    }
    if side >= PRE_SHRINK_FROM {
        return src
            .thumbnail_exact(PRE_SHRINK_TO, PRE_SHRINK_TO)
            .resize_exact(px, px, FilterType::Lanczos3);
    }
    src.resize_exact(px, px, FilterType::Lanczos3)
}

/// Calls `out` with each of [`SIZES`], largest first: each size is made from the source when
/// the source is smaller than the largest (no upscale-then-downscale), else from the largest
/// rendition.
fn each_size(
    src: &DynamicImage,
    mut out: impl FnMut(u32, DynamicImage) -> Result<(), AvatarError>,
) -> Result<(), AvatarError> {
    let [largest, rest @ ..] = SIZES;
    let big = resize_square(src, largest);
    let base = if src.width() < largest { src } else { &big };
    let smaller: Vec<(u32, DynamicImage)> = rest
        .iter()
        .map(|&px| (px, resize_square(base, px)))
        .collect();
    out(largest, big)?;
    for (px, img) in smaller {
        out(px, img)?;
    }
    Ok(())
}

fn opaque_renditions(
    src: RgbImage,
    icc: Option<&IccToSrgb>,
) -> Result<Vec<Rendition>, AvatarError> {
    let mut sizes = Vec::with_capacity(SIZES.len());
    each_size(&DynamicImage::ImageRgb8(src), |px, img| {
        let mut img = img.into_rgb8();
        if let Some(icc) = icc {
            icc.apply(&mut img, moxcms::Layout::Rgb);
        }
        let mut bytes = Vec::new();
        JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY)
            .encode(img.as_raw(), px, px, ExtendedColorType::Rgb8)
            .map_err(encode_failed)?;
        sizes.push(Rendition {
            px,
            bytes,
            content_type: "image/jpeg",
            ext: "jpg",
        });
        Ok(())
    })?;
    Ok(sizes)
}

fn transparent_renditions(
    src: RgbaImage,
    icc: Option<&IccToSrgb>,
) -> Result<Vec<Rendition>, AvatarError> {
    let premultiplied = DynamicImage::ImageRgba16(premultiply(&src));
    drop(src);
    let mut sizes = Vec::with_capacity(SIZES.len());
    each_size(&premultiplied, |px, img| {
        let mut img = unpremultiply(&img.into_rgba16());
        if let Some(icc) = icc {
            icc.apply(&mut img, moxcms::Layout::Rgba);
        }
        let mut bytes = Vec::new();
        WebPEncoder::new_lossless(&mut bytes)
            .encode(img.as_raw(), px, px, ExtendedColorType::Rgba8)
            .map_err(encode_failed)?;
        sizes.push(Rendition {
            px,
            bytes,
            content_type: "image/webp",
            ext: "webp",
        });
        Ok(())
    })?;
    Ok(sizes)
}

type Rgba16Image = image::ImageBuffer<Rgba<u16>, Vec<u16>>;

/// RGBA8 → premultiplied RGBA16, so resampling weighs colour by coverage (no dark fringes) and
/// faint pixels keep their colour precision.
fn premultiply(src: &RgbaImage) -> Rgba16Image {
    Rgba16Image::from_fn(src.width(), src.height(), |x, y| {
        let [r, g, b, a] = src.get_pixel(x, y).0;
        let scale = |c: u8| -> u16 {
            // c·a/255 in 8-bit units, times 257 to span 16 bits; at most 65535.
            let v = (u32::from(c) * u32::from(a) * 257 + 127) / 255;
            u16::try_from(v).unwrap_or(u16::MAX)
        };
        Rgba([scale(r), scale(g), scale(b), u16::from(a) * 257])
    })
}

fn unpremultiply(src: &Rgba16Image) -> RgbaImage {
    RgbaImage::from_fn(src.width(), src.height(), |x, y| {
        let [r, g, b, a] = src.get_pixel(x, y).0;
        let alpha8 = u8::try_from((u32::from(a) + 128) / 257).unwrap_or(u8::MAX);
        if a == 0 {
            return Rgba([0, 0, 0, 0]);
        }
        let channel = |c: u16| -> u8 {
            let v = (u32::from(c) * 255 + u32::from(a) / 2) / u32::from(a);
            u8::try_from(v.min(255)).unwrap_or(u8::MAX)
        };
        Rgba([channel(r), channel(g), channel(b), alpha8])
    })
}

fn encode_failed(err: ImageError) -> AvatarError {
    AvatarError::Internal(format!("encoding a rendition: {err}"))
}

/// An embedded RGB ICC profile's transform to sRGB, built once per upload.
struct IccToSrgb {
    rgb: std::sync::Arc<moxcms::Transform8BitExecutor>,
    rgba: std::sync::Arc<moxcms::Transform8BitExecutor>,
}

impl IccToSrgb {
    /// `None` for a profile that does not parse, is not RGB (grey, CMYK: those are left as the
    /// decoder gave them) or cannot be converted; the pixels are then taken as sRGB.
    fn new(icc: &[u8]) -> Option<IccToSrgb> {
        let source = moxcms::ColorProfile::new_from_slice(icc).ok()?;
        if source.color_space != moxcms::DataColorSpace::Rgb {
            return None;
        }
        let srgb = moxcms::ColorProfile::new_srgb();
        let options = moxcms::TransformOptions::default();
        let transform = |layout| {
            source
                .create_transform_8bit(layout, &srgb, layout, options)
                .ok()
        };
        Some(IccToSrgb {
            rgb: transform(moxcms::Layout::Rgb)?,
            rgba: transform(moxcms::Layout::Rgba)?,
        })
    }

    /// Converts in place; on a transform error the pixels stay as they were.
    fn apply<P: image::Pixel<Subpixel = u8>>(
        &self,
        img: &mut image::ImageBuffer<P, Vec<u8>>,
        layout: moxcms::Layout,
    ) {
        let transform = match layout {
            moxcms::Layout::Rgba => &self.rgba,
            _ => &self.rgb,
        };
        let src = img.as_raw().clone();
        let dst: &mut [u8] = img;
        if transform.transform(&src, dst).is_err() {
            dst.copy_from_slice(&src);
        }
    }
}

#[cfg(test)]
mod tests;
