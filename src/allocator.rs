//! A cache of small freed blocks in front of the C library's allocator, for the static musl
//! build. musl's `malloc` takes one lock for the whole process: with the async workers, the
//! store's applier and fjall's worker all allocating at once, the static build spent about
//! twice the CPU per order of the glibc build (README, "Allocator arenas").
//!
//! Freed blocks of up to [`LARGEST`] bytes go onto free lists kept per size class in a few
//! shards; threads are dealt to the shards in turn as they first allocate, and each takes its
//! blocks from, and gives them back to, its shard, so the threads that allocate most rarely
//! meet. A shard is taken with a `try_lock`: when another
//! thread holds it, the block simply goes to (or comes from) the C library, so nothing ever
//! waits here. A shard keeps at most [`KEPT_BYTES_PER_CLASS`] of each class, so the cache holds
//! 9 MiB at most whatever the load (8 shards, 18 classes), and memory freed in one shard is used
//! by the next thread of that shard.
//!
//! Every block of a class is asked of the C library at the class's full size, by `alloc` and
//! by `realloc` alike, so any block of a class can serve any request of that class. Requests
//! aligned to more than [`ALIGN`] bytes go straight to the C library.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, UnsafeCell};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The alignment every C `malloc` gives (16 bytes on 64-bit targets).
const ALIGN: usize = 16;
/// The block sizes cached, in bytes: multiples of [`ALIGN`].
const CLASSES: [usize; 18] = [
    16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192,
];
/// The largest size cached.
const LARGEST: usize = CLASSES[CLASSES.len() - 1];
/// The class of a size, by its number of [`ALIGN`]-byte steps rounded up: a lookup on every
/// `alloc` and `dealloc` instead of a walk over the classes.
const CLASS_BY_STEPS: [u8; LARGEST / ALIGN + 1] = {
    let mut table = [0u8; LARGEST / ALIGN + 1];
    let (mut steps, mut class) = (0, 0);
    while steps < table.len() {
        while CLASSES[class] < steps * ALIGN {
            class += 1;
        }
        table[steps] = class as u8;
        steps += 1;
    }
    table
};
/// Bytes of blocks kept per class in one shard (4,096 blocks of 16 bytes, 8 of 8 KiB).
const KEPT_BYTES_PER_CLASS: usize = 64 * 1024;
/// Shards: more than the threads that allocate all the time on the machines shopstream is for.
const SHARDS: usize = 8;

/// The allocator: [`System`] behind the cache.
pub struct SmallBlockCache {
    shards: [Shard; SHARDS],
    next_shard: AtomicUsize,
}

/// One shard's free lists. Aligned to a cache line so that two shards never share one.
#[repr(align(64))]
struct Shard {
    locked: AtomicBool,
    lists: UnsafeCell<[FreeList; CLASSES.len()]>,
}

/// Freed blocks of one class, linked through their first bytes.
#[derive(Clone, Copy)]
struct FreeList {
    head: *mut u8,
    len: usize,
}

// SAFETY: a shard's lists are only touched by the thread that holds its `locked` flag.
unsafe impl Sync for SmallBlockCache {}

thread_local! {
    /// This thread's shard, chosen on its first allocation. No destructor: nothing to register
    /// (registering one would allocate, from inside the allocator).
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl SmallBlockCache {
    pub const fn new() -> Self {
        const EMPTY: FreeList = FreeList {
            head: ptr::null_mut(),
            len: 0,
        };
        Self {
            shards: [const {
                Shard {
                    locked: AtomicBool::new(false),
                    lists: UnsafeCell::new([EMPTY; CLASSES.len()]),
                }
            }; SHARDS],
            next_shard: AtomicUsize::new(0),
        }
    }

    /// The thread's shard (threads are dealt out in turn as they first allocate).
    fn shard(&self) -> &Shard {
        let index = SHARD
            .try_with(|shard| {
                if shard.get() == usize::MAX {
                    shard.set(self.next_shard.fetch_add(1, Ordering::Relaxed) % SHARDS);
                }
                shard.get()
            })
            // The thread's locals are gone (it is exiting): any shard will do.
            .unwrap_or(0);
        &self.shards[index]
    }

    /// A block of `class` from this thread's shard, if it has one and is free to take.
    fn take(&self, class: usize) -> Option<*mut u8> {
        let shard = self.shard();
        let _held = shard.try_hold()?;
        // SAFETY: the shard is held; its lists hold blocks of their class only, each linked
        // to the next through its first bytes (see `give`).
        unsafe {
            let list = &mut (*shard.lists.get())[class];
            if list.head.is_null() {
                return None;
            }
            let block = list.head;
            list.head = block.cast::<*mut u8>().read();
            list.len -= 1;
            Some(block)
        }
    }

    /// Keeps a freed block of `class`; `false` when the shard is busy or full.
    ///
    /// # Safety
    /// `block` is a block of `CLASSES[class]` bytes from `System`, no longer in use.
    unsafe fn give(&self, class: usize, block: *mut u8) -> bool {
        let shard = self.shard();
        let Some(_held) = shard.try_hold() else {
            return false;
        };
        // SAFETY: the shard is held; the block has at least 16 bytes and 16-byte alignment,
        // room for the link.
        unsafe {
            let list = &mut (*shard.lists.get())[class];
            if list.len * CLASSES[class] >= KEPT_BYTES_PER_CLASS {
                return false;
            }
            block.cast::<*mut u8>().write(list.head);
            list.head = block;
            list.len += 1;
        }
        true
    }
}

impl Default for SmallBlockCache {
    fn default() -> Self {
        Self::new()
    }
}

impl Shard {
    fn try_hold(&self) -> Option<Held<'_>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Held(self))
    }
}

/// A held shard, let go when dropped.
struct Held<'a>(&'a Shard);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.locked.store(false, Ordering::Release);
    }
}

/// The class that serves `layout`, if it is cached.
fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() > ALIGN || layout.size() > LARGEST {
        return None;
    }
    Some(usize::from(CLASS_BY_STEPS[layout.size().div_ceil(ALIGN)]))
}

/// The layout a block of `class` is asked of [`System`] with.
fn class_layout(class: usize) -> Layout {
    // The sizes are non-zero multiples of the alignment, a power of two.
    Layout::from_size_align(CLASSES[class], ALIGN).expect("class sizes are valid layouts")
}

// SAFETY: every block handed out is a live `System` block at least as large as asked and
// aligned as asked (classes only serve alignments up to 16, which `System` gives at those
// sizes); a block is cached only once freed, and handed out once per free.
unsafe impl GlobalAlloc for SmallBlockCache {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            Some(class) => match self.take(class) {
                Some(block) => block,
                // SAFETY: a valid, non-zero layout.
                None => unsafe { System.alloc(class_layout(class)) },
            },
            // SAFETY: the caller's layout, passed on.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class_of(layout) {
            Some(class) => {
                // SAFETY: a block of this layout's class came from `alloc` or `realloc`, both
                // of which ask `System` for the class's full size.
                if !unsafe { self.give(class, block) } {
                    unsafe { System.dealloc(block, class_layout(class)) }
                }
            }
            // SAFETY: a block that was never cached, freed with its own layout.
            None => unsafe { System.dealloc(block, layout) },
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_class = class_of(layout);
        // SAFETY (of the layout): the caller guarantees `new_size` with this alignment is valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new_class = class_of(new_layout);
        if old_class.is_some() && old_class == new_class {
            // The block already has the class's full size.
            return block;
        }
        if layout.align() > ALIGN {
            // SAFETY: never cached; the caller's arguments, passed on.
            return unsafe { System.realloc(block, layout, new_size) };
        }
        // The C library's realloc, asked for the new class's full size when the result is to
        // be cached on free, so that every block of a class has the class's size.
        let asked = new_class.map_or(new_size, |class| CLASSES[class]);
        let old = old_class.map_or(layout, class_layout);
        // SAFETY: `block` is a live `System` block of layout `old`; `asked` is non-zero and,
        // rounded up to the alignment, no larger than the caller's valid size or a class size.
        unsafe { System.realloc(block, old, asked) }
    }
}

/// Hands the pages of freed memory back to the system. glibc keeps what a busy spell freed
/// inside its arenas (a replay's write buffers, say: 50 to 100 MiB on the history benchmark)
/// and returns only what sits at the top of each; `malloc_trim` releases the free pages in
/// the middle too. It walks every arena, under each arena's lock in turn (6 to 10 ms with a
/// 150 MiB heap, timed once in a build instrumented for it), and the pages it releases fault
/// in again when they are reused: called every
/// second whatever the size it cost about a fifth more CPU per order under a steady write
/// load, so it runs once the store has gone quiet, and under load only while the resident size
/// is above the ceiling ([`ResidentCeiling`]). Elsewhere (the static musl build's
/// allocator returns freed pages itself) it does nothing.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists, under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The resident size above which freed memory is handed back, in bytes (0: no ceiling).
static CEILING: AtomicU64 = AtomicU64::new(0);
/// How many times the resident size was found above the ceiling and memory handed back.
static TRIMS: AtomicU64 = AtomicU64::new(0);
/// How often the resident size is looked at.
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// How much the resident size must grow after a hand-back that left it above the ceiling
/// before the next: a hand-back that finds little to release costs its walk for nothing.
const REGROWTH: u64 = 8 << 20;
/// The longest wait between looks: after hand-backs that released less than [`REGROWTH`]
/// (what is resident is in use: a replay's block cache and write buffers), the wait doubles up
/// to this.
const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(8);

/// Sets the resident size, in bytes, above which [`ResidentCeiling::look`] hands freed memory
/// back. Several servers in one process (the tests) share the largest ceiling asked for. Only
/// glibc builds have one: musl's allocator returns freed pages itself.
pub fn set_resident_ceiling(ceiling: u64) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    CEILING.fetch_max(ceiling, Ordering::Relaxed);
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = ceiling;
}

/// The ceiling in force, in bytes (0 when none was set, and in builds that keep none).
pub fn resident_ceiling() -> u64 {
    CEILING.load(Ordering::Relaxed)
}

/// How many times freed memory was handed back because the resident size passed the ceiling.
pub fn ceiling_trims() -> u64 {
    TRIMS.load(Ordering::Relaxed)
}

/// Keeps the resident size under the ceiling as far as freed memory is what holds it up.
/// Under a write load glibc's arenas keep every page a flushed write buffer or a finished
/// compaction freed, and the resident size creeps 30 to 60 MiB above what is in use (README,
/// "Memory"). The store's applier calls [`ResidentCeiling::look`] when it finds nothing to
/// apply: there a hand-back delays no commit that was ready. On a thread of its own it took
/// the arenas' locks while the writers allocated, and cost a quarter of the write rate on the
/// history benchmark. Hand-backs that find little are spaced out (`next_wait`): at every
/// 8 MiB of growth they cost a replay of 1,000,000 orders a fifth of its rate (the pages they
/// released faulted in again at once) for 10 MiB less at its peak.
#[derive(Debug, Default)]
pub struct ResidentCeiling {
    last_look: Option<std::time::Instant>,
    /// The resident size the last hand-back left: when what is in use is itself above the
    /// ceiling, the next one waits until the size has grown by [`REGROWTH`] since.
    left_by_last: u64,
    /// The wait between looks ([`next_wait`]); zero until the first hand-back.
    wait: Duration,
}

impl ResidentCeiling {
    /// Looks at the resident size (at most every 250 ms, less often while hand-backs find
    /// little) and hands freed memory back when it is above the ceiling. Returns whether it did.
    pub fn look(&mut self) -> bool {
        let ceiling = resident_ceiling();
        let wait = self.wait.max(LOOK_EVERY);
        if ceiling == 0 || self.last_look.is_some_and(|at| at.elapsed() < wait) {
            return false;
        }
        self.last_look = Some(std::time::Instant::now());
        let Some(resident) = resident_bytes() else {
            return false;
        };
        if !self.should_release(resident, ceiling) {
            return false;
        }
        release_free_memory();
        TRIMS.fetch_add(1, Ordering::Relaxed);
        self.released(resident, resident_bytes().unwrap_or(resident));
        true
    }

    /// Whether to hand freed memory back at this resident size. Under the ceiling the pace
    /// starts afresh: whatever brought the size down (the hand-back once the store is quiet,
    /// say), the next time it passes the ceiling is worth a hand-back at once.
    fn should_release(&mut self, resident: u64, ceiling: u64) -> bool {
        if ceiling == 0 || resident <= ceiling {
            self.left_by_last = 0;
            self.wait = Duration::ZERO;
            return false;
        }
        resident >= self.left_by_last.saturating_add(REGROWTH)
    }

    /// Notes what a hand-back left, and how long to wait before the next look.
    fn released(&mut self, before: u64, left: u64) {
        self.wait = next_wait(self.wait.max(LOOK_EVERY), before.saturating_sub(left));
        self.left_by_last = left;
    }
}

/// The wait before the next look after a hand-back that released `released` bytes: back to
/// [`LOOK_EVERY`] when it was worth its walk, twice as long (at most [`LOOK_AT_LEAST_EVERY`])
/// when it found little.
fn next_wait(wait: Duration, released: u64) -> Duration {
    if released >= REGROWTH {
        LOOK_EVERY
    } else {
        (wait * 2).min(LOOK_AT_LEAST_EVERY)
    }
}

/// The resident set size, from `/proc/self/statm` (its second field, in pages).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(rustix::param::page_size() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_handed_back_above_the_ceiling_once_it_has_grown_since_the_last_time() {
        let mib = 1 << 20;
        let mut ceiling = ResidentCeiling::default();
        assert!(!ceiling.should_release(200 * mib, 0), "no ceiling set");
        assert!(!ceiling.should_release(100 * mib, 112 * mib));
        assert!(!ceiling.should_release(112 * mib, 112 * mib));
        assert!(ceiling.should_release(160 * mib, 112 * mib));
        // The hand-back found little: 150 MiB are in use. Not again until 8 MiB more, and
        // the looks are spaced out.
        ceiling.released(155 * mib, 150 * mib);
        assert_eq!(ceiling.wait, Duration::from_millis(500));
        assert!(!ceiling.should_release(150 * mib, 112 * mib));
        assert!(!ceiling.should_release(157 * mib, 112 * mib));
        assert!(ceiling.should_release(158 * mib, 112 * mib));
        // Once under the ceiling (the hand-back of a quiet store, say), the next pass above it
        // is handed back at once, at the first pace.
        assert!(!ceiling.should_release(100 * mib, 112 * mib));
        assert_eq!(ceiling.wait, Duration::ZERO);
        assert!(ceiling.should_release(113 * mib, 112 * mib));
        // A hand-back that released much keeps the first pace.
        ceiling.released(190 * mib, 120 * mib);
        assert_eq!(ceiling.wait, LOOK_EVERY);
    }

    #[test]
    fn hand_backs_that_find_little_are_spaced_out_and_one_that_finds_much_resets_the_pace() {
        let mib = 1 << 20;
        let mut wait = LOOK_EVERY;
        let mut waits = Vec::new();
        for _ in 0..7 {
            wait = next_wait(wait, mib);
            waits.push(wait.as_millis());
        }
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(next_wait(wait, 8 * mib), LOOK_EVERY);
        assert_eq!(next_wait(LOOK_EVERY, 40 * mib), LOOK_EVERY);
    }

    #[test]
    fn the_resident_size_is_read_from_proc() {
        let resident = resident_bytes().expect("/proc/self/statm");
        // A test process holds at least its own code, and far less than its address space.
        assert!(resident > 1 << 20, "{resident}");
        assert!(resident < 1 << 40, "{resident}");
    }

    #[test]
    fn sizes_go_to_the_smallest_class_that_holds_them_and_large_or_aligned_ones_bypass() {
        let class = |size, align| class_of(Layout::from_size_align(size, align).unwrap());
        assert_eq!(class(1, 1), Some(0));
        assert_eq!(class(16, 8), Some(0));
        assert_eq!(class(17, 8), Some(1));
        assert_eq!(class(1024, 16), Some(11));
        assert_eq!(class(1025, 8), Some(12));
        assert_eq!(class(8192, 16), Some(CLASSES.len() - 1));
        assert_eq!(class(8193, 8), None);
        assert_eq!(class(64, 32), None);
        // The table gives every size the smallest class that holds it.
        for size in 1..=LARGEST {
            let smallest = CLASSES.iter().position(|&c| c >= size);
            assert_eq!(class(size, 1), smallest, "size {size}");
        }
    }

    /// Fills a block with a byte that names its owner, to catch two owners of one block.
    fn fill(block: *mut u8, size: usize, byte: u8) {
        unsafe { ptr::write_bytes(block, byte, size) }
    }

    fn holds(block: *mut u8, size: usize, byte: u8) -> bool {
        unsafe { std::slice::from_raw_parts(block, size) }
            .iter()
            .all(|&b| b == byte)
    }

    #[test]
    fn freed_blocks_are_reused_whole_and_never_handed_out_twice() {
        let cache = SmallBlockCache::new();
        let layout = Layout::from_size_align(100, 8).unwrap();
        unsafe {
            let first = cache.alloc(layout);
            fill(first, 100, 1);
            cache.dealloc(first, layout);
            // The same class, a different size within it: the cached block comes back.
            let smaller = Layout::from_size_align(97, 4).unwrap();
            let again = cache.alloc(smaller);
            assert_eq!(again, first);
            let other = cache.alloc(smaller);
            assert_ne!(other, again);
            fill(again, 97, 2);
            fill(other, 97, 3);
            assert!(holds(again, 97, 2) && holds(other, 97, 3));
            cache.dealloc(again, smaller);
            cache.dealloc(other, smaller);
        }
    }

    #[test]
    fn a_shard_keeps_a_bounded_number_of_blocks_per_class() {
        let cache = SmallBlockCache::new();
        let layout = Layout::from_size_align(32, 8).unwrap();
        unsafe {
            let kept = KEPT_BYTES_PER_CLASS / 32;
            let blocks: Vec<*mut u8> = (0..kept + 10).map(|_| cache.alloc(layout)).collect();
            for &block in &blocks {
                cache.dealloc(block, layout);
            }
            let shard = cache.shard();
            let _held = shard.try_hold().unwrap();
            assert_eq!((*shard.lists.get())[1].len, kept);
        }
    }

    #[test]
    fn realloc_keeps_the_contents_across_classes_and_sizes() {
        let cache = SmallBlockCache::new();
        unsafe {
            let mut layout = Layout::from_size_align(10, 8).unwrap();
            let mut block = cache.alloc(layout);
            fill(block, 10, 7);
            // Within a class, across classes, past the largest class and back down.
            for new_size in [12, 40, 1000, 5000, 300, 16, 20_000, 2048, 8] {
                block = cache.realloc(block, layout, new_size);
                let kept = layout.size().min(new_size);
                assert!(holds(block, kept, 7), "contents lost going to {new_size}");
                fill(block, new_size, 7);
                layout = Layout::from_size_align(new_size, 8).unwrap();
            }
            cache.dealloc(block, layout);
            // Over-aligned blocks bypass the cache both ways.
            let aligned = Layout::from_size_align(64, 64).unwrap();
            let block = cache.alloc(aligned);
            assert_eq!(block as usize % 64, 0);
            let grown = cache.realloc(block, aligned, 128);
            assert_eq!(grown as usize % 64, 0);
            cache.dealloc(grown, Layout::from_size_align(128, 64).unwrap());
        }
    }

    #[test]
    fn threads_allocating_and_freeing_each_others_blocks_never_share_one() {
        static CACHE: SmallBlockCache = SmallBlockCache::new();
        let (send, receive) = std::sync::mpsc::sync_channel::<(usize, usize, u8)>(256);
        let consumer = std::thread::spawn(move || {
            // Frees blocks another thread allocated, checking nobody wrote into them.
            for (address, size, byte) in receive {
                let block = address as *mut u8;
                assert!(
                    holds(block, size, byte),
                    "a block changed hands while in use"
                );
                unsafe { CACHE.dealloc(block, Layout::from_size_align(size, 8).unwrap()) };
            }
        });
        let producers: Vec<_> = (0..4u8)
            .map(|t| {
                let send = send.clone();
                std::thread::spawn(move || {
                    let mut live = Vec::new();
                    for i in 0..20_000usize {
                        let size = 1 + (i * 37 + usize::from(t) * 11) % 9000;
                        let byte = (i % 250) as u8 + 1;
                        let layout = Layout::from_size_align(size, 8).unwrap();
                        let block = unsafe { CACHE.alloc(layout) };
                        assert!(!block.is_null());
                        fill(block, size, byte);
                        if i % 3 == 0 {
                            send.send((block as usize, size, byte)).unwrap();
                        } else {
                            live.push((block, size, byte));
                        }
                        if live.len() > 64 {
                            let (block, size, byte) = live.swap_remove(i % live.len());
                            assert!(
                                holds(block, size, byte),
                                "a block changed hands while in use"
                            );
                            unsafe {
                                CACHE.dealloc(block, Layout::from_size_align(size, 8).unwrap())
                            };
                        }
                    }
                    for (block, size, byte) in live {
                        assert!(
                            holds(block, size, byte),
                            "a block changed hands while in use"
                        );
                        unsafe { CACHE.dealloc(block, Layout::from_size_align(size, 8).unwrap()) };
                    }
                })
            })
            .collect();
        drop(send);
        for producer in producers {
            producer.join().unwrap();
        }
        consumer.join().unwrap();
    }
}
