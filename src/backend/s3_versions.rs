//! What a versioned bucket with S3 Object Lock adds: retention of every
//! object, and old versions of objects to fall back to.
//!
//! Backup-only credentials may still write (PUT), and S3 cannot refuse a
//! PUT to an existing name, so an attacker holding them can overwrite any
//! object. On a versioned bucket (Object Lock needs versioning) the
//! original stays as an older version, under retention; every cairn file
//! but the config is named by the hash of its content, so the original is
//! easy to tell: [`S3Backend::recover_original`] finds it and pins reads of
//! that name to it. Deletes with backup-only credentials are refused by the
//! bucket policy; deletes with full credentials leave a delete marker and
//! the retained versions. OpenDAL has no calls for versions or retention:
//! these are signed requests of our own, and their XML answers are read
//! with bounded string scanning (an answer too odd to read is an error).

use super::{S3Backend, SignedResponse};
use crate::backend::{FileKind, Handle, Retention, RetentionMode, parse_name, short_read};
use crate::error::{Error, Result};
use crate::format::id::Id;
use std::collections::HashMap;

/// One version of an object, as a version listing gives it.
#[derive(Clone, Debug)]
pub(super) struct ObjectVersion {
    /// The object key (with the repository prefix).
    pub key: String,
    /// Its version id.
    pub version_id: String,
    /// A delete marker, not content.
    pub delete_marker: bool,
    /// The newest version of its key.
    pub latest: bool,
    /// When it was written (Unix seconds).
    pub modified: i64,
}

/// The inner text of every `<tag>…</tag>` in `xml`, in order.
fn tags<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// The first `<tag>…</tag>` in `xml`.
fn tag<'a>(xml: &'a str, tag_name: &str) -> Option<&'a str> {
    tags(xml, tag_name).into_iter().next()
}

/// Unix seconds of an S3 timestamp (`2026-12-02T17:00:00.000Z`).
fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp())
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The base64 MD5 of `body` (S3 wants it on retention and lock settings).
fn content_md5(body: &[u8]) -> String {
    use base64::Engine;
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

impl S3Backend {
    fn answer_error(&self, what: &str, r: &SignedResponse) -> Error {
        let body = String::from_utf8_lossy(&r.body);
        if r.status == 403 {
            return Error::PermissionDenied(format!(
                "{}: the credentials (AWS_ACCESS_KEY_ID {}) may not {what} (HTTP 403 {})",
                self.location.display(),
                self.options.credentials.access_key,
                tag(&body, "Code").unwrap_or("AccessDenied")
            ));
        }
        self.http_failure(what, r.status, &body)
    }

    /// Reads the bucket's Object Lock configuration: `None` when Object
    /// Lock is off. Asked once per process.
    pub(super) fn lock_configuration(&self) -> Result<Option<Retention>> {
        if let Some(r) = self.object_lock.get() {
            return Ok(r.clone());
        }
        let r = self.signed_request("GET", &self.url(None, "object-lock="), &[], Vec::new())?;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        let rule = match r.status {
            200 => {
                let enabled = tag(&body, "ObjectLockEnabled") == Some("Enabled");
                let mode = tag(&body, "Mode").map(RetentionMode::parse).transpose();
                let days = tag(&body, "Days")
                    .and_then(|d| d.trim().parse::<u32>().ok())
                    .or_else(|| {
                        tag(&body, "Years")
                            .and_then(|y| y.trim().parse::<u32>().ok())
                            .map(|y| y.saturating_mul(365))
                    });
                match (enabled, mode, days) {
                    (true, Ok(Some(mode)), Some(days)) if days > 0 => Some(Retention {
                        mode,
                        seconds: u64::from(days) * 86_400,
                    }),
                    // Object Lock without a default retention: objects are
                    // versioned but not retained; cairn treats it as off.
                    _ => None,
                }
            }
            404 => None,
            // Some servers answer 400 or 501 when they have no Object Lock;
            // credentials that may not ask cannot use it either.
            400 | 403 | 501 => None,
            _ => return Err(self.answer_error("read the bucket's Object Lock settings", &r)),
        };
        let _ = self.object_lock.set(rule.clone());
        Ok(rule)
    }

    /// Sets the bucket's Object Lock configuration (the bucket must have
    /// been created with Object Lock): a default retention of `rule` when
    /// it is a whole number of days, else none (cairn sets the retention of
    /// each object it writes anyway).
    pub fn set_default_retention(&self, rule: &Retention) -> Result<()> {
        let default = if rule.seconds.is_multiple_of(86_400) {
            format!(
                "<Rule><DefaultRetention><Mode>{}</Mode><Days>{}</Days></DefaultRetention></Rule>",
                rule.mode.as_str(),
                rule.seconds / 86_400
            )
        } else {
            String::new()
        };
        let body = format!(
            "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><ObjectLockEnabled>Enabled</ObjectLockEnabled>{default}</ObjectLockConfiguration>"
        )
        .into_bytes();
        let headers = [("content-md5", content_md5(&body))];
        let r = self.signed_request("PUT", &self.url(None, "object-lock="), &headers, body)?;
        match r.status {
            200 | 204 => Ok(()),
            409 | 400
                if String::from_utf8_lossy(&r.body).contains("InvalidBucketState")
                    || String::from_utf8_lossy(&r.body).contains("ObjectLock") =>
            {
                Err(Error::InvalidInput(format!(
                    "{}: the bucket was created without Object Lock, which can only be turned on when a bucket is created; use a new bucket (`cairn init --object-lock` creates it)",
                    self.location.display()
                )))
            }
            _ => Err(self.answer_error("set the bucket's Object Lock retention", &r)),
        }
    }

    /// Writes one object with its retention (and, where asked for, only
    /// if no object of that name exists), retrying what a retry may fix.
    pub(super) fn put_retained(&self, h: Handle, bytes: &[u8], rule: &Retention) -> Result<()> {
        let until = chrono::Utc::now()
            .timestamp()
            .saturating_add(rule.seconds());
        let date = chrono::DateTime::from_timestamp(until, 0)
            .ok_or_else(|| Error::InvalidInput("retention date out of range".into()))?
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let mut headers = vec![
            ("content-md5", content_md5(bytes)),
            ("x-amz-object-lock-mode", rule.mode.as_str().to_string()),
            ("x-amz-object-lock-retain-until-date", date),
        ];
        if self.options.if_none_match {
            headers.push(("if-none-match", "*".to_string()));
        }
        if let (Handle::File(FileKind::Pack, _), Some(class)) = (h, &self.options.storage_class) {
            headers.push(("x-amz-storage-class", class.clone()));
        }
        let url = self.url(Some(&Self::key(h)), "");
        let mut attempt = 0;
        loop {
            let r = self.signed_request("PUT", &url, &headers, bytes.to_vec());
            let retry = match &r {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) if r.status == 412 => {
                    return Err(Error::AlreadyExists(format!(
                        "{}: a file of that name already exists; not replaced",
                        h.rel_path()
                    )));
                }
                Ok(r) => r.status >= 500 || r.status == 429,
                Err(_) => true,
            };
            if !retry || attempt >= self.options.retries {
                return match r {
                    Ok(r) => Err(self.answer_error(&format!("write {}", h.rel_path()), &r)),
                    Err(e) => Err(e),
                };
            }
            attempt += 1;
            std::thread::sleep(std::time::Duration::from_millis(200 << attempt.min(5)));
        }
    }

    /// Whether the bucket keeps versions (Object Lock implies it).
    pub(super) fn versioned(&self) -> Result<bool> {
        if let Some(v) = self.versioning.get() {
            return Ok(*v);
        }
        let r = self.signed_request("GET", &self.url(None, "versioning="), &[], Vec::new())?;
        let v = match r.status {
            200 => tag(&String::from_utf8_lossy(&r.body), "Status") == Some("Enabled"),
            // Without permission to ask, behave as for an unversioned bucket.
            _ => false,
        };
        let _ = self.versioning.set(v);
        Ok(v)
    }

    /// Every version of every object whose key starts with `prefix` (a
    /// repository path), oldest first per key.
    pub(super) fn versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>> {
        let full = self.object_key(prefix);
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        for _page in 0..100_000 {
            let mut q = format!("prefix={}&versions=", encode(&full));
            if let Some((k, v)) = &marker {
                q = format!(
                    "key-marker={}&{q}&version-id-marker={}",
                    encode(k),
                    encode(v)
                );
            }
            let r = self.signed_request("GET", &self.url(None, &q), &[], Vec::new())?;
            if r.status != 200 {
                return Err(self.answer_error("list object versions", &r));
            }
            let body = String::from_utf8_lossy(&r.body).into_owned();
            for (kind, marker_kind) in [("Version", false), ("DeleteMarker", true)] {
                for v in tags(&body, kind) {
                    let (Some(key), Some(id)) = (tag(v, "Key"), tag(v, "VersionId")) else {
                        continue;
                    };
                    out.push(ObjectVersion {
                        key: key.to_string(),
                        version_id: id.to_string(),
                        delete_marker: marker_kind,
                        latest: tag(v, "IsLatest") == Some("true"),
                        modified: tag(v, "LastModified").and_then(parse_time).unwrap_or(0),
                    });
                }
            }
            if tag(&body, "IsTruncated") != Some("true") {
                break;
            }
            match (
                tag(&body, "NextKeyMarker"),
                tag(&body, "NextVersionIdMarker"),
            ) {
                (Some(k), Some(v)) => marker = Some((k.to_string(), v.to_string())),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key).then(a.modified.cmp(&b.modified)));
        Ok(out)
    }

    /// The versions of exactly the object of `h`, oldest first.
    fn versions_of(&self, h: Handle) -> Result<Vec<ObjectVersion>> {
        let key = self.object_key(&Self::key(h));
        Ok(self
            .versions(&Self::key(h))?
            .into_iter()
            .filter(|v| v.key == key)
            .collect())
    }

    /// Retention end of one version (or of the current one), if any.
    fn version_retention(&self, h: Handle, version: Option<&str>) -> Result<Option<i64>> {
        let q = version.map_or(String::new(), |v| format!("versionId={}", encode(v)));
        let r = self.signed_request("HEAD", &self.url(Some(&Self::key(h)), &q), &[], Vec::new())?;
        match r.status {
            200 => Ok(r
                .headers
                .get("x-amz-object-lock-retain-until-date")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_time)),
            404 => Err(Error::not_found(h.rel_path())),
            _ => Err(self.answer_error(&format!("look up {}", h.rel_path()), &r)),
        }
    }

    /// When the retention of `h`'s current version ends, if it has one.
    pub(super) fn retention_of(&self, h: Handle) -> Result<Option<i64>> {
        if self.write_retention.get().is_none() && self.lock_configuration()?.is_none() {
            return Ok(None);
        }
        let now = chrono::Utc::now().timestamp();
        Ok(self.version_retention(h, None)?.filter(|t| *t > now))
    }

    /// Sets the retention of `h`'s current version to `until`.
    pub(super) fn put_retention(&self, h: Handle, rule: &Retention, until: i64) -> Result<()> {
        let date = chrono::DateTime::from_timestamp(until, 0)
            .ok_or_else(|| Error::InvalidInput("retention date out of range".into()))?
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode><RetainUntilDate>{date}</RetainUntilDate></Retention>",
            rule.mode.as_str()
        )
        .into_bytes();
        let headers = [("content-md5", content_md5(&body))];
        let r = self.signed_request(
            "PUT",
            &self.url(Some(&Self::key(h)), "retention="),
            &headers,
            body,
        )?;
        match r.status {
            200 | 204 => Ok(()),
            404 => Err(Error::not_found(h.rel_path())),
            _ => Err(self.answer_error(&format!("extend the retention of {}", h.rel_path()), &r)),
        }
    }

    /// Files of `kind` with their last-modified times.
    pub(super) fn list_times(&self, kind: FileKind) -> Result<Vec<(Id, i64)>> {
        Ok(self
            .list_metadata(kind)?
            .into_iter()
            .map(|(id, m)| {
                let t = m
                    .last_modified()
                    .map(|t| t.into_inner().as_second())
                    .unwrap_or(0);
                (id, t)
            })
            .collect())
    }

    /// Deletes every version of `h` (a versioned bucket keeps the content
    /// of a plain delete). A version still under retention is refused by
    /// the server: that is an error.
    pub(super) fn remove_versions(&self, h: Handle) -> Result<bool> {
        if !self.versioned()? {
            return Ok(false);
        }
        for v in self.versions_of(h)? {
            self.delete_version(h, &v.version_id)?;
        }
        Ok(true)
    }

    fn delete_version(&self, h: Handle, version: &str) -> Result<()> {
        let key = self.object_key(&Self::key(h));
        self.delete_key_version(&key, version, h)
    }

    /// Deletes one version of the object `key` (with the prefix); `h`
    /// names it in errors.
    fn delete_key_version(&self, key: &str, version: &str, h: Handle) -> Result<()> {
        let q = format!("versionId={}", encode(version));
        let base = self.url(None, "");
        let url = format!("{}/{key}?{q}", base.trim_end_matches('/'));
        let r = self.signed_request("DELETE", &url, &[], Vec::new())?;
        match r.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(self.answer_error(&format!("delete {}", h.rel_path()), &r)),
        }
    }

    /// A plain delete: on a versioned bucket, a delete marker.
    pub(super) fn delete_marker(&self, h: Handle) -> Result<()> {
        let r = self.signed_request(
            "DELETE",
            &self.url(Some(&Self::key(h)), ""),
            &[],
            Vec::new(),
        )?;
        match r.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(self.answer_error(&format!("delete {}", h.rel_path()), &r)),
        }
    }

    /// Deletes the versions of hidden objects of `kind` (their newest
    /// version is a delete marker) once their retention has ended.
    pub(super) fn purge(&self, kind: FileKind) -> Result<(usize, usize)> {
        if !self.versioned()? {
            return Ok((0, 0));
        }
        let mut by_key: HashMap<String, Vec<ObjectVersion>> = HashMap::new();
        for v in self.versions(&format!("{}/", kind.dir()))? {
            by_key.entry(v.key.clone()).or_default().push(v);
        }
        let now = chrono::Utc::now().timestamp();
        let (mut deleted, mut waiting) = (0, 0);
        let mut keys: Vec<&String> = by_key.keys().collect();
        keys.sort();
        for key in keys {
            let versions = &by_key[key];
            let hidden = versions.iter().any(|v| v.latest && v.delete_marker);
            let name = key.rsplit('/').next().unwrap_or("");
            if kind == FileKind::Lock && name == "permission-probe" {
                // The delete markers `check_may_delete` leaves.
                let h = Handle::new(kind, Id::default());
                for v in versions.iter().filter(|v| v.delete_marker) {
                    self.delete_key_version(key, &v.version_id, h)?;
                }
                continue;
            }
            let (true, Some(id)) = (hidden, parse_name(name)) else {
                continue;
            };
            let h = Handle::new(kind, id);
            let mut all_gone = true;
            for v in versions.iter().filter(|v| !v.delete_marker) {
                match self.version_retention(h, Some(&v.version_id))? {
                    Some(t) if t > now => {
                        waiting += 1;
                        all_gone = false;
                    }
                    _ => {
                        self.delete_version(h, &v.version_id)?;
                        deleted += 1;
                    }
                }
            }
            if all_gone {
                for v in versions.iter().filter(|v| v.delete_marker) {
                    self.delete_version(h, &v.version_id)?;
                }
            }
        }
        Ok((deleted, waiting))
    }

    /// Finds the oldest version of `h` that `verify` accepts and pins reads
    /// of `h` to it.
    pub(super) fn pin_original(&self, h: Handle, verify: &dyn Fn(&[u8]) -> bool) -> Result<bool> {
        if !self.versioned()? {
            return Ok(false);
        }
        let key = Self::key(h);
        let current = crate::sys::lock(&self.pinned).get(&key).cloned();
        for v in self.versions_of(h)? {
            if v.delete_marker || Some(&v.version_id) == current.as_ref() {
                continue;
            }
            let bytes = self.read_version(h, &v.version_id, None)?;
            if verify(&bytes) {
                crate::sys::lock(&self.pinned).insert(key, v.version_id);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The pinned version of `h`, if reads of it were pinned.
    pub(super) fn pinned_version(&self, h: Handle) -> Option<String> {
        let pinned = crate::sys::lock(&self.pinned);
        if pinned.is_empty() {
            return None;
        }
        pinned.get(&Self::key(h)).cloned()
    }

    /// Reads one version of `h` (a byte range of it, or all).
    pub(super) fn read_version(
        &self,
        h: Handle,
        version: &str,
        range: Option<(u64, usize)>,
    ) -> Result<Vec<u8>> {
        let q = format!("versionId={}", encode(version));
        let mut headers = Vec::new();
        if let Some((offset, len)) = range {
            if len == 0 {
                return Ok(Vec::new());
            }
            let end = offset
                .checked_add(len as u64 - 1)
                .ok_or_else(|| short_read(h))?;
            headers.push(("range", format!("bytes={offset}-{end}")));
        }
        let r = self.signed_request(
            "GET",
            &self.url(Some(&Self::key(h)), &q),
            &headers,
            Vec::new(),
        )?;
        match r.status {
            200 | 206 => {
                if let Some((_, len)) = range
                    && r.body.len() != len
                {
                    return Err(short_read(h));
                }
                Ok(r.body)
            }
            404 => Err(Error::not_found(h.rel_path())),
            416 => Err(short_read(h)),
            _ => Err(self.answer_error(&format!("read {}", h.rel_path()), &r)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_scanning_is_bounded_and_exact() {
        let xml = "<A><Key>k1</Key><VersionId>v1</VersionId></A><A><Key>k2</Key></A><Key>open";
        assert_eq!(tags(xml, "Key"), vec!["k1", "k2"]);
        assert_eq!(tag(xml, "VersionId"), Some("v1"));
        assert_eq!(tag(xml, "Missing"), None);
        assert_eq!(tags("<Key><Key></Key>", "Key"), vec!["<Key>"]);
        assert_eq!(parse_time("2026-12-02T17:00:00.000Z"), Some(1_796_230_800));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(encode("a b/c+~"), "a%20b%2Fc%2B~");
    }
}
