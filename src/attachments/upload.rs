//! Reading a multipart body: text fields into memory (small, bounded), file parts
//! streamed to temporary files and checked one by one. Nothing here stores anything: the
//! caller stores the checked files once the whole body has been read and found good.

use axum::{
    extract::{multipart::MultipartError, FromRequest, Multipart, Request},
    http::{header, HeaderMap, StatusCode},
};
use std::io::Write;

use super::{
    kind::{FileName, SNIFF_BYTES},
    Attachments, Prepared, MAX_FILES,
};
use crate::error::{AppError, AppResult};

/// Text fields a form may have, and the most each may hold.
const MAX_FIELDS: usize = 32;
const MAX_FIELD_BYTES: usize = 64 * 1024;
/// The size of the writes to a spool file.
const SPOOL_BUFFER: usize = 256 * 1024;

/// An uploaded file in a temporary file (deleted when dropped), with its first bytes.
pub struct Spooled {
    pub file: TempFile,
    pub size: u64,
    pub head: Vec<u8>,
}

/// A temporary file that is deleted when dropped, off the async worker threads: creating
/// and unlinking files of megabytes can wait on the disk, and a worker that waits holds
/// up every request it serves (measured: `/health` p99 under 50 uploads at once).
pub struct TempFile(Option<tempfile::NamedTempFile>);

impl TempFile {
    /// A new temporary file in `dir`, created on the blocking pool.
    pub async fn new_in(dir: &std::path::Path) -> std::io::Result<Self> {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || tempfile::NamedTempFile::new_in(dir))
            .await
            .map_err(std::io::Error::other)?
            .map(Self::from)
    }

    pub fn path(&self) -> &std::path::Path {
        self.inner().path()
    }

    pub fn as_file(&self) -> &std::fs::File {
        self.inner().as_file()
    }

    pub fn as_file_mut(&mut self) -> &mut std::fs::File {
        self.0
            .as_mut()
            .expect("a temporary file until dropped")
            .as_file_mut()
    }

    fn inner(&self) -> &tempfile::NamedTempFile {
        self.0.as_ref().expect("a temporary file until dropped")
    }
}

impl From<tempfile::NamedTempFile> for TempFile {
    fn from(file: tempfile::NamedTempFile) -> Self {
        Self(Some(file))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let Some(file) = self.0.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || drop(file));
            }
            Err(_) => drop(file),
        }
    }
}

/// A multipart form: its text fields in order, and its checked files.
#[derive(Default)]
pub struct Form {
    pub fields: Vec<(String, String)>,
    pub files: Vec<Prepared>,
}

impl Form {
    /// The first value of a text field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether a request's body is `multipart/form-data`.
pub fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

fn multipart_error(e: MultipartError) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge("the upload is larger than the server accepts".into())
    } else {
        // Part headers that do not parse are usually a file name with control characters
        // in it (only `"`, CR and LF are escaped by browsers).
        AppError::unprocessable(
            &["body"],
            format!(
                "the upload could not be read ({}): is it cut off, or is there a control character in a file name?",
                e.body_text()
            ),
        )
    }
}

impl Attachments {
    /// Reads a whole multipart body: every file spooled and checked (all of them, or an
    /// error and none), at most [`MAX_FILES`]. A file input left empty is skipped.
    pub async fn read_form<S: Send + Sync>(&self, request: Request, state: &S) -> AppResult<Form> {
        if !is_multipart(request.headers()) {
            return Err(AppError::UnsupportedMediaType(
                "expected a multipart/form-data body".into(),
            ));
        }
        let mut multipart = Multipart::from_request(request, state)
            .await
            .map_err(|e| AppError::BadRequest(e.body_text()))?;
        let mut form = Form::default();
        while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
            let name = field.name().unwrap_or_default().to_string();
            let Some(file_name) = field.file_name().map(str::to_string) else {
                if form.fields.len() >= MAX_FIELDS {
                    return Err(AppError::unprocessable(&["body"], "too many form fields"));
                }
                let mut value = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if value.len() + chunk.len() > MAX_FIELD_BYTES {
                        return Err(AppError::PayloadTooLarge(format!(
                            "the form field {name} is too long"
                        )));
                    }
                    value.extend_from_slice(&chunk);
                }
                let value = String::from_utf8(value)
                    .map_err(|_| AppError::unprocessable(&["body", &name], "not UTF-8 text"))?;
                form.fields.push((name, value));
                continue;
            };
            let spooled = self.spool(&mut field, &file_name).await?;
            if file_name.is_empty() && spooled.size == 0 {
                // A file input with nothing chosen still sends an empty part.
                continue;
            }
            if form.files.len() >= MAX_FILES {
                return Err(AppError::unprocessable(
                    &["body", "files"],
                    format!("at most {MAX_FILES} files per message"),
                ));
            }
            let file_name = FileName::parse(&file_name)
                .map_err(|m| AppError::unprocessable(&["body", "files"], m))?;
            if spooled.size == 0 {
                return Err(AppError::unprocessable(
                    &["body", "files"],
                    format!("{file_name} is empty"),
                ));
            }
            form.files.push(self.check(file_name, spooled).await?);
        }
        Ok(form)
    }

    /// Streams one file part to a temporary file, refusing it past `MAX_UPLOAD_MB`.
    async fn spool(
        &self,
        field: &mut axum::extract::multipart::Field<'_>,
        name: &str,
    ) -> AppResult<Spooled> {
        let max = self.max_file_bytes();
        let file = TempFile::new_in(&self.inner.spool)
            .await
            .map_err(|e| anyhow::Error::new(e).context("creating a spool file"))?;
        let mut handle = file
            .as_file()
            .try_clone()
            .map_err(|e| anyhow::Error::new(e).context("opening a spool file"))?;
        // Chunks are copied at once into one 256 KiB buffer, so that the multipart reader
        // reuses its memory; each full buffer is written by a background thread
        // (`crate::background`), which hands file and buffer back. No thread waits on the
        // client: a stalled upload holds memory, not a thread.
        let mut buffer = Vec::with_capacity(SPOOL_BUFFER);
        let mut size = 0u64;
        let mut head = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            size += chunk.len() as u64;
            if size > max {
                return Err(AppError::PayloadTooLarge(format!(
                    "{} is larger than {} MB",
                    name.chars().take(100).collect::<String>(),
                    max / 1_000_000
                )));
            }
            if head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            if !buffer.is_empty() && buffer.len() + chunk.len() > SPOOL_BUFFER {
                (handle, buffer) = write_in_background(handle, buffer).await?;
            }
            buffer.extend_from_slice(&chunk);
        }
        if !buffer.is_empty() {
            write_in_background(handle, buffer).await?;
        }
        Ok(Spooled { file, size, head })
    }
}

/// Writes `buffer` to the spool file on a background thread; file and emptied buffer back.
async fn write_in_background(
    mut file: std::fs::File,
    mut buffer: Vec<u8>,
) -> AppResult<(std::fs::File, Vec<u8>)> {
    crate::background::spawn(move || {
        file.write_all(&buffer)?;
        buffer.clear();
        Ok((file, buffer))
    })
    .await?
    .map_err(|e: std::io::Error| anyhow::Error::new(e).context("spooling an upload").into())
}

/// The value of a multipart form's first part when that part is the text field `field`
/// (the CSRF token of a form posted without JavaScript: the form puts it first), and
/// the request with its body intact. Reads no further than the end of that part, and at
/// most `max` bytes: a file after it is not buffered.
pub async fn first_field(
    request: Request,
    field: &str,
    max: usize,
) -> AppResult<(Request, Option<String>)> {
    use futures_util::{stream, StreamExt};
    use http_body_util::BodyExt;

    let Some(boundary) = boundary(request.headers()) else {
        return Ok((request, None));
    };
    let (parts, body) = request.into_parts();
    // Errors pass through unwrapped, so a body over its limit still reads as one (413).
    let mut body = body.map_err(axum::Error::into_inner);
    let delimiter = format!("\r\n--{boundary}");
    let mut read: Vec<u8> = Vec::new();
    let mut value = None;
    let mut failure = None;
    while read.len() < max {
        match body.frame().await {
            None => break,
            Some(Err(e)) => {
                failure = Some(e);
                break;
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    read.extend_from_slice(&data);
                }
            }
        }
        match parse_first_part(&read, &boundary, &delimiter, field) {
            FirstPart::Incomplete => continue,
            FirstPart::Other => break,
            FirstPart::Field(v) => {
                value = Some(v);
                break;
            }
        }
    }
    let prefix = stream::iter([Ok::<_, axum::BoxError>(bytes::Bytes::from(read))]);
    let failed = stream::iter(failure.map(Err));
    let rest = body.into_data_stream();
    let body = axum::body::Body::from_stream(prefix.chain(failed).chain(rest));
    Ok((Request::from_parts(parts, body), value))
}

enum FirstPart {
    Incomplete,
    Other,
    Field(String),
}

fn parse_first_part(read: &[u8], boundary: &str, delimiter: &str, field: &str) -> FirstPart {
    let opening = format!("--{boundary}\r\n");
    if read.len() < opening.len() {
        return FirstPart::Incomplete;
    }
    if !read.starts_with(opening.as_bytes()) {
        return FirstPart::Other;
    }
    let rest = &read[opening.len()..];
    let Some(headers_end) = find(rest, b"\r\n\r\n") else {
        return FirstPart::Incomplete;
    };
    let headers = String::from_utf8_lossy(&rest[..headers_end]).to_ascii_lowercase();
    let names_field = headers.lines().any(|line| {
        line.starts_with("content-disposition:")
            && line.contains("form-data")
            && line.contains(&format!("name=\"{field}\""))
            && !line.contains("filename")
    });
    if !names_field {
        return FirstPart::Other;
    }
    let content = &rest[headers_end + 4..];
    match find(content, delimiter.as_bytes()) {
        Some(end) => match std::str::from_utf8(&content[..end]) {
            Ok(v) => FirstPart::Field(v.to_string()),
            Err(_) => FirstPart::Other,
        },
        None => FirstPart::Incomplete,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The boundary of a `multipart/form-data` body.
fn boundary(headers: &HeaderMap) -> Option<String> {
    if !is_multipart(headers) {
        return None;
    }
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.trim().split_once('=')?;
        name.eq_ignore_ascii_case("boundary")
            .then(|| value.trim_matches('"').to_string())
            .filter(|b| !b.is_empty() && b.len() <= 200)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_field_is_read_and_the_body_kept() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\ntok3n\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.txt\"\r\n\r\nhello\r\n--XyZ--\r\n";
        let request = Request::builder()
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=XyZ")
            .body(axum::body::Body::from(body))
            .unwrap();
        let (request, token) = first_field(request, "csrf_token", 64 * 1024).await.unwrap();
        assert_eq!(token.as_deref(), Some("tok3n"));
        let kept = axum::body::to_bytes(request.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(kept, body.as_bytes());

        let other =
            "--XyZ\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\nhi\r\n--XyZ--\r\n";
        let request = Request::builder()
            .header(
                header::CONTENT_TYPE,
                "multipart/form-data; boundary=\"XyZ\"",
            )
            .body(axum::body::Body::from(other))
            .unwrap();
        let (_, token) = first_field(request, "csrf_token", 64 * 1024).await.unwrap();
        assert_eq!(token, None);
    }
}
