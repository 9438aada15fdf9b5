//! Where attachment bytes live: one small trait, two implementations chosen by the
//! configuration. A local directory (`UPLOAD_DIR`) for a single machine and development;
//! S3 (`S3_BUCKET`) for ECS, where tasks come and go and share nothing but the database.
//!
//! Both store an object all or nothing: the local directory writes a temporary file next
//! to the target and renames it into place; S3 makes an object visible only when its
//! single PUT or multipart upload completes (an abandoned multipart upload is aborted, and
//! the bucket's lifecycle rule removes any that a crash leaves, see docs/deployment.md).
//! Keys are made by this module's caller from random ids and fixed suffixes, never from
//! anything a user typed; `check_key` refuses anything else.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{stream::BoxStream, StreamExt, TryStreamExt};
use tokio::io::AsyncReadExt;

use crate::config::{FileStorage, S3Settings};

/// Every object this application writes lives under this prefix: the IAM policy grants
/// the task role `attachments/*` of one bucket and nothing else.
pub const KEY_PREFIX: &str = "attachments/";

/// An object's length and its bytes as a stream.
pub struct Blob {
    pub len: u64,
    pub body: BoxStream<'static, io::Result<Bytes>>,
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores the file at `path` under `key`: afterwards the object is complete, or absent.
    async fn put_file(&self, key: &str, path: &Path) -> anyhow::Result<()>;
    /// Stores a small object held in memory (a thumbnail).
    async fn put_bytes(&self, key: &str, bytes: Bytes) -> anyhow::Result<()>;
    /// The object, or `None` when there is none under `key`.
    async fn get(&self, key: &str) -> anyhow::Result<Option<Blob>>;
    /// Deletes the object; deleting one that does not exist is not an error.
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
    /// Where the objects go, for the start-up log.
    fn describe(&self) -> String;
}

/// The store the configuration names.
pub fn from_config(storage: &FileStorage) -> anyhow::Result<Arc<dyn BlobStore>> {
    Ok(match storage {
        FileStorage::Local(dir) => Arc::new(LocalDir::new(dir.clone())),
        FileStorage::S3(s3) => Arc::new(S3::new(s3)?),
    })
}

/// Keys are `attachments/<32 hex>/<variant>`: nothing that could leave the directory or
/// the prefix.
fn check_key(key: &str) -> anyhow::Result<()> {
    let ok = key.starts_with(KEY_PREFIX)
        && !key.contains("..")
        && !key.contains("//")
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/_-.".contains(&b));
    anyhow::ensure!(ok, "not an attachment key: {key:?}");
    Ok(())
}

/// A directory on the local disk.
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn path(&self, key: &str) -> anyhow::Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Writes through a temporary file in the target's directory, then renames it into
    /// place: a crash or an error leaves no half-written object under `key`.
    async fn put_with(
        &self,
        key: &str,
        write: impl AsyncFnOnce(&Path) -> io::Result<()>,
    ) -> anyhow::Result<()> {
        let target = self.path(key)?;
        let dir = target.parent().context("key without a directory")?;
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("UPLOAD_DIR: cannot create {}", dir.display()))?;
        let partial = dir.join(format!(".partial-{}", uuid::Uuid::new_v4().simple()));
        let written = async {
            write(&partial).await?;
            tokio::fs::rename(&partial, &target).await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e).with_context(|| format!("writing {}", target.display()));
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for LocalDir {
    async fn put_file(&self, key: &str, path: &Path) -> anyhow::Result<()> {
        let (source, target) = (path.to_path_buf(), self.root.clone());
        self.put_with(key, async |partial| {
            let partial = partial.to_path_buf();
            crate::background::spawn(move || {
                // The spool file is usually on the same file system: a second name for it
                // costs no copy. Elsewhere (TMPDIR on another disk), a copy.
                if std::fs::hard_link(&source, &partial).is_err() {
                    std::fs::copy(&source, &partial)?;
                }
                // Durable before it is renamed into place.
                std::fs::File::open(&partial)?.sync_all()
            })
            .await
            .map_err(io::Error::other)?
        })
        .await
        .with_context(|| format!("UPLOAD_DIR {}", target.display()))
    }

    async fn put_bytes(&self, key: &str, bytes: Bytes) -> anyhow::Result<()> {
        self.put_with(key, async |partial| tokio::fs::write(partial, &bytes).await)
            .await
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<Blob>> {
        let path = self.path(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        };
        let len = file.metadata().await?.len();
        // Only as many bytes as the file had when opened, in 64 KiB reads.
        let body = tokio_util::io::ReaderStream::with_capacity(file.take(len), 64 * 1024);
        Ok(Some(Blob {
            len,
            body: body.boxed(),
        }))
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("deleting {}", path.display())),
        }
        // The attachment's directory goes with its last object (fails while others remain).
        if let Some(dir) = path.parent() {
            let _ = tokio::fs::remove_dir(dir).await;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("the directory {}", self.root.display())
    }
}

/// An S3 bucket (or an S3-compatible store), through `object_store`.
pub struct S3 {
    store: object_store::aws::AmazonS3,
    bucket: String,
}

/// Files up to this size go up in one PUT (read into memory); larger ones as a multipart
/// upload of parts this size, two in flight: at most about 3 parts of memory per upload.
const PART_BYTES: usize = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 2;

impl S3 {
    pub fn new(s3: &S3Settings) -> anyhow::Result<Self> {
        use object_store::aws::AmazonS3Builder;
        // `from_env` takes the credentials the way AWS's SDKs do: on ECS the task role's,
        // served to the container at AWS_CONTAINER_CREDENTIALS_RELATIVE_URI.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&s3.bucket)
            .with_region(&s3.region);
        if let Some(endpoint) = &s3.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some((id, secret)) = &s3.credentials {
            builder = builder
                .with_access_key_id(id.expose())
                .with_secret_access_key(secret.expose());
        }
        let store = builder
            .build()
            .map_err(|e| anyhow::anyhow!("S3_BUCKET: {e}"))?;
        Ok(Self {
            store,
            bucket: s3.bucket.clone(),
        })
    }

    fn location(key: &str) -> anyhow::Result<object_store::path::Path> {
        check_key(key)?;
        Ok(object_store::path::Path::from(key))
    }
}

#[async_trait]
impl BlobStore for S3 {
    async fn put_file(&self, key: &str, path: &Path) -> anyhow::Result<()> {
        use object_store::{ObjectStoreExt, WriteMultipart};
        let location = Self::location(key)?;
        let mut file = tokio::fs::File::open(path).await?;
        let len = file.metadata().await?.len();
        if len <= PART_BYTES as u64 {
            let mut bytes = Vec::with_capacity(len as usize);
            file.read_to_end(&mut bytes).await?;
            self.store
                .put(&location, Bytes::from(bytes).into())
                .await
                .with_context(|| format!("S3 PUT {key}"))?;
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .with_context(|| format!("S3 multipart upload of {key}"))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buffer = vec![0u8; 256 * 1024];
        let sent = async {
            loop {
                let n = file.read(&mut buffer).await?;
                if n == 0 {
                    break;
                }
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.write(&buffer[..n]);
            }
            anyhow::Ok(())
        }
        .await;
        match sent {
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .with_context(|| format!("completing the upload of {key}"))?;
                Ok(())
            }
            Err(e) => {
                // Nothing becomes visible; the parts sent so far are discarded.
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, key, "aborting a multipart upload failed");
                }
                Err(e.context(format!("S3 multipart upload of {key}")))
            }
        }
    }

    async fn put_bytes(&self, key: &str, bytes: Bytes) -> anyhow::Result<()> {
        use object_store::ObjectStoreExt;
        self.store
            .put(&Self::location(key)?, bytes.into())
            .await
            .with_context(|| format!("S3 PUT {key}"))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<Blob>> {
        use object_store::ObjectStoreExt;
        match self.store.get(&Self::location(key)?).await {
            Ok(result) => Ok(Some(Blob {
                len: result.meta.size,
                body: result.into_stream().map_err(io::Error::other).boxed(),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("S3 GET {key}")),
        }
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        use object_store::ObjectStoreExt;
        match self.store.delete(&Self::location(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("S3 DELETE {key}")),
        }
    }

    fn describe(&self) -> String {
        format!("the S3 bucket {}", self.bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_under_the_prefix() {
        assert!(check_key("attachments/0123abcd/full").is_ok());
        for bad in [
            "other/x",
            "attachments/../etc/passwd",
            "attachments//x",
            "attachments/A",
            "attachments/a b",
            "/attachments/x",
        ] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_local_directory_stores_whole_objects_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDir::new(dir.path().join("uploads"));
        assert!(store.get("attachments/ab/file").await.unwrap().is_none());
        store
            .put_bytes("attachments/ab/thumb", Bytes::from_static(b"thumb"))
            .await
            .unwrap();
        let source = dir.path().join("source");
        std::fs::write(&source, b"hello").unwrap();
        store
            .put_file("attachments/ab/file", &source)
            .await
            .unwrap();
        let blob = store.get("attachments/ab/file").await.unwrap().unwrap();
        assert_eq!(blob.len, 5);
        let bytes: Vec<Bytes> = blob.body.try_collect().await.unwrap();
        assert_eq!(bytes.concat(), b"hello");
        // A source that cannot be read leaves nothing behind, not even the partial file.
        let missing = dir.path().join("missing");
        assert!(store
            .put_file("attachments/cd/file", &missing)
            .await
            .is_err());
        assert!(store.get("attachments/cd/file").await.unwrap().is_none());
        let leftovers = std::fs::read_dir(dir.path().join("uploads/attachments/cd"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(leftovers, 0);
        store.delete("attachments/ab/file").await.unwrap();
        store.delete("attachments/ab/file").await.unwrap();
        store.delete("attachments/ab/thumb").await.unwrap();
        assert!(!dir.path().join("uploads/attachments/ab").exists());
    }
}
