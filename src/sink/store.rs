//! Object storage, the archive's destination past one machine: an S3-compatible bucket reached
//! through `object_store` (signing with ring, HTTPS over rustls). Completed files are shipped
//! here from the [`spool`](crate::sink::spool) under their relative key (`date=…/hour=…/NAME`),
//! so every collector that shares a prefix adds to one hive-partitioned data set.
//!
//! A retried upload never duplicates rows: a file is put create-only (`If-None-Match: *`), and
//! an object already there under its key counts as shipped only when it holds the same octets
//! (compared in full); anything else is a conflict, counted, and the file stays in the spool.

use std::fmt;
use std::io::Read;
use std::path::Path as LocalPath;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    WriteMultipart,
};

/// Files up to this size are put in one request (create-only); larger ones are streamed in
/// parts of [`PART_BYTES`], after a check that the key is free.
const SINGLE_PUT_MAX: u64 = 32 << 20;
/// The part size of a multipart upload (S3's minimum is 5 MiB).
const PART_BYTES: usize = 8 << 20;
/// Parts in flight at once during a multipart upload.
const PARTS_IN_FLIGHT: usize = 2;

/// Where the archive goes: a local directory, or a bucket and prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A directory (`DIR` or `file://DIR`).
    Local(std::path::PathBuf),
    /// `s3://BUCKET/PREFIX`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, without leading or trailing `/` (may be empty).
        prefix: String,
    },
}

impl Destination {
    /// Reads `--out`: `s3://BUCKET[/PREFIX]`, `file://DIR`, or a plain directory.
    ///
    /// # Errors
    /// An `s3://` URL without a bucket, or another scheme (`gs://`, `http://`…).
    pub fn parse(out: &str) -> Result<Self, String> {
        if let Some(rest) = out.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("--out {out}: no bucket (s3://BUCKET/PREFIX)"));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        if let Some(dir) = out.strip_prefix("file://") {
            return Ok(Self::Local(dir.into()));
        }
        if let Some((scheme, _)) = out.split_once("://") {
            return Err(format!(
                "--out {out}: the {scheme}:// scheme is not supported (a directory, file://DIR or s3://BUCKET/PREFIX)"
            ));
        }
        Ok(Self::Local(out.into()))
    }
}

/// Why an upload (or the start-up check) failed.
#[derive(Debug)]
pub enum UploadError {
    /// Reading the spooled file failed.
    Local(std::io::Error),
    /// The store refused or could not be reached.
    Store(object_store::Error),
    /// An object of other content already holds the key.
    Conflict(String),
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(e) => write!(f, "reading the spooled file: {e}"),
            Self::Store(e) => write!(f, "{e}"),
            Self::Conflict(key) => write!(
                f,
                "{key} already holds other content (two collectors with one --collector-id?)"
            ),
        }
    }
}

impl std::error::Error for UploadError {}

impl From<std::io::Error> for UploadError {
    fn from(e: std::io::Error) -> Self {
        Self::Local(e)
    }
}

impl From<object_store::Error> for UploadError {
    fn from(e: object_store::Error) -> Self {
        Self::Store(e)
    }
}

/// The reasons of `flowvm_upload_errors_total{reason}`, as [`UploadError::label`] gives them.
pub const UPLOAD_ERRORS: [&str; 5] = ["denied", "no_bucket", "conflict", "store", "local_io"];

impl UploadError {
    /// A short, stable label for `flowvm_upload_errors_total{reason}`: one of
    /// [`UPLOAD_ERRORS`].
    pub fn label(&self) -> &'static str {
        match self {
            Self::Local(_) => "local_io",
            Self::Conflict(_) => "conflict",
            Self::Store(
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
            ) => "denied",
            Self::Store(object_store::Error::NotFound { .. }) => "no_bucket",
            Self::Store(_) => "store",
        }
    }
}

/// How a file reached the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shipped {
    /// Uploaded now.
    Uploaded,
    /// Already there with the same content (an upload whose acknowledgement was lost, or a
    /// removal from the spool lost in a crash).
    AlreadyPresent,
}

/// A bucket and prefix, and the client that writes there.
#[derive(Clone)]
pub struct Store {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

impl Store {
    /// The S3 bucket `bucket`, with endpoint, region and credentials from the standard
    /// variables (`AWS_ENDPOINT_URL` or `AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`, …). Requests give up
    /// after a few quick retries: the spool's own back-off carries on from there.
    ///
    /// # Errors
    /// The settings do not make a client (a bad endpoint, say).
    pub fn s3(bucket: &str, prefix: &str) -> Result<Self, UploadError> {
        Self::s3_from(AmazonS3Builder::from_env().with_bucket_name(bucket), prefix)
    }

    /// The S3 bucket `builder` is set for, under `prefix`, with [`Store::s3`]'s timeouts and
    /// retries.
    ///
    /// # Errors
    /// The settings do not make a client.
    pub fn s3_from(builder: AmazonS3Builder, prefix: &str) -> Result<Self, UploadError> {
        // The one TLS provider of this build, for reqwest's rustls (no aws-lc-rs).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bucket = builder
            .get_config_value(&AmazonS3ConfigKey::Bucket)
            .unwrap_or_default();
        // Timeouts as keys, not a `ClientOptions` that would replace what the variables set
        // (`AWS_ALLOW_HTTP` among them).
        let store = builder
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                "5s",
            )
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "300s")
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(15),
                ..RetryConfig::default()
            })
            .build()?;
        let url = format!("s3://{bucket}/{prefix}");
        Ok(Self::new(Arc::new(store), prefix, url))
    }

    /// `store` under `prefix`, named `url` in logs.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, url: String) -> Self {
        Self {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
            url,
        }
    }

    /// The store's URL, for log lines.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The object key of `relative` (`/`-separated) under the prefix.
    fn key(&self, relative: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(relative)
        } else {
            Path::from(format!("{}/{relative}", self.prefix))
        }
    }

    /// Checks that this collector can write under the prefix: puts a small object
    /// (`_flowvm/probe-ID`) and removes it. Run before listening, so wrong credentials or a
    /// missing bucket stop the start with an error.
    ///
    /// # Errors
    /// The store refused the object, or cannot be reached.
    pub async fn probe(&self, id: &str) -> Result<(), UploadError> {
        let key = self.key(&format!("_flowvm/probe-{id}"));
        self.store
            .put(&key, PutPayload::from_static(b"flowvm"))
            .await?;
        self.store.delete(&key).await?;
        Ok(())
    }

    /// Uploads the file at `local` as `relative` under the prefix, create-only.
    ///
    /// # Errors
    /// The file cannot be read, the store failed, or the key holds other content.
    pub async fn ship(&self, local: &LocalPath, relative: &str) -> Result<Shipped, UploadError> {
        let key = self.key(relative);
        let size = std::fs::metadata(local)?.len();
        // Whether this call wrote the object (false: the key already holds one).
        let uploaded = if size <= SINGLE_PUT_MAX {
            let options = PutOptions::from(PutMode::Create);
            match self
                .store
                .put_opts(&key, std::fs::read(local)?.into(), options)
                .await
            {
                Ok(_) => true,
                Err(object_store::Error::AlreadyExists { .. }) => false,
                Err(e) => return Err(e.into()),
            }
        } else {
            // A multipart upload cannot be create-only: the key is checked first (only this
            // collector's run writes this name: the check is against its own earlier tries).
            match self.store.head(&key).await {
                Ok(_) => false,
                Err(object_store::Error::NotFound { .. }) => {
                    self.multipart(local, &key).await?;
                    true
                }
                Err(e) => return Err(e.into()),
            }
        };
        if uploaded {
            Ok(Shipped::Uploaded)
        } else if self.same_content(local, &key).await? {
            Ok(Shipped::AlreadyPresent)
        } else {
            Err(UploadError::Conflict(key.to_string()))
        }
    }

    /// Streams `local` to `key` in parts.
    async fn multipart(
        &self,
        local: &LocalPath,
        key: &Path,
    ) -> Result<object_store::PutResult, object_store::Error> {
        let upload = self.store.put_multipart(key).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut file = std::fs::File::open(local).map_err(|e| generic(e.into()))?;
        let mut buf = vec![0_u8; PART_BYTES];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    writer.abort().await?;
                    return Err(generic(e.into()));
                }
            };
            writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            writer.write(buf.get(..n).unwrap_or_default());
        }
        writer.finish().await
    }

    /// Whether the object at `key` holds exactly the octets of `local`.
    async fn same_content(&self, local: &LocalPath, key: &Path) -> Result<bool, UploadError> {
        let meta = self.store.head(key).await?;
        if meta.size != std::fs::metadata(local)?.len() {
            return Ok(false);
        }
        let mut file = std::fs::File::open(local)?;
        let mut at = 0_u64;
        let mut mine = vec![0_u8; PART_BYTES];
        while at < meta.size {
            let end = (at + PART_BYTES as u64).min(meta.size);
            let theirs = self.store.get_range(key, at..end).await?;
            let mine = mine
                .get_mut(..theirs.len())
                .ok_or_else(|| UploadError::Conflict(key.to_string()))?;
            file.read_exact(mine)?;
            if *mine != *theirs {
                return Ok(false);
            }
            at = end;
        }
        Ok(true)
    }
}

fn generic(source: Box<dyn std::error::Error + Send + Sync>) -> object_store::Error {
    object_store::Error::Generic {
        store: "spool",
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn store() -> (Store, Arc<InMemory>) {
        let memory = Arc::new(InMemory::new());
        let store = Store::new(
            Arc::clone(&memory) as Arc<dyn ObjectStore>,
            "/flows/",
            "memory:///flows".to_owned(),
        );
        (store, memory)
    }

    #[test]
    fn destinations_parse_from_out() {
        assert_eq!(
            Destination::parse("s3://bucket/a/b/").unwrap(),
            Destination::S3 {
                bucket: "bucket".to_owned(),
                prefix: "a/b".to_owned()
            }
        );
        assert_eq!(
            Destination::parse("s3://bucket").unwrap(),
            Destination::S3 {
                bucket: "bucket".to_owned(),
                prefix: String::new()
            }
        );
        assert_eq!(
            Destination::parse("file:///var/flows").unwrap(),
            Destination::Local("/var/flows".into())
        );
        assert_eq!(
            Destination::parse("flows").unwrap(),
            Destination::Local("flows".into())
        );
        assert!(Destination::parse("s3:///x").is_err());
        assert!(Destination::parse("gs://bucket").is_err());
    }

    #[tokio::test]
    async fn a_file_is_shipped_once_and_a_retry_of_the_same_content_counts_as_shipped() {
        let (store, memory) = store();
        let dir = std::env::temp_dir().join(format!("flowvm-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let local = dir.join("a.parquet");
        std::fs::write(&local, b"PAR1 rows PAR1").unwrap();
        let relative = "date=2026-12-02/hour=19/a.parquet";
        assert_eq!(
            store.ship(&local, relative).await.unwrap(),
            Shipped::Uploaded
        );
        let key = Path::from("flows/date=2026-12-02/hour=19/a.parquet");
        let got = memory.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"PAR1 rows PAR1");
        assert_eq!(
            store.ship(&local, relative).await.unwrap(),
            Shipped::AlreadyPresent
        );
        // Other content under the key: a conflict, and the object is left as it was.
        std::fs::write(&local, b"PAR1 other PAR1").unwrap();
        let e = store.ship(&local, relative).await.unwrap_err();
        assert_eq!(e.label(), "conflict");
        std::fs::write(&local, b"PAR1 rowz PAR1").unwrap();
        assert_eq!(
            store.ship(&local, relative).await.unwrap_err().label(),
            "conflict"
        );
        let got = memory.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"PAR1 rows PAR1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_large_file_goes_in_parts_and_its_retry_is_recognised() {
        let (store, memory) = store();
        let dir = std::env::temp_dir().join(format!("flowvm-store-large-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let local = dir.join("big.parquet");
        let content: Vec<u8> = (0..SINGLE_PUT_MAX + 3 * 1024 * 1024 + 7)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        std::fs::write(&local, &content).unwrap();
        assert_eq!(
            store.ship(&local, "big.parquet").await.unwrap(),
            Shipped::Uploaded
        );
        let got = memory
            .get(&Path::from("flows/big.parquet"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got[..] == content[..]);
        assert_eq!(
            store.ship(&local, "big.parquet").await.unwrap(),
            Shipped::AlreadyPresent
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_probe_leaves_nothing_behind() {
        let (store, memory) = store();
        store.probe("host-1").await.unwrap();
        assert!(
            memory
                .list_with_delimiter(None)
                .await
                .unwrap()
                .objects
                .is_empty()
        );
        assert!(
            memory
                .list_with_delimiter(None)
                .await
                .unwrap()
                .common_prefixes
                .is_empty()
        );
    }
}
