//! `cargo bench --manifest-path plugins/Cargo.toml -p fasten-ccda`: converts each example
//! document in `../shared/testdata/ccda` and prints, per document, the resources by type, the
//! warnings, the conversion time (median of several runs) and the peak heap the conversion took
//! (a counting allocator). Prints figures; asserts nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The system allocator, counting the bytes live and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const RUNS: usize = 9;

/// Transfer_Summary with its sections repeated `times` over: the size of the multi-MB summaries
/// large portals produce.
fn enlarged(bytes: &[u8], times: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let (Some(start), Some(end)) = (
        text.find("<structuredBody>"),
        text.find("</structuredBody>"),
    ) else {
        return bytes.to_vec();
    };
    let body = &text[start + "<structuredBody>".len()..end];
    let mut out = String::with_capacity(text.len() * times);
    out.push_str(&text[..start + "<structuredBody>".len()]);
    for _ in 0..times {
        out.push_str(body);
    }
    out.push_str(&text[end..]);
    out.into_bytes()
}

fn main() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/ccda");
    let mut paths: Vec<_> = std::fs::read_dir(&folder)
        .expect("../shared/testdata/ccda beside the checkout")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    paths.sort();
    println!("document                        KiB  resources  warnings  median ms  peak heap MiB");
    let mut inputs: Vec<(String, Vec<u8>)> = paths
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(p).unwrap())
        })
        .collect();
    if let Some((_, transfer)) = inputs.iter().find(|(n, _)| n == "Transfer_Summary.xml") {
        let big = enlarged(transfer, 20);
        inputs.push(("Transfer_Summary x20 (made)".into(), big));
    }
    for (name, bytes) in inputs {
        let mut times = Vec::with_capacity(RUNS);
        let mut peak = 0;
        let mut last = None;
        for _ in 0..RUNS {
            let before = LIVE.load(Ordering::Relaxed);
            PEAK.store(before, Ordering::Relaxed);
            let started = Instant::now();
            let conversion = fasten_ccda::convert(&bytes).unwrap();
            // The resources as the plugin emits them: JSON text.
            let texts: Vec<String> = conversion.resources.iter().map(|r| r.to_string()).collect();
            times.push(started.elapsed());
            peak = PEAK.load(Ordering::Relaxed) - before;
            drop(texts);
            last = Some(conversion);
        }
        times.sort();
        let conversion = last.unwrap();
        println!(
            "{name:<30} {:>4} {:>10} {:>9} {:>10.2} {:>14.1}",
            bytes.len() / 1024,
            conversion.resources.len(),
            conversion.warnings.len(),
            times[RUNS / 2].as_secs_f64() * 1000.0,
            peak as f64 / (1024.0 * 1024.0)
        );
        let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
        for resource in &conversion.resources {
            *by_type
                .entry(resource["resourceType"].as_str().unwrap_or("?"))
                .or_default() += 1;
        }
        let types: Vec<String> = by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
        println!("    {}", types.join(", "));
    }
}
