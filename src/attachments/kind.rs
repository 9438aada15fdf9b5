//! What an upload is, decided from its bytes, and the name it may keep.
//!
//! The name and the `Content-Type` a client sends are never believed: a file is an image
//! only when its first bytes are one of the four formats we decode and re-encode, and
//! everything else is a download. A "photo.png" that is not a PNG is a plain file.

use std::fmt;

use image::ImageFormat;

/// Enough of the start of a file for every signature we look for.
pub const SNIFF_BYTES: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// PNG, JPEG, GIF or WebP: shown inline once re-encoded.
    Image(ImageFormat),
    /// Anything else, with the type it is served as (always as an attachment).
    File(&'static str),
}

/// The type of a file from its first bytes.
pub fn detect(head: &[u8]) -> Detected {
    let Some(found) = infer::get(head) else {
        return Detected::File(if looks_like_text(head) {
            "text/plain; charset=utf-8"
        } else {
            "application/octet-stream"
        });
    };
    match found.mime_type() {
        "image/png" => Detected::Image(ImageFormat::Png),
        "image/jpeg" => Detected::Image(ImageFormat::Jpeg),
        "image/gif" => Detected::Image(ImageFormat::Gif),
        "image/webp" => Detected::Image(ImageFormat::WebP),
        // Markup and scripts are never served as what they are, not even as a download.
        mime if mime.starts_with("text/") || mime.contains("xml") || mime.contains("script") => {
            Detected::File("application/octet-stream")
        }
        mime => Detected::File(mime),
    }
}

/// Text without NULs that is valid UTF-8 (allowing a character cut at the end of `head`).
fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

/// A file's name as shown and offered for saving: one path component, no control or
/// direction-changing characters, at most 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

impl FileName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Err("a file needs a name".into());
        }
        if raw.len() > 255 {
            return Err("a file name may be at most 255 bytes long".into());
        }
        if raw.contains(['/', '\\']) || raw == "." || raw == ".." {
            return Err(format!(
                "{:?}: a file name may not contain a path",
                escaped(raw)
            ));
        }
        if raw.chars().any(|c| c.is_control() || is_bidi_control(c)) {
            return Err(format!(
                "{:?}: a file name may not contain control characters",
                escaped(raw)
            ));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Right-to-left overrides and isolates make `invoice<U+202E>fdp.exe` look like a PDF.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// A name for an error message: control characters shown escaped, at most 60 characters.
fn escaped(raw: &str) -> String {
    raw.chars().take(60).flat_map(char::escape_debug).collect()
}

/// `Content-Disposition` for a download of `name` (RFC 6266: an ASCII fallback and the
/// UTF-8 name, percent-encoded).
pub fn content_disposition(disposition: &str, name: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR_CHAR)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_decide_the_type() {
        assert_eq!(
            detect(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Detected::Image(ImageFormat::Png)
        );
        assert_eq!(
            detect(b"\xFF\xD8\xFF\xE0\0\x10JFIF"),
            Detected::Image(ImageFormat::Jpeg)
        );
        assert_eq!(detect(b"GIF89a\x01\0"), Detected::Image(ImageFormat::Gif));
        assert_eq!(
            detect(b"RIFF\0\0\0\0WEBPVP8 "),
            Detected::Image(ImageFormat::WebP)
        );
        assert_eq!(detect(b"%PDF-1.7\n"), Detected::File("application/pdf"));
        assert_eq!(
            detect(b"plain words, not a PNG"),
            Detected::File("text/plain; charset=utf-8")
        );
        for markup in [
            &b"<!DOCTYPE html><html><script>alert(1)</script>"[..],
            b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            b"#!/bin/sh\nrm -rf /",
        ] {
            let detected = detect(markup);
            assert!(
                matches!(detected, Detected::File(t) if !t.contains("html") && !t.contains("xml") && !t.contains("svg")),
                "{detected:?}"
            );
        }
        assert_eq!(
            detect(&[0, 1, 2, 3, 255]),
            Detected::File("application/octet-stream")
        );
    }

    #[test]
    fn names_are_one_harmless_path_component() {
        assert_eq!(
            FileName::parse("Résumé 2024.pdf").unwrap().as_str(),
            "Résumé 2024.pdf"
        );
        for bad in [
            "",
            "  ",
            "../etc/passwd",
            "dir/file",
            "C:\\x",
            "..",
            "a\nb",
            "nul\0",
            "invoice\u{202E}fdp.exe",
        ] {
            assert!(FileName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(FileName::parse(&"x".repeat(256)).is_err());
    }

    #[test]
    fn downloads_keep_their_names_safely() {
        assert_eq!(
            content_disposition("attachment", "a \"b\".pdf"),
            "attachment; filename=\"a _b_.pdf\"; filename*=UTF-8''a%20%22b%22.pdf"
        );
        assert_eq!(
            content_disposition("inline", "é.png"),
            "inline; filename=\"_.png\"; filename*=UTF-8''%C3%A9.png"
        );
    }
}
