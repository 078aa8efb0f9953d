//! Peak memory of malformed inputs: each malformed archive or IDX file is refused having taken at
//! most about twice the heap its valid counterpart takes to load (the bound), whatever
//! size its headers claim or its compressed entries expand to.
//!
//! A separate test binary, because it replaces the global allocator with one that counts live
//! bytes and their peak, and the tests take turns (one lock) so that no other test's allocations
//! are counted. Hand-written rather than `dhat` (one profiler per process, no peak reset) or
//! `peak_alloc` (no lock across tests): 40 lines, and the measurement is the point.
#![allow(unsafe_code)]

#[path = "it/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use fixtures::{gz, idx_images, jpeg_claiming, tiny_entries, write_zip_with};
use gtap_data::{load_tiny_imagenet, parse_idx_images, TinyImagenetConfig, TinyImagenetSource};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

// SAFETY: every call is forwarded to `System` unchanged; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // A moving realloc holds both blocks for a moment: count the new one first.
            grew(new_size);
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Heap bytes `f` holds at its peak above what was live when it started (its result dropped).
fn peak_of<T>(f: impl FnOnce() -> T) -> usize {
    let start = LIVE.load(Ordering::SeqCst);
    PEAK.store(start, Ordering::SeqCst);
    drop(f());
    PEAK.load(Ordering::SeqCst) - start
}

fn assert_within_twice(case: &str, malformed: usize, valid: usize) {
    eprintln!("{case}: peak {malformed} bytes, valid input {valid} bytes");
    assert!(
        malformed <= 2 * valid,
        "{case}: peak {malformed} bytes, more than twice the valid input's {valid}"
    );
}

const ROOT: &str = "tiny-imagenet-200/";
/// Training images per class: enough that the valid load (≈ 5 MB of pixels and floats) dwarfs
/// fixed buffers, and one capped entry (1 MiB) is well inside the bound.
const PER_CLASS: usize = 60;

fn load(path: &Path) -> Result<gtap_data::TinyImagenetData, gtap_data::DataError> {
    let cfg = TinyImagenetConfig {
        probe_size: 10,
        ..Default::default()
    };
    load_tiny_imagenet(&TinyImagenetSource::Zip(path.to_owned()), &cfg)
}

/// Peak of loading the zip `entries` make (written with `deflate` choosing compressed entries,
/// then `patch` applied to its bytes), asserting whether it loads.
fn zip_peak(
    entries: &[(String, Vec<u8>)],
    deflate: impl Fn(&str) -> bool,
    patch: impl FnOnce(&mut Vec<u8>),
    loads: bool,
) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("subset.zip");
    write_zip_with(&path, entries, deflate);
    let mut bytes = std::fs::read(&path).unwrap();
    patch(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    let mut outcome = None;
    let peak = peak_of(|| outcome = Some(load(&path).map(|_| ()).map_err(|e| e.to_string())));
    match outcome.unwrap() {
        Ok(()) => assert!(loads, "a malformed archive loaded"),
        Err(e) => assert!(!loads, "the valid archive failed: {e}"),
    }
    peak
}

fn image_name(class: &str, i: usize) -> String {
    format!("{ROOT}train/{class}/images/{class}_{i}.JPEG")
}

fn replace(entries: &mut [(String, Vec<u8>)], name: &str, bytes: Vec<u8>) {
    let entry = entries.iter_mut().find(|(n, _)| n == name).unwrap();
    entry.1 = bytes;
}

#[test]
fn malformed_archives_peak_within_twice_the_valid_one() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let valid_entries = tiny_entries(PER_CLASS, |_| {});
    let valid = zip_peak(&valid_entries, |_| false, |_| {}, true);
    assert!(
        valid > 1 << 20,
        "the valid load is large enough to compare: {valid}"
    );

    let victim = image_name("n02", 7);
    let huge_declared = zip_peak(
        &valid_entries,
        |_| false,
        |bytes| {
            // The central directory's uncompressed size of one image, patched to 4 GiB − 16.
            let at = (0..bytes.len() - 4)
                .filter(|&i| bytes[i..i + 4] == [0x50, 0x4b, 0x01, 0x02])
                .find(|&i| bytes[i + 46..].starts_with(victim.as_bytes()))
                .unwrap();
            bytes[at + 24..at + 28].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        },
        false,
    );
    assert_within_twice("entry declaring 4 GiB", huge_declared, valid);

    let mut bomb = valid_entries.clone();
    replace(&mut bomb, &victim, vec![0u8; 64 << 20]);
    // Built and compressed before the measurement starts; only loading is counted.
    let deflate_bomb = zip_peak(&bomb, |n| n == victim, |_| {}, false);
    drop(bomb);
    assert_within_twice("64 MiB deflate bomb", deflate_bomb, valid);

    let mut big = valid_entries.clone();
    replace(&mut big, &victim, jpeg_claiming(13000, 13000));
    assert_within_twice(
        "JPEG header of 13000x13000",
        zip_peak(&big, |_| false, |_| {}, false),
        valid,
    );

    let mut truncated = valid_entries.clone();
    let cut = {
        let whole = &truncated.iter().find(|(n, _)| *n == victim).unwrap().1;
        whole[..whole.len() / 2].to_vec()
    };
    replace(&mut truncated, &victim, cut);
    assert_within_twice(
        "truncated JPEG",
        zip_peak(&truncated, |_| false, |_| {}, false),
        valid,
    );

    let mut twice_listed = valid_entries.clone();
    replace(
        &mut twice_listed,
        &format!("{ROOT}wnids.txt"),
        b"n01\nn02\nn01\n".to_vec(),
    );
    assert_within_twice(
        "class listed twice",
        zip_peak(&twice_listed, |_| false, |_| {}, false),
        valid,
    );
}

#[test]
fn a_link_cycle_in_an_extracted_folder_peaks_within_twice_the_valid_folder() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let extracted = dir.path().join("extracted");
    for (name, bytes) in tiny_entries(PER_CLASS, |_| {}) {
        let path = extracted.join(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
    }
    let root = extracted.join(ROOT);
    let cfg = TinyImagenetConfig {
        probe_size: 10,
        ..Default::default()
    };
    let source = TinyImagenetSource::Dir(root.clone());
    let valid = peak_of(|| load_tiny_imagenet(&source, &cfg).unwrap());
    // A link back to the root inside a class folder: walking it would never end.
    std::os::unix::fs::symlink(&root, root.join("train/n01/images/loop")).unwrap();
    let cyclic = peak_of(|| {
        let _ = load_tiny_imagenet(&source, &cfg);
    });
    assert_within_twice("folder with a link cycle", cyclic, valid);
}

#[test]
fn malformed_idx_files_peak_within_twice_the_valid_one() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (count, side) = (2000u32, 28u32);
    let pixels: Vec<u8> = (0..count * side * side).map(|i| (i % 251) as u8).collect();
    let valid_file = idx_images(count, side, side, &pixels);
    let origin = Path::new("images.idx");
    let valid = peak_of(|| parse_idx_images(valid_file.as_slice(), origin).unwrap());

    let claiming = |claimed: u32| {
        let mut bytes = valid_file.clone();
        bytes[4..8].copy_from_slice(&claimed.to_be_bytes());
        bytes
    };
    // Over the payload cap (refused from the header) and under it (truncated).
    for claimed in [4_000_000u32, 300_000] {
        let file = claiming(claimed);
        let peak = peak_of(|| parse_idx_images(file.as_slice(), origin).unwrap_err());
        assert_within_twice(&format!("header claiming {claimed} images"), peak, valid);
    }

    // A gzip whose payload runs on far past what its header declares.
    let mut long = valid_file.clone();
    long.resize(long.len() + (64 << 20), 0);
    let compressed = gz(&long);
    drop(long);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images.idx.gz");
    std::fs::write(&path, compressed).unwrap();
    let gz_valid_path = dir.path().join("valid.idx.gz");
    std::fs::write(&gz_valid_path, gz(&valid_file)).unwrap();
    let gz_valid = peak_of(|| gtap_data::read_idx_images_gz(&gz_valid_path).unwrap());
    let peak = peak_of(|| gtap_data::read_idx_images_gz(&path).unwrap_err());
    assert_within_twice("gzip running 64 MiB past its header", peak, gz_valid);
}

#[test]
fn the_allocator_counts() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let peak = peak_of(|| {
        let a = vec![1u8; 3 << 20];
        let b = vec![2u8; 1 << 20];
        a.len() + b.len()
    });
    assert!(
        peak.abs_diff(4 << 20) < 4096,
        "two live vectors of 3 and 1 MiB peak at 4 MiB: {peak}"
    );
    // A grown vector: the moving realloc briefly holds both blocks.
    let grown = peak_of(|| {
        let mut v = vec![0u8; 1 << 20];
        v.resize(3 << 20, 0);
        v
    });
    assert!(grown >= 3 << 20, "{grown}");
}
