//! Histogram samples do not pile up in memory between scrapes: the recorder keeps every sample
//! until it is drained, and a process nobody scrapes (no Prometheus, or a long scrape interval)
//! must still drain them. Memory is counted by a global allocator of this test binary, so this
//! file holds this one test only (another test running in parallel would count too).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

#[test]
fn histogram_samples_are_drained_without_a_scrape() {
    let installed = Instant::now();
    let _metrics = authstack_telemetry::metrics();
    let histogram = metrics::histogram!("telemetry_upkeep_test_seconds");
    let before = live();
    // 1M samples: 16 MB if nothing drains them.
    for i in 0..1_000_000u32 {
        histogram.record(f64::from(i % 1000) / 1e6);
    }
    let piled = live() - before;
    // They pile up until the first upkeep (a slow machine may have drained some already).
    if installed.elapsed() < authstack_telemetry::METRICS_UPKEEP_INTERVAL {
        assert!(piled > 8_000_000, "the samples took only {piled} bytes");
    }
    // Nothing renders; the recorder's upkeep must drain them within a few intervals while the
    // process goes on recording (a trickle: drained blocks are freed by the recording threads'
    // epoch-based reclamation, as in a serving process).
    let deadline = Instant::now() + authstack_telemetry::METRICS_UPKEEP_INTERVAL * 3;
    while live() - before > 1_000_000 {
        for i in 0..1000u32 {
            histogram.record(f64::from(i) / 1e6);
        }
        assert!(
            Instant::now() < deadline,
            "histogram samples still hold {} bytes after {:?} without a scrape",
            live() - before,
            authstack_telemetry::METRICS_UPKEEP_INTERVAL * 3
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
