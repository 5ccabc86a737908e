//! A repository in an S3-compatible bucket (AWS S3, Ceph RGW, MinIO,
//! Garage, Cloudflare R2), through Apache OpenDAL.
//!
//! Objects are named as files are in a local repository, below an optional
//! prefix: `PREFIX/config`, `PREFIX/keys/<id>`, `PREFIX/data/ab/<id>`, ...
//! The [`Backend`] contract maps onto S3 like this:
//!
//! * atomic, durable writes: a PUT is all or nothing and durable when it is
//!   acknowledged. Every PUT carries a Content-MD5, so the server rejects a
//!   body damaged in transit (and buckets with Object Lock accept it).
//! * create-new: PUT with `If-None-Match: *` (the server answers 412 for an
//!   existing key); a server without conditional writes can be told so
//!   (`-o s3.if-none-match=false`), and then a second write of a name only
//!   stores identical bytes again, since names are content hashes.
//! * listings with sizes: LIST (1,000 keys per request) under a kind's folder.
//! * ranges: ranged GET; a short answer is an error.
//! * transient failures (5xx, resets, timeouts) are retried with jittered
//!   backoff; a refused connection fails at once (the server is down).
//!
//! The backend owns a Tokio runtime and blocks on it, so the rest of cairn
//! stays synchronous; any number of threads may call it at once, and
//! `s3.connections` bounds the requests in flight.

#[path = "s3_versions.rs"]
mod versions;

use super::{Backend, FileKind, Handle, Retention, Staged, StagedData, parse_name, short_read};
use crate::error::{Error, Result};
use crate::format::id::Id;
use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
use opendal::services::S3;
use opendal::{Buffer, ErrorKind, HttpBody, HttpTransport, HttpTransporter, Operator};
use opendal_http_transport_reqwest::ReqwestTransport;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where a repository lives in S3, parsed from `s3:…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// Endpoint URL (`https://s3.us-east-1.amazonaws.com`, `http://127.0.0.1:7480`).
    pub endpoint: String,
    /// Whether the endpoint is AWS itself (virtual-host addressing).
    pub aws: bool,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix of the repository inside the bucket (no leading or trailing `/`).
    pub prefix: String,
}

impl S3Location {
    /// Parses what follows `s3:` in a location: `http[s]://HOST[:PORT]/BUCKET[/PREFIX]`,
    /// `BUCKET[/PREFIX]` (AWS), or restic's `s3.amazonaws.com/BUCKET[/PREFIX]`.
    pub fn parse(rest: &str, region: &str) -> Result<S3Location> {
        let bad = |why: &str| {
            Error::InvalidInput(format!(
                "s3:{rest}: {why} (use s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX] or s3:BUCKET[/PREFIX])"
            ))
        };
        let (endpoint, aws, path) = if let Some(r) = rest
            .strip_prefix("http://")
            .map(|r| ("http", r))
            .or_else(|| rest.strip_prefix("https://").map(|r| ("https", r)))
        {
            let (scheme, r) = r;
            let (host, path) = r.split_once('/').unwrap_or((r, ""));
            if host.is_empty() {
                return Err(bad("no host"));
            }
            (format!("{scheme}://{host}"), false, path)
        } else {
            let (first, path) = rest.split_once('/').unwrap_or((rest, ""));
            if first.ends_with("amazonaws.com") {
                (format!("https://{first}"), true, path)
            } else {
                (format!("https://s3.{region}.amazonaws.com"), true, rest)
            }
        };
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        let valid = bucket.len() <= 63
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
        if !valid {
            return Err(bad(&format!("{bucket:?} is not a bucket name")));
        }
        Ok(S3Location {
            endpoint,
            aws,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    /// The location as a user writes it.
    pub fn display(&self) -> String {
        let tail = if self.prefix.is_empty() {
            self.bucket.clone()
        } else {
            format!("{}/{}", self.bucket, self.prefix)
        };
        if self.aws {
            format!("s3:{tail}")
        } else {
            format!("s3:{}/{tail}", self.endpoint)
        }
    }
}

/// Settings of the S3 backend (`-o s3.KEY=VALUE`).
#[derive(Clone, Debug)]
pub struct S3Options {
    /// Region (`s3.region`; else `AWS_DEFAULT_REGION`, `AWS_REGION`, `us-east-1`).
    pub region: String,
    /// Storage class of data packs only (`s3.storage-class`), so metadata
    /// stays readable without a restore from cold storage.
    pub storage_class: Option<String>,
    /// Requests in flight at most (`s3.connections`, default 8).
    pub connections: usize,
    /// Whether the server honours `If-None-Match: *` (`s3.if-none-match`).
    pub if_none_match: bool,
    /// Time allowed for one request (`s3.timeout`, default 60 s).
    pub timeout: Duration,
    /// Retries of a failed request (`s3.retries`, default 5).
    pub retries: usize,
    /// Access key id, secret and session token.
    pub credentials: Credentials,
}

/// S3 credentials.
#[derive(Clone)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_key: String,
    /// `AWS_SESSION_TOKEN`, if any.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.access_key)
    }
}

impl S3Options {
    /// Options from the environment and `-o` pairs (only `s3.*` keys are
    /// looked at; an unknown `s3.` key is an error).
    pub fn from_env(options: &[(String, String)]) -> Result<S3Options> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut o = S3Options {
            region: env("AWS_DEFAULT_REGION")
                .or_else(|| env("AWS_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            storage_class: None,
            connections: 8,
            if_none_match: true,
            timeout: Duration::from_secs(60),
            retries: 5,
            credentials: Credentials {
                access_key: String::new(),
                secret_key: String::new(),
                session_token: env("AWS_SESSION_TOKEN"),
            },
        };
        let (mut access_key, mut secret_key) = (None, None);
        for (k, v) in options {
            let Some(key) = k.strip_prefix("s3.") else {
                continue;
            };
            let bad = || Error::InvalidInput(format!("-o {k}={v}: invalid value"));
            match key {
                "region" => o.region = v.clone(),
                "storage-class" => o.storage_class = Some(v.to_ascii_uppercase()),
                "connections" => {
                    o.connections = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=128).contains(n))
                        .ok_or_else(bad)?
                }
                "if-none-match" => o.if_none_match = v.parse().map_err(|_| bad())?,
                "timeout" => o.timeout = crate::timespec::parse_duration(v)?,
                "retries" => o.retries = v.parse().ok().filter(|n| *n <= 20).ok_or_else(bad)?,
                "access-key-id" => access_key = Some(v.clone()),
                "secret-access-key" => secret_key = Some(v.clone()),
                "session-token" => o.credentials.session_token = Some(v.clone()),
                other => {
                    return Err(Error::InvalidInput(format!(
                        "-o {k}: unknown S3 option {other:?} (known: s3.region, s3.storage-class, s3.connections, s3.if-none-match, s3.timeout, s3.retries, s3.access-key-id, s3.secret-access-key, s3.session-token)"
                    )));
                }
            }
        }
        let (Some(access_key), Some(secret_key)) = (
            access_key.or_else(|| env("AWS_ACCESS_KEY_ID")),
            secret_key.or_else(|| env("AWS_SECRET_ACCESS_KEY")),
        ) else {
            return Err(Error::InvalidInput(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            ));
        };
        o.credentials.access_key = access_key;
        o.credentials.secret_key = secret_key;
        Ok(o)
    }
}

/// Requests sent, by kind (for tests and benchmarks).
#[derive(Debug, Default)]
pub struct RequestCounts {
    /// GET and HEAD of objects.
    pub get: AtomicU64,
    /// PUT of objects.
    pub put: AtomicU64,
    /// LIST.
    pub list: AtomicU64,
    /// DELETE and anything else.
    pub other: AtomicU64,
}

/// The HTTP transport: reqwest, counting requests, and turning a refused
/// connection into a permanent error (the server is down: no point in
/// retrying for seconds) while 5xx answers are still retried.
#[derive(Clone)]
struct Transport {
    inner: HttpTransporter,
    counts: Arc<RequestCounts>,
}

impl HttpTransport for Transport {
    async fn fetch(&self, req: http::Request<Buffer>) -> opendal::Result<http::Response<HttpBody>> {
        let q = req.uri().query().unwrap_or("");
        let c = &self.counts;
        match req.method().as_str() {
            "GET" if q.contains("list-type") => &c.list,
            "GET" | "HEAD" => &c.get,
            "PUT" => &c.put,
            _ => &c.other,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.inner.fetch(req).await.map_err(|e| {
            let refused = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<reqwest::Error>())
                .is_some_and(|r| r.is_connect());
            if refused { e.set_persistent() } else { e }
        })
    }
}

/// A repository in a bucket.
pub struct S3Backend {
    rt: tokio::runtime::Runtime,
    /// Metadata objects (config, keys, snapshots, index, locks).
    meta: Operator,
    /// Data packs (with the storage class, if any).
    data: Operator,
    location: S3Location,
    options: S3Options,
    transport: Transport,
    /// The bucket's Object Lock default retention, once asked.
    object_lock: std::sync::OnceLock<Option<Retention>>,
    /// The retention every write carries (the repository's config asks
    /// for it).
    write_retention: std::sync::OnceLock<Retention>,
    /// Whether the bucket keeps versions, once asked.
    versioning: std::sync::OnceLock<bool>,
    /// Whether these credentials may delete, once asked.
    may_delete: std::sync::OnceLock<bool>,
    /// Reads of these keys go to this version (the original of an
    /// overwritten object).
    pinned: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Backend({})", self.location.display())
    }
}

impl S3Backend {
    /// Stores `bytes` as `h` (no retention); the buffer is handed over,
    /// not copied.
    fn put(&self, h: Handle, bytes: Vec<u8>) -> Result<()> {
        let key = Self::key(h);
        let w = self
            .op(h)
            .write_with(&key, bytes)
            .if_not_exists(self.options.if_none_match);
        self.rt
            .block_on(w.into_future())
            .map(|_| ())
            .map_err(|e| self.err(h, "write", e))
    }

    /// A backend for `location` (nothing is sent yet).
    pub fn new(location: S3Location, options: S3Options) -> Result<S3Backend> {
        // rustls needs a process-wide crypto provider; a second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io("S3 runtime", e))?;
        let mut client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30));
        if location.endpoint.starts_with("http://") {
            // No TLS to this endpoint: skip loading the system's root
            // certificates (tens of milliseconds at every start). A
            // redirect to https would then fail verification, not go
            // unverified.
            client = client.tls_certs_only(Vec::new());
        }
        let client = client
            .build()
            .map_err(|e| Error::InvalidInput(format!("HTTP client: {e}")))?;
        let transport = Transport {
            inner: HttpTransporter::new(ReqwestTransport::new(client)),
            counts: Arc::new(RequestCounts::default()),
        };
        let op = |storage_class: Option<&str>| -> Result<Operator> {
            let c = &options.credentials;
            let mut b = S3::default()
                .endpoint(&location.endpoint)
                .bucket(&location.bucket)
                .region(&options.region)
                .access_key_id(&c.access_key)
                .secret_access_key(&c.secret_key)
                .root(&format!("/{}", location.prefix))
                .checksum_algorithm("md5")
                .disable_config_load()
                .disable_ec2_metadata();
            if location.aws {
                b = b.enable_virtual_host_style();
            }
            if let Some(t) = &c.session_token {
                b = b.session_token(t);
            }
            if let Some(class) = storage_class {
                b = b.default_storage_class(class);
            }
            let op =
                Operator::new(b).map_err(|e| backend_error(&location.display(), "configure", e))?;
            let ctx = op
                .context()
                .with_http_transport(HttpTransporter::new(transport.clone()));
            Ok(op
                .with_context(ctx)
                .layer(ConcurrentLimitLayer::new(options.connections))
                .layer(
                    TimeoutLayer::new()
                        .with_timeout(options.timeout)
                        .with_io_timeout(options.timeout),
                )
                .layer(
                    RetryLayer::new()
                        .with_jitter()
                        .with_min_delay(Duration::from_millis(200))
                        .with_max_delay(Duration::from_secs(5))
                        .with_max_times(options.retries),
                ))
        };
        let meta = op(None)?;
        let data = op(options.storage_class.as_deref())?;
        Ok(S3Backend {
            rt,
            meta,
            data,
            location,
            options,
            transport,
            object_lock: std::sync::OnceLock::new(),
            write_retention: std::sync::OnceLock::new(),
            versioning: std::sync::OnceLock::new(),
            may_delete: std::sync::OnceLock::new(),
            pinned: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Requests sent so far.
    pub fn request_counts(&self) -> &RequestCounts {
        &self.transport.counts
    }

    fn op(&self, h: Handle) -> &Operator {
        match h {
            Handle::File(FileKind::Pack, _) => &self.data,
            _ => &self.meta,
        }
    }

    fn err(&self, h: Handle, what: &str, e: opendal::Error) -> Error {
        if e.kind() == ErrorKind::ConfigInvalid && format!("{e:?}").contains("NoSuchBucket") {
            return self.no_such_bucket();
        }
        match e.kind() {
            ErrorKind::NotFound => Error::not_found(h.rel_path()),
            ErrorKind::ConditionNotMatch | ErrorKind::AlreadyExists => {
                Error::AlreadyExists(format!(
                    "{}: a file of that name already exists; not replaced",
                    h.rel_path()
                ))
            }
            ErrorKind::RangeNotSatisfied => short_read(h),
            // OpenDAL checks a ranged answer's length itself.
            ErrorKind::Unexpected if e.message().contains("too little data") => short_read(h),
            _ => backend_error(
                &format!("{}/{}", self.location.display(), h.rel_path()),
                what,
                e,
            ),
        }
    }

    /// Sends a signed request for the bucket itself (HEAD or PUT bucket:
    /// OpenDAL has no call for them); returns the status and the body.
    fn bucket_request(&self, method: &str, object_lock: bool) -> Result<(u16, String)> {
        if method == "PUT" && self.location.aws && self.options.region != "us-east-1" {
            // Outside us-east-1 AWS wants the region in the body; a bucket
            // that does not exist yet is rare there, so keep it simple and
            // ask the user to create it.
            return Err(Error::Backend {
                file: self.location.display(),
                message: format!(
                    "bucket {} does not exist; create it in region {} first",
                    self.location.bucket, self.options.region
                ),
            });
        }
        let headers: Vec<(&str, String)> = if object_lock {
            vec![("x-amz-bucket-object-lock-enabled", "true".into())]
        } else {
            Vec::new()
        };
        let r = self.signed_request(method, &self.url(None, ""), &headers, Vec::new())?;
        Ok((r.status, String::from_utf8_lossy(&r.body).into_owned()))
    }

    /// The URL of the bucket (`key` None) or of an object under the
    /// repository's prefix, with `query` (already encoded) appended.
    fn url(&self, key: Option<&str>, query: &str) -> String {
        let base = if self.location.aws {
            format!(
                "https://{}.s3.{}.amazonaws.com",
                self.location.bucket, self.options.region
            )
        } else {
            format!(
                "{}/{}",
                self.location.endpoint.trim_end_matches('/'),
                self.location.bucket
            )
        };
        let mut url = match key {
            None if self.location.aws => format!("{base}/"),
            None => base,
            Some(k) => format!("{base}/{}", self.object_key(k)),
        };
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// The object key of a repository path (the prefix in front).
    fn object_key(&self, path: &str) -> String {
        if self.location.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.location.prefix)
        }
    }

    /// Sends one signed request (for what OpenDAL has no call for: bucket
    /// settings, object versions and retention).
    fn signed_request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<SignedResponse> {
        let c = &self.options.credentials;
        let fail = |e: String| Error::Backend {
            file: self.location.display(),
            message: e,
        };
        self.rt.block_on(async {
            let mut cred =
                reqsign_aws_v4::StaticCredentialProvider::new(&c.access_key, &c.secret_key);
            if let Some(t) = &c.session_token {
                cred = cred.with_session_token(t);
            }
            let signer = reqsign_core::Signer::new(
                reqsign_core::Context::new(),
                cred,
                reqsign_aws_v4::RequestSigner::new("s3", &self.options.region),
            );
            let mut b = http::Request::builder()
                .method(method)
                .uri(url)
                .header("content-length", body.len().to_string());
            for (k, v) in headers {
                b = b.header(*k, v.as_str());
            }
            let (mut parts, ()) = b
                .body(())
                .map_err(|e| fail(format!("request: {e}")))?
                .into_parts();
            signer
                .sign(&mut parts, None)
                .await
                .map_err(|e| fail(format!("signing the request: {e}")))?;
            let resp = HttpTransporter::new(self.transport.clone())
                .send(http::Request::from_parts(parts, Buffer::from(body)))
                .await
                .map_err(|e| backend_error(&self.location.display(), "reach the server", e))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.into_body().to_bytes().to_vec();
            Ok(SignedResponse {
                status,
                headers,
                body,
            })
        })
    }

    /// Creates the bucket if it does not exist (optionally with Object
    /// Lock); returns whether it was created.
    pub fn ensure_bucket(&self, object_lock: bool) -> Result<bool> {
        let (status, _) = self.bucket_request("HEAD", false)?;
        match status {
            200 => return Ok(false),
            404 => {}
            403 => return Err(self.access_denied("use the bucket")),
            s => return Err(self.http_failure("look up the bucket", s, "")),
        }
        let (status, body) = self.bucket_request("PUT", object_lock)?;
        match status {
            200 => Ok(true),
            409 if body.contains("BucketAlreadyOwnedByYou") => Ok(false),
            403 => Err(self.access_denied("create the bucket")),
            s => Err(self.http_failure("create the bucket", s, &body)),
        }
    }

    /// Whether the bucket exists (a missing bucket looks like a missing
    /// object to a HEAD request, so a missing config is double-checked).
    fn bucket_exists(&self) -> Result<bool> {
        let (status, _) = self.bucket_request("HEAD", false)?;
        match status {
            200 => Ok(true),
            404 => Ok(false),
            403 => Err(self.access_denied("use the bucket")),
            s => Err(self.http_failure("look up the bucket", s, "")),
        }
    }

    fn no_such_bucket(&self) -> Error {
        Error::NoSuchBucket {
            location: self.location.display(),
            bucket: self.location.bucket.clone(),
        }
    }

    fn access_denied(&self, what: &str) -> Error {
        Error::Backend {
            file: self.location.display(),
            message: format!(
                "access denied: the credentials (AWS_ACCESS_KEY_ID {}) may not {what}",
                self.options.credentials.access_key
            ),
        }
    }

    fn http_failure(&self, what: &str, status: u16, body: &str) -> Error {
        let code = body
            .split("<Code>")
            .nth(1)
            .and_then(|s| s.split("</Code>").next())
            .unwrap_or("");
        Error::Backend {
            file: self.location.display(),
            message: format!("cannot {what}: HTTP {status} {code}")
                .trim_end()
                .to_string(),
        }
    }

    fn key(h: Handle) -> String {
        h.rel_path()
    }

    /// Every file of `kind` (canonical names only) with what the listing
    /// says of it.
    fn list_metadata(&self, kind: FileKind) -> Result<Vec<(Id, opendal::Metadata)>> {
        let dir = format!("{}/", kind.dir());
        let entries = self
            .rt
            .block_on(
                self.op(Handle::File(kind, Id::default()))
                    .list_with(&dir)
                    .recursive(kind == FileKind::Pack)
                    .into_future(),
            )
            .map_err(|e| {
                if e.kind() == ErrorKind::ConfigInvalid && format!("{e:?}").contains("NoSuchBucket")
                {
                    self.no_such_bucket()
                } else {
                    backend_error(&format!("{}/{dir}", self.location.display()), "list", e)
                }
            })?;
        let mut out = Vec::new();
        for e in entries {
            if !e.metadata().is_file() {
                continue;
            }
            let path = e.path().trim_start_matches('/');
            let Some(rest) = path.strip_prefix(&dir) else {
                continue;
            };
            let name = match kind {
                FileKind::Pack => match rest.split_once('/') {
                    Some((fan, name)) if name.starts_with(fan) && fan.len() == 2 => name,
                    _ => continue,
                },
                _ if rest.contains('/') => continue,
                _ => rest,
            };
            if let Some(id) = parse_name(name) {
                out.push((id, e.metadata().clone()));
            }
        }
        Ok(out)
    }
}

/// The answer to [`S3Backend::signed_request`].
struct SignedResponse {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

/// One line for an OpenDAL error: what failed and why, without its
/// context dump.
fn backend_error(file: &str, what: &str, e: opendal::Error) -> Error {
    let why = match e.kind() {
        ErrorKind::PermissionDenied => {
            "access denied (wrong credentials, or they may not do this)".to_string()
        }
        ErrorKind::ConfigInvalid if format!("{e:?}").contains("NoSuchBucket") => {
            "the bucket does not exist".to_string()
        }
        ErrorKind::RateLimited => "the server asks to slow down (rate limited)".to_string(),
        _ => {
            let mut inner: &dyn std::error::Error = &e;
            while let Some(s) = inner.source() {
                inner = s;
            }
            let cause = inner.to_string();
            let cause = cause.lines().next().unwrap_or("").trim();
            let mut msg = e.message().to_string();
            if msg.is_empty() {
                msg = format!("{}", e.kind());
            }
            if !cause.is_empty() && !msg.contains(cause) {
                msg = format!("{msg}: {cause}");
            }
            msg
        }
    };
    Error::Backend {
        file: file.to_string(),
        message: format!("cannot {what}: {why}"),
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.location.display()
    }

    fn create(&self) -> Result<()> {
        self.ensure_bucket(false)?;
        let any = self
            .rt
            .block_on(
                self.meta
                    .list_with("")
                    .recursive(true)
                    .limit(1)
                    .into_future(),
            )
            .map_err(|e| backend_error(&self.location.display(), "list the bucket", e))?;
        if any.iter().any(|e| e.metadata().is_file()) {
            return Err(Error::AlreadyExists(format!(
                "{}: the location is not empty; refusing to create a repository in it",
                self.location.display()
            )));
        }
        Ok(())
    }

    fn exists(&self, h: Handle) -> Result<bool> {
        match self.size(h) {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => {
                if h == Handle::Config && !self.bucket_exists()? {
                    return Err(self.no_such_bucket());
                }
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(Id, u64)>> {
        let mut out: Vec<(Id, u64)> = self
            .list_metadata(kind)?
            .into_iter()
            .map(|(id, m)| (id, m.content_length()))
            .collect();
        out.sort();
        Ok(out)
    }

    fn read(&self, h: Handle) -> Result<Vec<u8>> {
        if let Some(v) = self.pinned_version(h) {
            return self.read_version(h, &v, None);
        }
        self.rt
            .block_on(self.op(h).read(&Self::key(h)))
            .map(|b| b.to_vec())
            .map_err(|e| self.err(h, "read", e))
    }

    fn read_range(&self, h: Handle, offset: u64, len: usize) -> Result<Vec<u8>> {
        if len == 0 {
            let size = self.size(h)?;
            return if offset <= size {
                Ok(Vec::new())
            } else {
                Err(short_read(h))
            };
        }
        if let Some(v) = self.pinned_version(h) {
            return self.read_version(h, &v, Some((offset, len)));
        }
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| short_read(h))?;
        let bytes = self
            .rt
            .block_on(
                self.op(h)
                    .read_with(&Self::key(h))
                    .range(offset..end)
                    .into_future(),
            )
            .map_err(|e| self.err(h, "read", e))?;
        if bytes.len() != len {
            return Err(short_read(h));
        }
        Ok(bytes.to_vec())
    }

    fn size(&self, h: Handle) -> Result<u64> {
        self.rt
            .block_on(self.op(h).stat(&Self::key(h)))
            .map(|m| m.content_length())
            .map_err(|e| self.err(h, "look up", e))
    }

    fn write(&self, h: Handle, bytes: &[u8]) -> Result<()> {
        if let Some(rule) = self.write_retention.get() {
            return self.put_retained(h, bytes, rule);
        }
        self.put(h, bytes.to_vec())
    }

    fn write_staged(&self, h: Handle, staged: Staged) -> Result<()> {
        let bytes = match staged.into_inner()? {
            StagedData::Memory(v) => v,
            StagedData::File(f) => std::fs::read(f.path()).map_err(|e| Error::io(f.path(), e))?,
        };
        if let Some(rule) = self.write_retention.get() {
            return self.put_retained(h, &bytes, rule);
        }
        self.put(h, bytes)
    }

    fn remove(&self, h: Handle) -> Result<()> {
        // A versioned bucket keeps the content of a plain delete: delete
        // the versions themselves (callers checked that their retention
        // has ended). Lock files, which live for minutes, are only hidden;
        // prune purges them once their retention ends.
        if !matches!(h, Handle::File(FileKind::Lock, _)) && self.remove_versions(h)? {
            return Ok(());
        }
        self.rt
            .block_on(self.op(h).delete(&Self::key(h)))
            .map_err(|e| self.err(h, "delete", e))
    }

    fn remove_batch(&self, hs: &[Handle]) -> Result<()> {
        // Versions are deleted one by one; otherwise one request deletes
        // up to 1,000 objects.
        if hs.is_empty() {
            return Ok(());
        }
        if self.versioned()? {
            for h in hs {
                self.remove(*h)?;
            }
            return Ok(());
        }
        // One request names up to 1,000 keys, of any kind.
        let keys: Vec<String> = hs.iter().map(|h| Self::key(*h)).collect();
        self.rt
            .block_on(self.meta.delete_iter(keys))
            .map_err(|e| self.err(hs[0], "delete", e))
    }

    fn object_lock(&self) -> Result<Option<Retention>> {
        if let Some(rule) = self.write_retention.get() {
            return Ok(Some(rule.clone()));
        }
        self.lock_configuration()
    }

    fn enable_object_lock(&self, rule: &Retention) -> Result<()> {
        self.ensure_bucket(true)?;
        self.set_default_retention(rule)
    }

    fn write_retained(&self, rule: &Retention) {
        let _ = self.write_retention.set(rule.clone());
        // Retained objects are versioned: deleting one means its versions.
        let _ = self.versioning.set(true);
    }

    fn retained_until(&self, h: Handle) -> Result<Option<i64>> {
        self.retention_of(h)
    }

    fn extend_retention(&self, h: Handle, rule: &Retention, until: i64) -> Result<()> {
        self.put_retention(h, rule, until)
    }

    fn list_modified(&self, kind: FileKind) -> Result<Vec<(Id, i64)>> {
        self.list_times(kind)
    }

    fn hide(&self, h: Handle) -> Result<()> {
        self.delete_marker(h)
    }

    fn purge_hidden(&self, kind: FileKind) -> Result<(usize, usize)> {
        self.purge(kind)
    }

    fn recover_original(&self, h: Handle, verify: &dyn Fn(&[u8]) -> bool) -> Result<bool> {
        self.pin_original(h, verify)
    }

    fn check_may_delete(&self) -> Result<()> {
        let probe = format!("{}locks/permission-probe", self.location.prefix);
        let probe = probe.trim_start_matches('/').to_string();
        let denied = || {
            Err(Error::PermissionDenied(format!(
                "{}: the credentials (AWS_ACCESS_KEY_ID {}) may not delete objects (s3:DeleteObject is denied for {probe})",
                self.location.display(),
                self.options.credentials.access_key
            )))
        };
        // The answer does not change while the process runs (it may have
        // been asked while the key was stretched).
        if let Some(allowed) = self.may_delete.get() {
            return if *allowed { Ok(()) } else { denied() };
        }
        // Deleting a name that never exists: allowed or denied by the same
        // policy as any other delete (a versioned bucket records a delete
        // marker, which listings never show). Whether the bucket keeps
        // versions, which decides how deleting works, is asked meanwhile.
        let probed = std::thread::scope(|s| {
            s.spawn(|| self.versioned());
            self.rt.block_on(self.meta.delete("locks/permission-probe"))
        });
        match probed {
            Ok(()) => {
                let _ = self.may_delete.set(true);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                let _ = self.may_delete.set(false);
                denied()
            }
            Err(e) => Err(backend_error(&self.location.display(), "delete", e)),
        }
    }

    fn write_concurrency(&self) -> usize {
        self.options.connections.clamp(1, 16)
    }

    fn is_remote(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let l =
            S3Location::parse("http://127.0.0.1:7480/bucket/some/prefix/", "us-east-1").unwrap();
        assert_eq!(l.endpoint, "http://127.0.0.1:7480");
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("bucket", "some/prefix")
        );
        assert!(!l.aws);
        assert_eq!(l.display(), "s3:http://127.0.0.1:7480/bucket/some/prefix");
        let l = S3Location::parse("my-bucket/repo", "eu-west-1").unwrap();
        assert!(l.aws);
        assert_eq!(l.endpoint, "https://s3.eu-west-1.amazonaws.com");
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("my-bucket", "repo")
        );
        let l = S3Location::parse("s3.amazonaws.com/b", "us-east-1").unwrap();
        assert_eq!(
            (l.endpoint.as_str(), l.bucket.as_str()),
            ("https://s3.amazonaws.com", "b")
        );
        for bad in [
            "",
            "http://",
            "http://host",
            "http:///b",
            "Bad_Bucket",
            "https://h/UPPER",
        ] {
            assert!(S3Location::parse(bad, "us-east-1").is_err(), "{bad}");
        }
    }
}
