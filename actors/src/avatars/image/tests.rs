#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Test images are made here, in code: no binary fixtures.

use super::*;
use image::codecs::png::PngEncoder;
use image::{GenericImageView, ImageEncoder, Rgb};

const GPS_MARKER: &[u8] = b"KEYWARD-GPS-MARKER";
const COMMENT_MARKER: &[u8] = b"KEYWARD-COMMENT-MARKER";
const TEXT_MARKER: &[u8] = b"KEYWARD-PNG-TEXT-MARKER";

fn limits() -> Limits {
    Limits::default()
}

/// A photo-like image: gradients plus a pattern, so encoders have something to encode.
fn photo(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let r = (x * 255 / width.max(1)) as u8;
        let g = (y * 255 / height.max(1)) as u8;
        let b = ((x ^ y) & 0xff) as u8;
        Rgb([r, g, b])
    })
}

fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

fn png_rgb(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

fn png_rgba(img: &RgbaImage) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgba8,
        )
        .unwrap();
    out
}

fn webp(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    WebPEncoder::new_lossless(&mut out)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

fn decode_any(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).unwrap()
}

/// CRC-32 (IEEE), as PNG chunks need.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
    out
}

/// Inserts chunks right after IHDR (8-byte signature + 25-byte IHDR chunk).
fn splice_png_chunks(png: &[u8], chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = png[..33].to_vec();
    for chunk in chunks {
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&png[33..]);
    out
}

/// A TIFF (EXIF) block: IFD0 with Orientation and a GPS IFD holding a latitude and, in
/// GPSMapDatum, [`GPS_MARKER`] so tests can look for it byte for byte.
fn exif_with_gps(orientation: u16) -> Vec<u8> {
    let mut t = Vec::new();
    let entry = |t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]| {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&kind.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value);
    };
    t.extend_from_slice(b"II\x2a\x00");
    t.extend_from_slice(&8u32.to_le_bytes());
    // IFD0 at 8: 2 entries, 30 bytes; the GPS IFD follows at 38.
    t.extend_from_slice(&2u16.to_le_bytes());
    let o = orientation.to_le_bytes();
    entry(&mut t, 0x0112, 3, 1, [o[0], o[1], 0, 0]);
    entry(&mut t, 0x8825, 4, 1, 38u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    // GPS IFD at 38: 3 entries, 42 bytes; its data at 80.
    t.extend_from_slice(&3u16.to_le_bytes());
    entry(&mut t, 0x0001, 2, 2, *b"N\0\0\0");
    entry(&mut t, 0x0002, 5, 3, 80u32.to_le_bytes());
    let marker_len = GPS_MARKER.len() as u32 + 1;
    entry(&mut t, 0x0012, 2, marker_len, 104u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(t.len(), 80);
    for (num, den) in [(55u32, 1u32), (45, 1), (2069, 100)] {
        t.extend_from_slice(&num.to_le_bytes());
        t.extend_from_slice(&den.to_le_bytes());
    }
    t.extend_from_slice(GPS_MARKER);
    t.push(0);
    t
}

fn jpeg_segment(marker: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff, marker];
    out.extend_from_slice(&((data.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Inserts APP1 (EXIF) and COM segments right after SOI.
fn with_exif_and_comment(jpeg: &[u8], exif: &[u8]) -> Vec<u8> {
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(exif);
    let mut out = jpeg[..2].to_vec();
    out.extend(jpeg_segment(0xe1, &app1));
    out.extend(jpeg_segment(0xfe, COMMENT_MARKER));
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// The markers of a JPEG's segments before its scan data.
fn jpeg_markers(bytes: &[u8]) -> Vec<u8> {
    assert_eq!(&bytes[..2], &[0xff, 0xd8], "not a JPEG");
    let mut markers = Vec::new();
    let mut i = 2;
    while i + 4 <= bytes.len() {
        assert_eq!(bytes[i], 0xff, "lost in the segments at {i}");
        let marker = bytes[i + 1];
        markers.push(marker);
        if marker == 0xda {
            break;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        i += 2 + len;
    }
    markers
}

/// The chunk ids of a RIFF (WebP) file.
fn webp_chunks(bytes: &[u8]) -> Vec<[u8; 4]> {
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WEBP");
    let mut chunks = Vec::new();
    let mut i = 12;
    while i + 8 <= bytes.len() {
        let id: [u8; 4] = bytes[i..i + 4].try_into().unwrap();
        let len = u32::from_le_bytes(bytes[i + 4..i + 8].try_into().unwrap()) as usize;
        chunks.push(id);
        i += 8 + len + (len & 1);
    }
    chunks
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_three_clean_squares(processed: &Processed, content_type: &str) {
    let sizes: Vec<u32> = processed.sizes.iter().map(|r| r.px).collect();
    assert_eq!(sizes, vec![512, 256, 64]);
    for r in &processed.sizes {
        assert_eq!(r.content_type, content_type);
        let img = decode_any(&r.bytes);
        assert_eq!(
            img.dimensions(),
            (r.px, r.px),
            "rendition {} is not square",
            r.px
        );
        for marker in [GPS_MARKER, COMMENT_MARKER, TEXT_MARKER] {
            assert!(!contains(&r.bytes, marker), "metadata survived in {}", r.px);
        }
        match r.ext {
            "jpg" => {
                let markers = jpeg_markers(&r.bytes);
                let forbidden: Vec<u8> = markers
                    .iter()
                    .copied()
                    .filter(|m| (0xe1..=0xef).contains(m) || *m == 0xfe)
                    .collect();
                assert!(
                    forbidden.is_empty(),
                    "APPn/COM segments {forbidden:x?} in {}",
                    r.px
                );
            }
            "webp" => {
                assert_eq!(
                    webp_chunks(&r.bytes),
                    vec![*b"VP8L"],
                    "extra chunks in {}",
                    r.px
                );
            }
            other => panic!("unexpected extension {other}"),
        }
        let mut decoder = ImageReader::new(Cursor::new(&r.bytes))
            .with_guessed_format()
            .unwrap()
            .into_decoder()
            .unwrap();
        assert_eq!(decoder.exif_metadata().unwrap(), None);
        assert_eq!(decoder.icc_profile().unwrap(), None);
    }
}

#[test]
fn a_jpeg_png_or_webp_gives_three_clean_squares() {
    let src = photo(640, 480);
    for (declared, body) in [
        ("image/jpeg", jpeg(&src)),
        ("image/png", png_rgb(&src)),
        ("image/webp", webp(&src)),
    ] {
        let processed = process_blocking(declared, &body, &limits())
            .unwrap_or_else(|e| panic!("{declared}: {e}"));
        assert_three_clean_squares(&processed, "image/jpeg");
    }
}

#[test]
fn a_jpeg_with_exif_gps_and_a_comment_comes_out_without_them() {
    let body = with_exif_and_comment(&jpeg(&photo(600, 400)), &exif_with_gps(1));
    // The input really carries them: the decoder sees the EXIF block.
    assert!(contains(&body, GPS_MARKER));
    let mut decoder = ImageReader::with_format(Cursor::new(&body), ImageFormat::Jpeg)
        .into_decoder()
        .unwrap();
    assert!(decoder.exif_metadata().unwrap().is_some());

    let processed = process_blocking("image/jpeg", &body, &limits()).unwrap();
    assert_three_clean_squares(&processed, "image/jpeg");
    for r in &processed.sizes {
        assert_eq!(
            jpeg_markers(&r.bytes)[0],
            0xe0,
            "only JFIF APP0 comes first"
        );
        assert!(!contains(&r.bytes, b"Exif"));
    }
}

#[test]
fn the_exif_orientation_is_applied_before_the_metadata_goes() {
    // Landscape: left half red, right half blue. Orientation 6 means "rotate 90° clockwise to
    // display", so upright it is portrait with red on top.
    let src = RgbImage::from_fn(200, 100, |x, _| {
        if x < 100 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    let body = with_exif_and_comment(&jpeg(&src), &exif_with_gps(6));
    let processed = process_blocking("image/jpeg", &body, &limits()).unwrap();
    let out = decode_any(&processed.sizes[2].bytes).into_rgb8();
    let top = out.get_pixel(32, 4).0;
    let bottom = out.get_pixel(32, 59).0;
    assert!(top[0] > 200 && top[2] < 60, "top should be red, is {top:?}");
    assert!(
        bottom[2] > 200 && bottom[0] < 60,
        "bottom should be blue, is {bottom:?}"
    );
}

#[test]
fn a_png_with_text_chunks_comes_out_without_them() {
    let mut text = b"Comment\0".to_vec();
    text.extend_from_slice(TEXT_MARKER);
    let body = splice_png_chunks(
        &png_rgb(&photo(300, 300)),
        &[
            png_chunk(b"tEXt", &text),
            png_chunk(b"eXIf", &exif_with_gps(1)),
        ],
    );
    assert!(contains(&body, TEXT_MARKER) && contains(&body, GPS_MARKER));
    let processed = process_blocking("image/png", &body, &limits()).unwrap();
    assert_three_clean_squares(&processed, "image/jpeg");
}

#[test]
fn transparency_gives_lossless_webp_without_dark_edges() {
    // Left half fully transparent (black underneath, as editors often leave it), right half
    // opaque red.
    let src = RgbaImage::from_fn(400, 400, |x, _| {
        if x < 200 {
            Rgba([0, 0, 0, 0])
        } else {
            Rgba([255, 0, 0, 255])
        }
    });
    let processed = process_blocking("image/png", &png_rgba(&src), &limits()).unwrap();
    assert_three_clean_squares(&processed, "image/webp");
    for r in &processed.sizes {
        let out = decode_any(&r.bytes).into_rgba8();
        assert_eq!(out.get_pixel(0, 0).0[3], 0, "the left stays transparent");
        assert_eq!(out.get_pixel(r.px - 1, 0).0, [255, 0, 0, 255]);
        for p in out.pixels().filter(|p| p.0[3] > 8) {
            assert!(p.0[0] >= 240, "a dark fringe at {px}: {p:?}", px = r.px);
        }
    }
}

#[test]
fn an_alpha_channel_that_is_all_opaque_gives_jpeg() {
    let src = RgbaImage::from_fn(100, 100, |x, y| Rgba([x as u8, y as u8, 7, 255]));
    let processed = process_blocking("image/png", &png_rgba(&src), &limits()).unwrap();
    assert_three_clean_squares(&processed, "image/jpeg");
}

#[test]
fn a_non_square_image_is_centre_cropped() {
    // Wide: a blue 100 px band at each side, green in the middle 300 px square.
    let src = RgbImage::from_fn(500, 300, |x, _| {
        if (100..400).contains(&x) {
            Rgb([0, 255, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    let processed = process_blocking("image/png", &png_rgb(&src), &limits()).unwrap();
    let out = decode_any(&processed.sizes[0].bytes).into_rgb8();
    for (x, y) in [(0, 0), (511, 0), (0, 511), (511, 511), (256, 256)] {
        let p = out.get_pixel(x, y).0;
        assert!(
            p[1] > 200 && p[2] < 60,
            "({x},{y}) should be green, is {p:?}"
        );
    }
}

#[test]
fn a_small_image_is_upscaled_to_every_size() {
    let processed = process_blocking("image/png", &png_rgb(&photo(40, 40)), &limits()).unwrap();
    assert_three_clean_squares(&processed, "image/jpeg");
}

#[test]
fn an_embedded_display_p3_profile_is_converted_to_srgb() {
    let src = RgbImage::from_pixel(64, 64, Rgb([40, 200, 60]));
    let plain = png_rgb(&src);
    let mut tagged = Vec::new();
    let mut encoder = PngEncoder::new(&mut tagged);
    encoder
        .set_icc_profile(moxcms::ColorProfile::new_display_p3().encode().unwrap())
        .unwrap();
    encoder
        .write_image(src.as_raw(), 64, 64, ExtendedColorType::Rgb8)
        .unwrap();

    let centre = |body: &[u8]| {
        let processed = process_blocking("image/png", body, &limits()).unwrap();
        assert_three_clean_squares(&processed, "image/jpeg");
        decode_any(&processed.sizes[1].bytes)
            .into_rgb8()
            .get_pixel(128, 128)
            .0
    };
    let untagged = centre(&plain);
    let converted = centre(&tagged);
    // The same numbers in P3 are a more saturated green than in sRGB: in sRGB, green goes up
    // or red goes down (by clipping) by a clear margin.
    let distance: i32 = untagged
        .iter()
        .zip(converted.iter())
        .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
        .sum();
    assert!(
        distance > 20,
        "P3 not converted: {untagged:?} vs {converted:?}"
    );
}

/// A PNG whose IHDR claims `width × height` (CRC fixed), with a tiny body.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = png_rgb(&photo(32, 32));
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&[&png[12..29]]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// A JPEG whose SOF0 claims `width × height`, with a tiny body.
fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut jpeg = jpeg(&photo(32, 32));
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .expect("a baseline SOF0");
    // FF C0, length (2), precision (1), height (2), width (2).
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

/// A lossless WebP whose VP8L header claims `width × height` (each at most 16383).
fn webp_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut webp = webp(&photo(32, 32));
    assert_eq!(&webp[12..16], b"VP8L");
    // At 20: the 0x2f signature, then 14 bits width-1, 14 bits height-1, alpha, version.
    let bits = u32::from_le_bytes(webp[21..25].try_into().unwrap());
    let rest = bits & 0xf000_0000;
    let bits = rest | ((height - 1) << 14) | (width - 1);
    webp[21..25].copy_from_slice(&bits.to_le_bytes());
    webp
}

#[test]
fn the_webp_bomb_claims_what_it_should() {
    let bomb = webp_claiming(16_383, 16_383);
    let decoder = ImageReader::with_format(Cursor::new(&bomb), ImageFormat::WebP)
        .into_decoder()
        .unwrap();
    assert_eq!(decoder.dimensions(), (16_383, 16_383));
}

#[test]
fn pixel_bombs_are_refused_from_the_header() {
    let max = limits().max_pixels;
    for (declared, body) in [
        ("image/png", png_claiming(100_000, 100_000)),
        ("image/png", png_claiming(40_000, 1_001)),
        ("image/jpeg", jpeg_claiming(65_000, 65_000)),
        // VP8L's largest (16384 wraps to 0 in image-webp 0.2.4's header reader).
        ("image/webp", webp_claiming(16_383, 16_383)),
    ] {
        assert!(body.len() < 2000, "the bomb itself is tiny");
        let started = std::time::Instant::now();
        let e = process_blocking(declared, &body, &limits()).unwrap_err();
        assert_eq!(e, AvatarError::TooManyPixels { max }, "{declared}");
        // Not a timing assertion: a note for whoever breaks it.
        if started.elapsed() > std::time::Duration::from_secs(1) {
            eprintln!("{declared} bomb took {:?}", started.elapsed());
        }
    }
}

#[test]
fn the_pixel_limit_is_configurable() {
    let body = png_rgb(&photo(300, 200));
    let tight = Limits {
        max_pixels: 300 * 200 - 1,
        ..limits()
    };
    assert_eq!(
        process_blocking("image/png", &body, &tight).unwrap_err(),
        AvatarError::TooManyPixels { max: 59_999 }
    );
    let exact = Limits {
        max_pixels: 300 * 200,
        ..limits()
    };
    process_blocking("image/png", &body, &exact).unwrap();
}

#[test]
fn undeclared_or_unsupported_types_are_refused() {
    let body = png_rgb(&photo(64, 64));
    for declared in [
        "",
        "image/gif",
        "text/plain",
        "image/svg+xml",
        "image/jpg",
        "png",
    ] {
        assert!(
            matches!(
                process_blocking(declared, &body, &limits()),
                Err(AvatarError::UnsupportedType { .. })
            ),
            "{declared:?}"
        );
    }
    for declared in ["IMAGE/PNG", "image/png; charset=binary", " image/png "] {
        process_blocking(declared, &body, &limits()).unwrap_or_else(|e| panic!("{declared}: {e}"));
    }
}

#[test]
fn content_that_is_not_the_declared_type_is_refused() {
    let png = png_rgb(&photo(64, 64));
    assert_eq!(
        process_blocking("image/jpeg", &png, &limits()).unwrap_err(),
        AvatarError::TypeMismatch {
            declared: "JPEG",
            found: Some("PNG")
        }
    );
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec();
    assert_eq!(
        process_blocking("image/png", &gif, &limits()).unwrap_err(),
        AvatarError::TypeMismatch {
            declared: "PNG",
            found: Some("GIF")
        }
    );
    for junk in [
        Vec::new(),
        b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec(),
    ] {
        assert_eq!(
            process_blocking("image/webp", &junk, &limits()).unwrap_err(),
            AvatarError::TypeMismatch {
                declared: "WebP",
                found: None
            }
        );
    }
}

#[test]
fn a_body_over_the_byte_limit_is_refused_before_anything_else() {
    let body = png_rgb(&photo(64, 64));
    let small = Limits {
        max_bytes: body.len() - 1,
        ..limits()
    };
    assert_eq!(
        process_blocking("image/png", &body, &small).unwrap_err(),
        AvatarError::TooLarge {
            max_bytes: body.len() - 1
        }
    );
    let exact = Limits {
        max_bytes: body.len(),
        ..limits()
    };
    process_blocking("image/png", &body, &exact).unwrap();
}

#[test]
fn truncated_or_corrupt_files_are_undecodable() {
    let src = photo(200, 200);
    for (declared, body) in [
        ("image/jpeg", jpeg(&src)),
        ("image/png", png_rgb(&src)),
        ("image/webp", webp(&src)),
    ] {
        let half = &body[..body.len() / 2];
        let e = process_blocking(declared, half, &limits()).err();
        assert!(
            matches!(e, Some(AvatarError::Undecodable(_))),
            "{declared}: {e:?}"
        );
        // Only a header survives: the data is garbage.
        let mut garbage = body[..body.len().min(64)].to_vec();
        garbage.extend(std::iter::repeat_n(0x5a, 4000));
        let e = process_blocking(declared, &garbage, &limits()).err();
        assert!(
            matches!(e, Some(AvatarError::Undecodable(_))),
            "{declared}: {e:?}"
        );
    }
}

#[test]
fn images_below_the_minimum_side_are_refused() {
    for (w, h) in [(16, 16), (31, 400), (400, 31)] {
        assert_eq!(
            process_blocking("image/png", &png_rgb(&photo(w, h)), &limits()).unwrap_err(),
            AvatarError::TooSmall { min: MIN_SIDE },
            "{w}×{h}"
        );
    }
    process_blocking("image/png", &png_rgb(&photo(32, 32)), &limits()).unwrap();
}

#[test]
fn a_large_photo_is_pre_shrunk_and_still_sharp_enough() {
    // 2400×2400 goes through the area-average path; stripes 8 px wide survive as contrast
    // at 512 (the path does not blur them away).
    let src = RgbImage::from_fn(2400, 2400, |x, _| {
        if (x / 24) % 2 == 0 {
            Rgb([255, 255, 255])
        } else {
            Rgb([0, 0, 0])
        }
    });
    let processed = process_blocking("image/png", &png_rgb(&src), &limits()).unwrap();
    assert_three_clean_squares(&processed, "image/jpeg");
    let out = decode_any(&processed.sizes[0].bytes).into_rgb8();
    let row: Vec<u8> = (0..512).map(|x| out.get_pixel(x, 256).0[0]).collect();
    let (lo, hi) = (row.iter().min().unwrap(), row.iter().max().unwrap());
    assert!(*lo < 40 && *hi > 215, "stripes lost: {lo}..{hi}");
}
