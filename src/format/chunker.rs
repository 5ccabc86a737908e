//! Content-defined chunking with a secret gear table.
//!
//! We drive `fastcdc`'s v2020 `cut_gear` with a full 256-entry gear table
//! derived from the repository's chunker key (BLAKE3 in derive-key mode).
//! The crate's own seeding only XORs one 64-bit value into a public table,
//! which does not stop chunk-size fingerprinting; a table derived from a
//! 256-bit secret does. `fastcdc` checks its size limits only in debug builds,
//! so [`ChunkerParams::validate`] checks them here for every config we load.

use serde::{Deserialize, Serialize};

/// Chunk size limits, stored in the repository config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Smallest chunk (except the last one of a file).
    pub min_size: u32,
    /// Target average chunk size; a power of two.
    pub avg_size: u32,
    /// Largest chunk.
    pub max_size: u32,
}

impl ChunkerParams {
    /// 512 KiB / 1 MiB / 8 MiB.
    pub const DEFAULT: ChunkerParams = ChunkerParams {
        min_size: 512 * 1024,
        avg_size: 1024 * 1024,
        max_size: 8 * 1024 * 1024,
    };

    /// Checks the limits `fastcdc` v2020 relies on.
    pub fn validate(&self) -> Result<(), String> {
        let (min, avg, max) = (
            self.min_size as usize,
            self.avg_size as usize,
            self.max_size as usize,
        );
        use fastcdc::v2020 as f;
        let ok = (f::MINIMUM_MIN..=f::MINIMUM_MAX).contains(&min)
            && (f::AVERAGE_MIN..=f::AVERAGE_MAX).contains(&avg)
            && (f::MAXIMUM_MIN..=f::MAXIMUM_MAX).contains(&max)
            && avg.is_power_of_two()
            && min % 2 == 0
            && max % 2 == 0
            && min <= avg
            && avg <= max;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "chunker sizes out of range: min {min}, avg {avg}, max {max} \
                 (need {}..={} <= power-of-two avg in {}..={} <= max in {}..={}, all even)",
                f::MINIMUM_MIN,
                f::MINIMUM_MAX,
                f::AVERAGE_MIN,
                f::AVERAGE_MAX,
                f::MAXIMUM_MIN,
                f::MAXIMUM_MAX
            ))
        }
    }
}

/// How database files (`backup --sqlite`) are cut into chunks: always at
/// page boundaries, so a page rewritten in place changes one chunk. Stored
/// in the repository config (see format-spec/v1-databases.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DatabaseChunking {
    /// Fixed groups of `pages` consecutive pages.
    FixedPages {
        /// Pages per chunk.
        pages: u32,
    },
    /// Content-defined cut points restricted to page boundaries: a chunk
    /// ends after a page whose keyed hash is `avg_pages - 1` modulo
    /// `avg_pages`, once it has `min_pages` pages; it has at most `max_pages`.
    PageCdc {
        /// Fewest pages per chunk (except the last).
        min_pages: u32,
        /// Cut-point modulus (a power of two).
        avg_pages: u32,
        /// Most pages per chunk.
        max_pages: u32,
    },
}

impl DatabaseChunking {
    /// Largest number of pages a chunk may span (with 64 KiB pages, 16 MiB).
    pub const MAX_PAGES: u32 = 256;

    /// The default for new repositories, chosen by measurement
    /// (`benches/sqlite_dedup.sh`; figures in the README): one page per chunk.
    pub const DEFAULT: DatabaseChunking = DatabaseChunking::FixedPages { pages: 1 };

    /// Checks the limits.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            DatabaseChunking::FixedPages { pages } => {
                if !(1..=Self::MAX_PAGES).contains(&pages) {
                    return Err(format!(
                        "database chunking: {pages} pages per chunk out of range 1..={}",
                        Self::MAX_PAGES
                    ));
                }
            }
            DatabaseChunking::PageCdc {
                min_pages,
                avg_pages,
                max_pages,
            } => {
                if !(1 <= min_pages
                    && min_pages <= avg_pages
                    && avg_pages <= max_pages
                    && max_pages <= Self::MAX_PAGES
                    && avg_pages.is_power_of_two())
                {
                    return Err(format!(
                        "database chunking: pages min {min_pages}, avg {avg_pages}, max {max_pages} \
                         out of range (need 1 <= min <= avg (a power of two) <= max <= {})",
                        Self::MAX_PAGES
                    ));
                }
            }
        }
        Ok(())
    }

    /// Most pages in one chunk.
    pub fn max_pages(&self) -> u32 {
        match *self {
            DatabaseChunking::FixedPages { pages } => pages,
            DatabaseChunking::PageCdc { max_pages, .. } => max_pages,
        }
    }

    /// Length in bytes of the next chunk at the start of `data` for a
    /// database of `page_size`-byte pages. `data` must hold at least
    /// `max_pages` pages unless it is the end of the file. `key` is the
    /// repository's chunker key (for the page hash of `PageCdc`).
    pub fn next_cut(&self, data: &[u8], page_size: usize, key: &[u8; 32]) -> usize {
        if data.is_empty() {
            return 0;
        }
        let page_size = page_size.max(1);
        let cut = match *self {
            DatabaseChunking::FixedPages { pages } => pages as usize * page_size,
            DatabaseChunking::PageCdc {
                min_pages,
                avg_pages,
                max_pages,
            } => {
                let mut n = 0usize;
                let mut off = 0usize;
                loop {
                    if off >= data.len() {
                        break off;
                    }
                    let end = (off + page_size).min(data.len());
                    n += 1;
                    if n >= max_pages as usize {
                        break end;
                    }
                    if n >= min_pages as usize {
                        let h = blake3::keyed_hash(key, &data[off..end]);
                        let b = h.as_bytes();
                        let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        if v % avg_pages == avg_pages - 1 {
                            break end;
                        }
                    }
                    off = end;
                }
            }
        };
        cut.clamp(1, data.len())
    }
}

/// A chunker for one repository: validated limits plus the secret gear table.
#[derive(Clone)]
pub struct Chunker {
    params: ChunkerParams,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    mask_s: u64,
    mask_l: u64,
}

/// Context string for deriving the gear table from the chunker key.
pub const GEAR_CONTEXT: &str = "cairn 2026-11 chunker gear table v1";

impl Chunker {
    /// Builds the chunker; `params` must pass [`ChunkerParams::validate`].
    pub fn new(params: ChunkerParams, chunker_key: &[u8; 32]) -> Result<Chunker, String> {
        params.validate()?;
        let mut hasher = blake3::Hasher::new_derive_key(GEAR_CONTEXT);
        hasher.update(chunker_key);
        let mut xof = hasher.finalize_xof();
        let mut bytes = [0u8; 256 * 8];
        xof.fill(&mut bytes);
        let mut gear = Box::new([0u64; 256]);
        let mut gear_ls = Box::new([0u64; 256]);
        for i in 0..256 {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            gear[i] = u64::from_le_bytes(b);
            gear_ls[i] = gear[i] << 1;
        }
        // Normalisation level 1, as fastcdc's default.
        let bits = params.avg_size.trailing_zeros() as usize;
        let mask_s = fastcdc::v2020::MASKS[bits + 1];
        let mask_l = fastcdc::v2020::MASKS[bits - 1];
        Ok(Chunker {
            params,
            gear,
            gear_ls,
            mask_s,
            mask_l,
        })
    }

    /// The limits in force.
    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Length of the next chunk at the start of `data`. `data` must hold at
    /// least `max_size` bytes unless it is the end of the input. Returns
    /// `data.len()` when no cut point is found; 0 only for empty input.
    pub fn next_cut(&self, data: &[u8]) -> usize {
        if data.is_empty() {
            return 0;
        }
        let (_, len) = fastcdc::v2020::cut_gear(
            data,
            self.params.min_size as usize,
            self.params.avg_size as usize,
            self.params.max_size as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear[..],
            &self.gear_ls[..],
        );
        // Defensive: never return an empty or oversized chunk.
        len.clamp(1, data.len())
    }

    /// Splits a whole buffer into chunk lengths.
    pub fn split(&self, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let n = self.next_cut(&data[pos..]);
            out.push(n);
            pos += n;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn chunks_respect_limits_and_cover_input() {
        let p = ChunkerParams {
            min_size: 2048,
            avg_size: 8192,
            max_size: 65536,
        };
        let c = Chunker::new(p, &[7; 32]).unwrap();
        let data = pseudo_random(1 << 20, 1);
        let cuts = c.split(&data);
        assert_eq!(cuts.iter().sum::<usize>(), data.len());
        for &n in &cuts[..cuts.len() - 1] {
            assert!((2048..=65536).contains(&n), "{n}");
        }
        let avg = data.len() / cuts.len();
        assert!(avg > 4096 && avg < 20000, "avg {avg}");
    }

    #[test]
    fn key_changes_boundaries_and_shift_resynchronises() {
        let p = ChunkerParams {
            min_size: 1024,
            avg_size: 4096,
            max_size: 16384,
        };
        let a = Chunker::new(p, &[1; 32]).unwrap();
        let b = Chunker::new(p, &[2; 32]).unwrap();
        let data = pseudo_random(256 * 1024, 9);
        assert_ne!(a.split(&data), b.split(&data));
        // Inserting bytes at the front only changes the first few chunks.
        let mut shifted = vec![0xAA; 100];
        shifted.extend_from_slice(&data);
        let ca = a.split(&data);
        let cs = a.split(&shifted);
        let tail_a: Vec<_> = ca.iter().rev().take(10).collect();
        let tail_s: Vec<_> = cs.iter().rev().take(10).collect();
        assert_eq!(tail_a, tail_s);
    }

    #[test]
    fn invalid_params_rejected() {
        for p in [
            ChunkerParams {
                min_size: 0,
                avg_size: 4096,
                max_size: 8192,
            },
            ChunkerParams {
                min_size: 1024,
                avg_size: 3000,
                max_size: 8192,
            },
            ChunkerParams {
                min_size: 8192,
                avg_size: 4096,
                max_size: 16384,
            },
            ChunkerParams {
                min_size: 1024,
                avg_size: 4096,
                max_size: u32::MAX,
            },
        ] {
            assert!(Chunker::new(p, &[0; 32]).is_err(), "{p:?}");
        }
    }
}
