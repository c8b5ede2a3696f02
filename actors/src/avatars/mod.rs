//! Avatars: turning an upload into three clean square renditions, and keeping them.
//!
//! Owns: the image pipeline ([`AvatarPipeline`]: type, size and pixel checks, decoding with
//! limits, orientation, centre crop, resize to 512/256/64 px, re-encoding without metadata; the
//! pure steps are in `image.rs`), the object stores ([`AvatarStore`]: a directory under
//! `{data_dir}/avatars/` in embedded mode, or any S3-compatible bucket; `store.rs`), the
//! rendition keys ([`new_avatar_id`], [`rendition_key`], [`is_valid_key`]) and the cache policy
//! ([`CACHE_CONTROL`]).
//!
//! Refuses: running decoders on the async runtime (they run on tokio's blocking pool behind a
//! semaphore of one slot per core), decoding anything before its header proved it small enough,
//! keeping any metadata of the upload (EXIF and its GPS position, XMP, ICC, comments), reading
//! or writing a key it did not make (no path traversal through `GET /v1/avatars/{key}`), and
//! waiting on a store without a deadline (every S3 call has a connect and a total timeout).
//!
//! Who decides what: the profiles context owns which avatar a user has (the keys in its row)
//! and sends the events; the gateway maps [`AvatarError`] to HTTP (see its docs) and sets the
//! body limit of `PUT /v1/users/me/avatar` to [`Limits::max_bytes`] (plus nothing: a larger
//! body is 413 before it is read whole).

mod image;
mod store;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

pub use self::image::{declared_format, process_blocking, Limits, MIN_SIDE, SIZES};
pub use self::store::AvatarStore;

/// `Cache-Control` of every rendition, wherever it is served from. A rendition never changes:
/// a new upload gets new keys.
pub const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// How long an upload waits for a free pipeline slot before the answer is [`AvatarError::Busy`].
pub const ADMISSION_WAIT: Duration = Duration::from_secs(5);

/// Why an avatar was refused or could not be kept. The gateway answers:
///
/// | variant | HTTP | body text |
/// |---|---|---|
/// | `UnsupportedType`, `TypeMismatch` | 415 | `Display` (names the fix) |
/// | `TooLarge` | 413 | `Display` |
/// | `Undecodable`, `TooManyPixels`, `TooSmall` | 422 | `Display` |
/// | `Busy` | 503 + `Retry-After` | `Display` |
/// | `Unavailable` | 503 | a fixed text: the detail is for the log only |
/// | `Internal` | 500 | a fixed text: the detail is for the log only |
///
/// The `Display` of the 4xx and `Busy` variants holds no server detail and is safe to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvatarError {
    /// The declared `Content-Type` is missing or not one of the three accepted types.
    #[error("the Content-Type {declared:?} is not accepted: send the image as image/jpeg, image/png or image/webp")]
    UnsupportedType {
        /// What the client declared (at most 100 characters of it).
        declared: String,
    },
    /// The bytes are not the declared format (e.g. a PNG sent as image/jpeg, or not an image).
    #[error("the body is {} but was declared as {declared}: send it with the Content-Type of its real format (image/jpeg, image/png or image/webp)", found.map_or("not a recognised image".to_owned(), |f| format!("{f} data")))]
    TypeMismatch {
        /// The declared format's name (`JPEG`, `PNG`, `WebP`).
        declared: &'static str,
        /// The format the magic bytes show, if any.
        found: Option<&'static str>,
    },
    /// The body is larger than the limit.
    #[error("the image is larger than {max_bytes} bytes: send a smaller file (e.g. at most 2000×2000 pixels)")]
    TooLarge {
        /// The limit, in bytes.
        max_bytes: usize,
    },
    /// The image cannot be decoded: corrupt, truncated, or an unsupported variant of the format.
    #[error("the image cannot be decoded ({0}): re-export it as a standard JPEG, PNG or WebP")]
    Undecodable(String),
    /// The header claims more pixels than allowed (a pixel bomb, or a huge photo).
    #[error(
        "the image has more than {max} pixels: scale it down (e.g. to 2000×2000) and upload again"
    )]
    TooManyPixels {
        /// The limit, in pixels.
        max: u64,
    },
    /// The shorter side is below the minimum.
    #[error("the image is smaller than {min}×{min} pixels: upload a larger one (at least 512×512 looks best)")]
    TooSmall {
        /// The shortest accepted side, in pixels.
        min: u32,
    },
    /// Every pipeline slot stayed taken for [`ADMISSION_WAIT`].
    #[error("too many avatar uploads are being processed: try again in a few seconds")]
    Busy,
    /// The store did not answer, timed out or refused (network, credentials, bucket, disk).
    #[error("the avatar store is unavailable: {0}")]
    Unavailable(String),
    /// A bug or an impossible state (an encoder failed, the pipeline panicked).
    #[error("internal avatar error: {0}")]
    Internal(String),
}

/// The renditions of one upload, largest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// One per entry of [`SIZES`], in that order (512, 256, 64).
    pub sizes: Vec<Rendition>,
}

/// One square rendition, ready to store and serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    /// Width and height, in pixels.
    pub px: u32,
    /// The encoded image, with no metadata.
    pub bytes: Vec<u8>,
    /// `image/jpeg` (opaque sources) or `image/webp` (sources with transparency).
    pub content_type: &'static str,
    /// `jpg` or `webp`, matching `content_type`.
    pub ext: &'static str,
}

/// The pipeline with its limits and admission control. Cheap to clone: clones share the slots,
/// so make one per node and hand clones out.
#[derive(Clone, Debug)]
pub struct AvatarPipeline {
    limits: Limits,
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl AvatarPipeline {
    /// The pipeline of `[avatars]`, with one slot per core and [`ADMISSION_WAIT`].
    pub fn from_settings(settings: &keyward_config::AvatarSettings) -> AvatarPipeline {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        AvatarPipeline::new(Limits::from_settings(settings), cores, ADMISSION_WAIT)
    }

    /// A pipeline running at most `slots` (at least 1) uploads at once; an upload waits at most
    /// `wait` for a slot.
    pub fn new(limits: Limits, slots: usize, wait: Duration) -> AvatarPipeline {
        AvatarPipeline {
            limits,
            slots: Arc::new(Semaphore::new(slots.max(1))),
            wait,
        }
    }

    /// The limits, e.g. for the route's body limit.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Checks, decodes and re-encodes an upload into [`SIZES`].
    ///
    /// A wrong type or an oversize body is refused at once. Otherwise the upload waits for a
    /// slot (at most one per core run at once, so avatar work never takes more than the
    /// machine and memory stays bounded at about slots × 8 bytes × `max_pixels`) for at most
    /// the admission wait, then runs on tokio's blocking pool. The slot is held until the work
    /// ends, even if the caller gave up meanwhile, so the bound holds.
    pub async fn process(
        &self,
        declared_content_type: &str,
        body: Bytes,
    ) -> Result<Processed, AvatarError> {
        self::image::precheck(declared_content_type, body.len(), &self.limits)?;
        let permit = tokio::time::timeout(self.wait, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| AvatarError::Busy)?
            .map_err(|_| AvatarError::Internal("the pipeline's semaphore is closed".to_owned()))?;
        let limits = self.limits;
        let declared = declared_content_type.to_owned();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            process_blocking(&declared, &body, &limits)
        })
        .await
        .map_err(|e| {
            AvatarError::Internal(if e.is_panic() {
                "the image pipeline panicked on this upload".to_owned()
            } else {
                format!("the image pipeline task ended: {e}")
            })
        })?
    }
}

/// A new avatar's random id: 128 bits as 32 lowercase hex digits. Every upload gets a fresh one,
/// so its URLs can be cached forever.
pub fn new_avatar_id() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The store key of one rendition of avatar `id`: `{id}-{px}.{ext}`.
pub fn rendition_key(id: &str, rendition: &Rendition) -> String {
    format!("{id}-{}.{}", rendition.px, rendition.ext)
}

/// Whether `key` is one [`rendition_key`] can make: 32 lowercase hex digits, `-`, one of
/// [`SIZES`], `.jpg` or `.webp`. Anything else (`..`, `/`, `%2f`, other names) is refused, so a
/// key is always a plain file name in the store.
pub fn is_valid_key(key: &str) -> bool {
    let Some((id, rest)) = key.split_once('-') else {
        return false;
    };
    let Some((px, ext)) = rest.split_once('.') else {
        return false;
    };
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && SIZES.iter().any(|size| size.to_string() == px)
        && matches!(ext, "jpg" | "webp")
}

/// The content type of a valid key's extension.
pub(crate) fn content_type_of(key: &str) -> &'static str {
    if key.ends_with(".webp") {
        "image/webp"
    } else {
        "image/jpeg"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_new_id_makes_valid_keys_for_every_size_and_format() {
        let id = new_avatar_id();
        assert_eq!(id.len(), 32);
        assert_ne!(id, new_avatar_id());
        for px in SIZES {
            for (ext, content_type) in [("jpg", "image/jpeg"), ("webp", "image/webp")] {
                let r = Rendition {
                    px,
                    bytes: Vec::new(),
                    content_type,
                    ext,
                };
                let key = rendition_key(&id, &r);
                assert!(is_valid_key(&key), "{key}");
                assert_eq!(content_type_of(&key), content_type);
            }
        }
    }

    #[test]
    fn keys_we_did_not_make_are_refused() {
        let id = "0123456789abcdef0123456789abcdef";
        for bad in [
            "",
            "../etc/passwd",
            &format!("{id}-64.png"),
            &format!("{id}-65.jpg"),
            &format!("{id}-64.jpg/"),
            &format!("../{id}-64.jpg"),
            &format!("{}-64.jpg", id.to_uppercase()),
            &format!("{id}0-64.jpg"),
            &format!("{id}-64.jpg.jpg"),
            &format!("{id}-64..jpg"),
            &format!("{id}-64%2ejpg"),
            &format!("{}-64.jpg", &id[..31]),
            "0123456789abcdef0123456789abcde/-64.jpg",
        ] {
            assert!(!is_valid_key(bad), "{bad:?} was accepted");
        }
        assert!(is_valid_key(&format!("{id}-512.webp")));
    }

    fn png(width: u32, height: u32) -> Bytes {
        let img = ::image::RgbImage::from_fn(width, height, |x, y| {
            ::image::Rgb([x as u8, y as u8, (x ^ y) as u8])
        });
        let mut out = Vec::new();
        ::image::ImageEncoder::write_image(
            ::image::codecs::png::PngEncoder::new(&mut out),
            img.as_raw(),
            width,
            height,
            ::image::ExtendedColorType::Rgb8,
        )
        .unwrap();
        Bytes::from(out)
    }

    #[tokio::test]
    async fn the_pipeline_runs_off_the_runtime_and_answers_busy_when_every_slot_stays_taken() {
        let pipeline = AvatarPipeline::new(Limits::default(), 1, Duration::from_millis(100));
        let processed = pipeline.process("image/png", png(100, 80)).await.unwrap();
        assert_eq!(
            processed.sizes.iter().map(|r| r.px).collect::<Vec<_>>(),
            SIZES
        );

        let held = Arc::clone(&pipeline.slots).try_acquire_owned().unwrap();
        assert_eq!(
            pipeline.process("image/png", png(100, 80)).await,
            Err(AvatarError::Busy)
        );
        // Refusals that cost nothing do not wait for a slot.
        assert!(matches!(
            pipeline.process("image/gif", png(100, 80)).await,
            Err(AvatarError::UnsupportedType { .. })
        ));
        let tight = AvatarPipeline::new(
            Limits {
                max_bytes: 10,
                ..Limits::default()
            },
            1,
            Duration::from_secs(60),
        );
        let _held_too = Arc::clone(&tight.slots).try_acquire_owned().unwrap();
        assert_eq!(
            tight.process("image/png", png(100, 80)).await,
            Err(AvatarError::TooLarge { max_bytes: 10 })
        );
        drop(held);
        pipeline.process("image/png", png(100, 80)).await.unwrap();
    }

    #[test]
    fn the_pipeline_takes_its_limits_from_the_settings() {
        let settings = keyward_config::AvatarSettings {
            max_bytes: 2048,
            max_pixels: 4096,
            ..Default::default()
        };
        let pipeline = AvatarPipeline::from_settings(&settings);
        assert_eq!(
            pipeline.limits(),
            Limits {
                max_bytes: 2048,
                max_pixels: 4096
            }
        );
        assert!(pipeline.slots.available_permits() >= 1);
    }

    #[test]
    fn client_facing_messages_name_the_fix_and_no_server_detail() {
        let cases = [
            AvatarError::UnsupportedType {
                declared: "image/gif".into(),
            },
            AvatarError::TypeMismatch {
                declared: "JPEG",
                found: Some("PNG"),
            },
            AvatarError::TypeMismatch {
                declared: "PNG",
                found: None,
            },
            AvatarError::TooLarge { max_bytes: 5 },
            AvatarError::TooManyPixels { max: 40_000_000 },
            AvatarError::TooSmall { min: 32 },
        ];
        for e in cases {
            let text = e.to_string();
            assert!(text.contains(':'), "{text}");
            assert!(
                ["send", "upload", "scale", "re-export"]
                    .iter()
                    .any(|fix| text.contains(fix)),
                "no fix in {text}"
            );
        }
        assert_eq!(
            AvatarError::TypeMismatch {
                declared: "JPEG",
                found: Some("PNG")
            }
            .to_string(),
            "the body is PNG data but was declared as JPEG: send it with the Content-Type of its real format (image/jpeg, image/png or image/webp)"
        );
    }
}
