//! The repository config: the settings every writer must agree on.
//!
//! It is sealed with the master key like everything else, so an attacker
//! cannot swap in weaker chunker or pack settings; and every field is
//! validated on load, since a damaged config must fail loudly, not steer the
//! chunker out of its limits.

use crate::error::{Error, Result};
use crate::format::chunker::{ChunkerParams, DatabaseChunking};
use crate::format::crypto::MasterKey;
use crate::format::envelope;
use serde::{Deserialize, Serialize};

/// Magic of the config file (format version 1).
pub const MAGIC: &[u8; 8] = b"CAIRNCF1";
/// The repository format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Settings stored in `config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Format version; must equal [`FORMAT_VERSION`].
    pub version: u32,
    /// Random repository id.
    pub id: [u8; 32],
    /// Chunk size limits for ordinary files.
    pub chunker: ChunkerParams,
    /// zstd level for new blobs (0 = no compression, 1..=22).
    pub compression_level: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// How database files are chunked (`None`: like ordinary files). Not
    /// part of the version 1 config encoding: it travels in the config's
    /// extension block (format-spec/v1-databases.md).
    #[serde(skip)]
    pub database_chunking: Option<DatabaseChunking>,
    /// S3 Object Lock: every object is written under this retention
    /// (format-spec/v1-locks-prune.md). Travels after the extension block.
    #[serde(skip)]
    pub object_lock: Option<Retention>,
}

/// How long every object stays retained under S3 Object Lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// `GOVERNANCE` or `COMPLIANCE`.
    pub mode: RetentionMode,
    /// How long, in seconds (at least 1, at most 100 years).
    pub seconds: u64,
}

/// The two S3 Object Lock retention modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetentionMode {
    /// Users with `s3:BypassGovernanceRetention` may delete early.
    Governance,
    /// Nobody may delete before the date, not even the account's root.
    Compliance,
}

impl RetentionMode {
    /// The name S3 uses.
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionMode::Governance => "GOVERNANCE",
            RetentionMode::Compliance => "COMPLIANCE",
        }
    }

    /// Parses `governance` or `compliance` (any case).
    pub fn parse(s: &str) -> Result<RetentionMode> {
        match s.trim().to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Ok(RetentionMode::Governance),
            "COMPLIANCE" => Ok(RetentionMode::Compliance),
            _ => Err(Error::InvalidInput(format!(
                "retention mode {s:?}: use governance or compliance"
            ))),
        }
    }
}

impl Retention {
    /// The longest retention accepted: 100 years.
    pub const MAX_SECONDS: u64 = 100 * 366 * 86_400;

    /// Its length in seconds, as a signed number for time arithmetic.
    pub fn seconds(&self) -> i64 {
        self.seconds.min(Self::MAX_SECONDS) as i64
    }

    /// Checks the bounds.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(1..=Self::MAX_SECONDS).contains(&self.seconds) {
            return Err(format!(
                "object lock retention of {} seconds out of range (1 second to 100 years)",
                self.seconds
            ));
        }
        Ok(())
    }
}

/// The config extension block.
#[derive(Serialize, Deserialize)]
struct ConfigExt {
    database_chunking: DatabaseChunking,
}

impl Config {
    /// Smallest allowed target pack size.
    pub const MIN_PACK_SIZE: u32 = 1024 * 1024;
    /// Largest allowed target pack size.
    pub const MAX_PACK_SIZE: u32 = 1024 * 1024 * 1024;
    /// Default target pack size.
    pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;

    /// A new config with a random id.
    pub fn new(chunker: ChunkerParams, compression_level: i32, pack_size: u32) -> Result<Config> {
        let c = Config {
            version: FORMAT_VERSION,
            id: crate::format::crypto::random_array()?,
            chunker,
            compression_level,
            pack_size,
            database_chunking: Some(DatabaseChunking::DEFAULT),
            object_lock: None,
        };
        c.validate().map_err(Error::InvalidInput)?;
        Ok(c)
    }

    /// Checks every field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.version != FORMAT_VERSION {
            return Err(format!(
                "repository format version {} is not supported (this cairn reads version {FORMAT_VERSION})",
                self.version
            ));
        }
        self.chunker.validate()?;
        if !(0..=22).contains(&self.compression_level) {
            return Err(format!(
                "compression level {} out of range 0..=22",
                self.compression_level
            ));
        }
        if !(Self::MIN_PACK_SIZE..=Self::MAX_PACK_SIZE).contains(&self.pack_size) {
            return Err(format!("pack size {} out of range", self.pack_size));
        }
        if let Some(d) = &self.database_chunking {
            d.validate()?;
        }
        if let Some(r) = &self.object_lock {
            if self.database_chunking.is_none() {
                return Err("object lock retention without the extension block".into());
            }
            r.validate()?;
        }
        Ok(())
    }

    /// Seals the config for writing.
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        envelope::seal_plain(key, MAGIC, &self.to_plaintext()?)
    }

    /// The plaintext: the version 1 fields, then the extension block if
    /// there is anything to put in it.
    pub fn to_plaintext(&self) -> Result<Vec<u8>> {
        let mut plain = envelope::to_postcard(self)?;
        if let Some(d) = self.database_chunking {
            plain.extend_from_slice(&envelope::to_postcard(&ConfigExt {
                database_chunking: d,
            })?);
            if let Some(r) = &self.object_lock {
                plain.extend_from_slice(&envelope::to_postcard(r)?);
            }
        }
        Ok(plain)
    }

    /// Opens and validates a config file.
    pub fn decode(key: &MasterKey, bytes: &[u8]) -> Result<Config> {
        let plain = envelope::open_plain(key, MAGIC, bytes, "config")?;
        Config::from_plaintext(&plain, "config")
    }

    /// Decodes and validates the plaintext of a config file.
    pub fn from_plaintext(plain: &[u8], what: &str) -> Result<Config> {
        let (mut c, rest) = postcard::take_from_bytes::<Config>(plain)
            .map_err(|e| Error::corrupt(what, format!("malformed content: {e}")))?;
        if !rest.is_empty() {
            // The extension block, optionally followed by the retention.
            let (ext, lock) = envelope::from_postcard_ext::<ConfigExt, Retention>(rest, what)?;
            c.database_chunking = Some(ext.database_chunking);
            c.object_lock = lock;
        }
        c.validate().map_err(|p| Error::corrupt(what, p))?;
        Ok(c)
    }
}
