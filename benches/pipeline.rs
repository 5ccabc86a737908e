//! Micro-benchmarks of the backup pipeline stages, each reporting throughput.
//!
//! ```text
//! cargo bench --bench pipeline                  # everything (a few minutes)
//! cargo bench --bench pipeline -- chunker       # one group (criterion filter)
//! CAIRN_BENCH_INDEX_SIZES=1000000 cargo bench --bench pipeline -- index   # skip 10M
//! ```
//!
//! Groups:
//!
//! * `chunker`   — content-defined chunking of 64 MiB of pseudo-random data
//!   with the default 512 KiB / 1 MiB / 8 MiB limits and a secret gear table.
//! * `blake3`    — keyed BLAKE3 (blob ids) on a 1 MiB chunk and a 4 KiB one.
//! * `zstd`      — level-3 compression of 1 MiB of text-like data and of
//!   random data (which the blob encoder then stores raw), and decompression.
//! * `aead`      — XChaCha20-Poly1305 seal and open of 1 MiB.
//! * `blob`      — `blob::encode` (compress + encrypt) and `blob::decode`.
//! * `pack`      — filling a 16 MiB pack with encoded blobs and finishing it
//!   (sealed header, BLAKE3 of the whole pack for its name).
//! * `index`     — building, and looking up present and absent ids in, every
//!   in-memory blob index structure at 1M and 10M entries (sizes from
//!   `CAIRN_BENCH_INDEX_SIZES`, comma-separated; underscores allowed).
//!
//! All input data is generated deterministically, so runs are comparable.
//! Measurement times are kept short so that the whole suite finishes in a few
//! minutes on a 2-core machine; pass criterion's own flags
//! (`--measurement-time`, `--sample-size`) for more precise figures.

use cairn::Id;
use cairn::format::blob::{self, BlobType};
use cairn::format::chunker::{Chunker, ChunkerParams};
use cairn::format::crypto::MasterKey;
use cairn::format::pack::{PackBuilder, PackEntry};
use cairn::repository::index::{BlobSet, Index};
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main, measurement::WallTime,
};
use std::hint::black_box;
use std::time::Duration;

const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// Deterministic input data
// ---------------------------------------------------------------------------

/// splitmix64: a tiny, fast, deterministic generator (not cryptographic).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut it = buf.chunks_exact_mut(8);
        for c in &mut it {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = it.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }

    /// A uniformly random id, as keyed BLAKE3 outputs are.
    fn id(&mut self) -> Id {
        let mut b = [0u8; 32];
        self.fill(&mut b);
        Id(b)
    }
}

/// Incompressible bytes.
fn random_data(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng(seed).fill(&mut v);
    v
}

/// Text-like data: words from a skewed vocabulary of pseudo-words, with
/// punctuation, indentation and line breaks. zstd -3 shrinks it about 3x,
/// roughly like source code and documentation.
fn text_data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let vocab: Vec<Vec<u8>> = (0..4096)
        .map(|_| {
            let n = 2 + rng.below(9) as usize;
            (0..n).map(|_| b'a' + rng.below(26) as u8).collect()
        })
        .collect();
    let mut out = Vec::with_capacity(len + 64);
    let mut col = 0usize;
    while out.len() < len {
        // Squaring a uniform value skews picks towards the first words (a
        // crude Zipf law), which is what makes text compressible.
        let r = rng.below(1 << 16);
        let w = &vocab[((r * r) >> 20) as usize];
        out.extend_from_slice(w);
        col += w.len() + 1;
        match rng.below(40) {
            0 => out.extend_from_slice(b". "),
            1 => out.extend_from_slice(b", "),
            2 => out.extend_from_slice(b"(); "),
            _ => out.push(b' '),
        }
        if col > 72 {
            out.push(b'\n');
            let indent = 4 * rng.below(3) as usize;
            out.extend(std::iter::repeat_n(b' ', indent));
            col = indent;
        }
    }
    out.truncate(len);
    out
}

fn key() -> MasterKey {
    MasterKey::generate().expect("random source")
}

/// Short measurements: the suite has to run on a busy 2-core machine.
fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

// ---------------------------------------------------------------------------
// CPU stages
// ---------------------------------------------------------------------------

fn bench_chunker(c: &mut Criterion) {
    let data = random_data(64 * MIB, 1);
    let k = key();
    let chunker = Chunker::new(ChunkerParams::DEFAULT, &k.chunker).expect("default params");
    let mut g = c.benchmark_group("chunker");
    configure(&mut g);
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("split_64MiB_random", |b| {
        b.iter(|| chunker.split(black_box(&data)))
    });
    g.finish();
}

fn bench_blake3(c: &mut Criterion) {
    let k = key();
    let mut g = c.benchmark_group("blake3_keyed");
    configure(&mut g);
    for (name, len) in [("1MiB", MIB), ("4KiB", 4096)] {
        let data = random_data(len, 2);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(name, |b| b.iter(|| k.blob_id(black_box(&data))));
    }
    g.finish();
}

fn bench_zstd(c: &mut Criterion) {
    let text = text_data(MIB, 3);
    let random = random_data(MIB, 4);
    let text_z = zstd::bulk::compress(&text, 3).unwrap();
    eprintln!(
        "zstd: text-like 1 MiB compresses to {} bytes ({:.2}x) at level 3",
        text_z.len(),
        text.len() as f64 / text_z.len() as f64
    );
    let mut g = c.benchmark_group("zstd");
    configure(&mut g);
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("compress_l3_text_1MiB", |b| {
        b.iter(|| zstd::bulk::compress(black_box(&text), 3).unwrap())
    });
    g.bench_function("compress_l3_random_1MiB", |b| {
        b.iter(|| zstd::bulk::compress(black_box(&random), 3).unwrap())
    });
    g.bench_function("decompress_text_1MiB", |b| {
        b.iter(|| zstd::bulk::decompress(black_box(&text_z), MIB).unwrap())
    });
    g.finish();
}

fn bench_aead(c: &mut Criterion) {
    let k = key();
    let data = random_data(MIB, 5);
    let sealed = k.seal(b"bench", &data).unwrap();
    let mut g = c.benchmark_group("xchacha20poly1305");
    configure(&mut g);
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("seal_1MiB", |b| {
        b.iter(|| k.seal(b"bench", black_box(&data)).unwrap())
    });
    g.bench_function("open_1MiB", |b| {
        b.iter(|| k.open(b"bench", black_box(&sealed), "bench").unwrap())
    });
    g.finish();
}

fn bench_blob(c: &mut Criterion) {
    let k = key();
    let mut g = c.benchmark_group("blob");
    configure(&mut g);
    g.throughput(Throughput::Bytes(MIB as u64));
    for (name, data) in [("text", text_data(MIB, 6)), ("random", random_data(MIB, 7))] {
        let id = k.blob_id(&data);
        let enc = blob::encode(&k, BlobType::Data, &id, &data, 3).unwrap();
        g.bench_function(format!("encode_l3_{name}_1MiB"), |b| {
            b.iter(|| blob::encode(&k, BlobType::Data, &id, black_box(&data), 3).unwrap())
        });
        g.bench_function(format!("decode_{name}_1MiB"), |b| {
            b.iter(|| {
                blob::decode(
                    &k,
                    BlobType::Data,
                    &id,
                    black_box(&enc),
                    "bench",
                    &blob::no_base,
                )
                .unwrap()
            })
        });
        // What a backup does per new chunk: id, then encode.
        g.bench_function(format!("id_and_encode_l3_{name}_1MiB"), |b| {
            b.iter(|| {
                let id = k.blob_id(black_box(&data));
                blob::encode(&k, BlobType::Data, &id, &data, 3).unwrap()
            })
        });
    }
    g.finish();
}

fn bench_pack(c: &mut Criterion) {
    let k = key();
    // 16 encoded 1 MiB chunks (random, so stored raw): one default-sized pack.
    let blobs: Vec<(Id, Vec<u8>)> = (0..16)
        .map(|i| {
            let data = random_data(MIB, 100 + i);
            let id = k.blob_id(&data);
            let enc = blob::encode(&k, BlobType::Data, &id, &data, 0).unwrap();
            (id, enc)
        })
        .collect();
    let total: usize = blobs.iter().map(|(_, e)| e.len()).sum();
    let mut g = c.benchmark_group("pack");
    configure(&mut g);
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("build_and_finish_16x1MiB", |b| {
        b.iter(|| {
            let mut p = PackBuilder::new(BlobType::Data, total + 4096);
            for (id, enc) in &blobs {
                p.add(*id, enc, MIB);
            }
            p.finish(&k).unwrap()
        })
    });
    // Small blobs: header sealing and entry bookkeeping dominate.
    let small: Vec<(Id, Vec<u8>)> = (0..4096)
        .map(|i| {
            let data = random_data(4096, 1000 + i);
            let id = k.blob_id(&data);
            let enc = blob::encode(&k, BlobType::Data, &id, &data, 0).unwrap();
            (id, enc)
        })
        .collect();
    let total_small: usize = small.iter().map(|(_, e)| e.len()).sum();
    g.throughput(Throughput::Bytes(total_small as u64));
    g.bench_function("build_and_finish_4096x4KiB", |b| {
        b.iter(|| {
            let mut p = PackBuilder::new(BlobType::Data, total_small + 4096);
            for (id, enc) in &small {
                p.add(*id, enc, 4096);
            }
            p.finish(&k).unwrap()
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// Index structures
// ---------------------------------------------------------------------------

/// Synthetic repository content: packs of 16 data blobs of ~1 MiB, as a
/// backup with default settings writes them.
struct SyntheticPacks {
    packs: Vec<Id>,
    /// All entries; pack `i` holds `entries[i * PER_PACK..][..PER_PACK]`.
    entries: Vec<PackEntry>,
}

const PER_PACK: usize = 16;

impl SyntheticPacks {
    fn new(n: usize, seed: u64) -> SyntheticPacks {
        let mut rng = Rng(seed);
        let mut entries = Vec::with_capacity(n);
        let mut packs = Vec::with_capacity(n.div_ceil(PER_PACK));
        let mut offset = 0u64;
        for i in 0..n {
            if i % PER_PACK == 0 {
                packs.push(rng.id());
                offset = 0;
            }
            let length = 600_000 + rng.below(400_000) as u32;
            entries.push(PackEntry {
                kind: BlobType::Data,
                id: rng.id(),
                offset,
                length,
                raw_length: length + 100_000,
            });
            offset += length as u64;
        }
        SyntheticPacks { packs, entries }
    }

    fn iter(&self) -> impl Iterator<Item = (&Id, &[PackEntry])> {
        self.packs.iter().zip(self.entries.chunks(PER_PACK))
    }
}

/// An in-memory blob membership structure under test. To benchmark a new
/// structure, implement this for it and add one line to [`bench_index`].
trait BlobIndex: Sized {
    /// Builds the structure from every entry, as loading index files does.
    fn build(src: &SyntheticPacks) -> Self;
    fn has(&self, id: &Id) -> bool;
}

/// The full index (locations of every blob): what restore and check use.
impl BlobIndex for Index {
    fn build(src: &SyntheticPacks) -> Self {
        let mut ix = Index::new();
        for (pack, entries) in src.iter() {
            ix.add_pack(*pack, entries);
        }
        ix
    }
    fn has(&self, id: &Id) -> bool {
        self.contains(id)
    }
}

/// The compact id set a backup deduplicates against.
impl BlobIndex for BlobSet {
    fn build(src: &SyntheticPacks) -> Self {
        let mut s = BlobSet::with_capacity(src.entries.len());
        for e in &src.entries {
            s.push(&e.id);
        }
        s.seal();
        s
    }
    fn has(&self, id: &Id) -> bool {
        self.contains(id)
    }
}

fn index_sizes() -> Vec<usize> {
    match std::env::var("CAIRN_BENCH_INDEX_SIZES") {
        Ok(s) if !s.trim().is_empty() => s
            .split(',')
            .map(|x| {
                x.trim()
                    .replace('_', "")
                    .parse()
                    .expect("CAIRN_BENCH_INDEX_SIZES: comma-separated counts")
            })
            .collect(),
        _ => vec![1_000_000, 10_000_000],
    }
}

fn label(n: usize) -> String {
    if n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// Lookups per measured iteration.
const LOOKUPS: usize = 100_000;

fn bench_one_index<T: BlobIndex>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    src: &SyntheticPacks,
    present: &[Id],
    absent: &[Id],
) {
    let n = src.entries.len();
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::new(format!("{name}/insert"), label(n)), |b| {
        b.iter(|| T::build(black_box(src)))
    });
    let ix = T::build(src);
    assert!(present.iter().all(|id| ix.has(id)), "{name}: lost an id");
    assert!(!absent.iter().any(|id| ix.has(id)), "{name}: false hit");
    g.throughput(Throughput::Elements(LOOKUPS as u64));
    g.bench_function(
        BenchmarkId::new(format!("{name}/lookup_present"), label(n)),
        |b| b.iter(|| present.iter().filter(|id| ix.has(black_box(id))).count()),
    );
    g.bench_function(
        BenchmarkId::new(format!("{name}/lookup_absent"), label(n)),
        |b| b.iter(|| absent.iter().filter(|id| ix.has(black_box(id))).count()),
    );
}

fn bench_index(c: &mut Criterion) {
    for n in index_sizes() {
        let src = SyntheticPacks::new(n, 42 + n as u64);
        // Present ids spread over the whole index; absent ids fresh.
        let mut rng = Rng(7);
        let present: Vec<Id> = (0..LOOKUPS)
            .map(|_| src.entries[rng.below(n as u64) as usize].id)
            .collect();
        let absent: Vec<Id> = (0..LOOKUPS).map(|_| rng.id()).collect();
        let mut g = c.benchmark_group("index");
        configure(&mut g);
        // Building 10M entries takes seconds: one iteration per sample.
        g.sampling_mode(SamplingMode::Flat);
        bench_one_index::<BlobSet>(&mut g, "BlobSet", &src, &present, &absent);
        bench_one_index::<Index>(&mut g, "Index", &src, &present, &absent);
        g.finish();
    }
}

criterion_group!(
    benches,
    bench_chunker,
    bench_blake3,
    bench_zstd,
    bench_aead,
    bench_blob,
    bench_pack,
    bench_index
);
criterion_main!(benches);
