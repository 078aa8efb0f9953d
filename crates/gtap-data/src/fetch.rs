//! Downloading dataset files: a temporary file in the target directory, hashed while it is
//! written, renamed into place only when its digest (SHA-256, or the MD5 a dataset publishes)
//! matches.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checksum::Checksum;
use crate::DataError;

/// Whether a loader may download dataset files that are missing locally.
///
/// Files already present are never re-downloaded; a present file with a wrong checksum is an
/// error, not a reason to fetch it again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FetchPolicy {
    /// Never touch the network: a missing file is an error (tests, offline machines).
    Never,
    /// Download missing files from the dataset's canonical mirrors, trying them in order.
    #[default]
    Download,
    /// Download missing files from these base URLs (each ending in `/`), tried in order.
    DownloadFrom(Vec<String>),
}

impl FetchPolicy {
    /// The base URLs to try, given the dataset's canonical mirrors; empty for [`FetchPolicy::Never`].
    pub fn mirrors(&self, canonical: &[&str]) -> Vec<String> {
        match self {
            FetchPolicy::Never => Vec::new(),
            FetchPolicy::Download => canonical.iter().map(|s| s.to_string()).collect(),
            FetchPolicy::DownloadFrom(urls) => urls.clone(),
        }
    }
}

/// Downloads `url` to `dest`, verifying the SHA-256 of the received bytes against
/// `expected_sha256` (hex).
///
/// The bytes go to a temporary file beside `dest` (`.<name>.part-<pid>`), which is renamed to
/// `dest` only after the digest matches and removed on any failure, so `dest` either does not
/// exist or holds the verified file. The parent directory is created if needed.
///
/// Fails with [`DataError::Download`] naming the file, the URL and the cause.
pub fn download_verified(url: &str, dest: &Path, expected_sha256: &str) -> Result<(), DataError> {
    download_checked(url, dest, Checksum::Sha256(expected_sha256))
}

/// [`download_verified`] against any [`Checksum`].
pub fn download_checked(url: &str, dest: &Path, expected: Checksum<'_>) -> Result<(), DataError> {
    let fail = |reason: String| DataError::Download {
        path: dest.to_path_buf(),
        url: url.to_string(),
        reason,
    };
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dest
        .file_name()
        .ok_or_else(|| fail("destination has no file name".to_string()))?
        .to_string_lossy()
        .into_owned();
    fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let tmp = dir.join(format!(".{name}.part-{}", std::process::id()));

    let result = download_to(url, &tmp, expected);
    match result {
        Ok(()) => fs::rename(&tmp, dest).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            DataError::io(dest, e)
        }),
        Err(reason) => {
            let _ = fs::remove_file(&tmp);
            Err(fail(reason))
        }
    }
}

/// Streams `url` into `tmp` and checks the digest; returns a human-readable cause on failure.
fn download_to(url: &str, tmp: &Path, expected: Checksum<'_>) -> Result<(), String> {
    let mut config = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_global(Some(Duration::from_secs(15 * 60)));
    if is_loopback(url) {
        // A proxy from the environment must never see (or break) a local mirror.
        config = config.proxy(None);
    }
    let agent: ureq::Agent = config.build().into();
    let response = agent.get(url).call().map_err(|e| e.to_string())?;
    let mut body = response.into_body().into_reader();
    let mut file =
        File::create(tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let mut hasher = expected.hasher();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading the response failed: {e}")),
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    }
    file.sync_all()
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let actual = hasher.finish();
    if expected.matches(&actual) {
        Ok(())
    } else {
        Err(format!(
            "{} mismatch: expected {}, found {actual}",
            expected.algorithm(),
            expected.hex()
        ))
    }
}

/// Whether `url` points at this machine (`localhost`, `127.x.x.x` or `[::1]`).
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next().map_or(host, |h| &h[1..])
    } else {
        host.split(':').next().unwrap_or(host)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_hosts() {
        let check = |url: &str, expected: bool| assert_eq!(is_loopback(url), expected, "{url}");
        check("http://127.0.0.1:8080/mnist/", true);
        check("http://localhost/x", true);
        check("http://[::1]:99/x", true);
        check("https://ossci-datasets.s3.amazonaws.com/mnist/x.gz", false);
        check("http://user@10.0.0.1:80/", false);
    }
}

/// The directories a loader searched, for a "missing files" message: each path, marked when it
/// does not exist.
pub(crate) fn describe_dirs(dirs: &[PathBuf]) -> Vec<String> {
    dirs.iter()
        .map(|d| {
            if d.is_dir() {
                d.display().to_string()
            } else {
                format!("{} (does not exist)", d.display())
            }
        })
        .collect()
}
