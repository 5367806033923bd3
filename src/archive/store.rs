//! Opening the object store an archive location names: a directory or `file://PATH` (the
//! default, `LocalFileSystem` with fsync), `s3://BUCKET/PATH` (S3 and S3-compatible
//! stores), `gs://BUCKET/PATH`, `az://CONTAINER/PATH`. Each builder starts from the
//! standard environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`), then takes the
//! `[archive_options]` keys (the crate's own names, e.g. `aws_endpoint`), so a file can say
//! everything; an unknown key is an error. Requests fail fast (a few retries within
//! seconds), so a store that is away makes reads answer 503 and archival retry later
//! instead of hanging.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::signer::Signer;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};

use super::ArchiveError;

/// A store that does not answer is given up on after this many retries, within
/// `RETRY_TIMEOUT`.
fn retry() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(10),
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
    }
}

/// Client defaults set before the options, which may override them.
const CLIENT_DEFAULTS: [(&str, &str); 2] = [("connect_timeout", "2s"), ("timeout", "10s")];

/// An opened location: the store, the key prefix below its root, the URL that names that
/// prefix, and the store again as a signer where it can sign download URLs (S3, GCS, Azure).
pub(super) struct Opened {
    pub objects: Arc<dyn ObjectStore>,
    pub root: ObjPath,
    pub base: String,
    pub signer: Option<Arc<dyn Signer>>,
}

/// Builds a cloud store from the environment, the location URL, the retry policy and the
/// options (one expansion per builder type: they share no trait).
macro_rules! cloud {
    ($builder:ty, $location:expr, $scheme:expr, $options:expr) => {{
        let built = configure(
            <$builder>::from_env()
                .with_url($location)
                .with_retry(retry()),
            $scheme,
            $options,
            |b, k, v| b.with_config(k, v),
        )?
        .build()?;
        let store = Arc::new(built);
        (
            store.clone() as Arc<dyn ObjectStore>,
            Some(store as Arc<dyn Signer>),
        )
    }};
}

/// Opens `location` (a directory, `file://PATH`, `s3://`, `gs://` or `az://` URL).
pub(super) fn open(
    location: &str,
    options: &BTreeMap<String, String>,
) -> Result<Opened, ArchiveError> {
    let Some((scheme, _)) = location.split_once("://") else {
        return local(location);
    };
    if scheme == "file" {
        return local(&location["file://".len()..]);
    }
    let url = url::Url::parse(location).map_err(|e| {
        ArchiveError::Unsupported(format!("unsupported archive location {location:?}: {e}"))
    })?;
    let root = ObjPath::from(url.path().trim_matches('/'));
    let base = location.trim_end_matches('/').to_owned();
    let (objects, signer) = match scheme {
        "s3" | "s3a" => cloud!(AmazonS3Builder, location, scheme, options),
        "gs" => cloud!(GoogleCloudStorageBuilder, location, scheme, options),
        "az" | "azure" | "abfs" | "abfss" => {
            cloud!(MicrosoftAzureBuilder, location, scheme, options)
        }
        _ => {
            return Err(ArchiveError::Unsupported(format!(
                "unsupported archive location {location:?}: use a directory, file://PATH, s3://BUCKET/PATH, gs://BUCKET/PATH or az://CONTAINER/PATH"
            )))
        }
    };
    Ok(Opened {
        objects,
        root,
        base,
        signer,
    })
}

/// The client defaults, then every option, set on a store's builder through its own
/// config keys (`K`, parsed from the option's name: an unknown name is an error).
fn configure<B, K: std::str::FromStr<Err = object_store::Error>>(
    mut builder: B,
    scheme: &str,
    options: &BTreeMap<String, String>,
    with: impl Fn(B, K, &str) -> B,
) -> Result<B, ArchiveError> {
    let defaults = CLIENT_DEFAULTS.iter().map(|(k, v)| (*k, *v));
    let given = options.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    for (k, v) in defaults.chain(given) {
        let key = k.parse().map_err(|e| {
            ArchiveError::Unsupported(format!(
                "archive_options.{k}: not an option of {scheme}:// stores ({e})"
            ))
        })?;
        builder = with(builder, key, v);
    }
    Ok(builder)
}

/// A local directory (created if missing); URLs `file://` + its canonical path, so
/// archives written before keep their URLs.
fn local(dir: &str) -> Result<Opened, ArchiveError> {
    let io =
        |e: std::io::Error| ArchiveError::Unsupported(format!("archive directory {dir:?}: {e}"));
    std::fs::create_dir_all(dir).map_err(io)?;
    let canonical = std::fs::canonicalize(dir).map_err(io)?;
    let fs = LocalFileSystem::new_with_prefix(&canonical)?.with_fsync(true);
    Ok(Opened {
        objects: Arc::new(fs),
        root: ObjPath::default(),
        base: format!("file://{}", canonical.display()),
        signer: None,
    })
}
