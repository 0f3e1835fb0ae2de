//! The resident-size ceiling hands freed memory back to the system (glibc builds): memory a
//! busy spell allocated and freed in the middle of an arena stays resident until then.
//! Alone in its own test binary, so that no other test's allocations move the figures.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn freed_memory_above_the_ceiling_goes_back_to_the_system() {
    use std::time::Duration;

    use shopstream::allocator::{
        ResidentCeiling, ceiling_trims, resident_bytes, set_resident_ceiling,
    };

    const MIB: u64 = 1 << 20;
    let before = resident_bytes().expect("/proc/self/statm");

    // 96 MiB in blocks small enough for the arena (not mmap), written so their pages are
    // resident, then all freed but the last: it pins the top of the arena, so glibc cannot
    // give the free space below it back on its own.
    let held = std::thread::spawn(|| {
        let mut blocks: Vec<Vec<u8>> = (0..96 * 1024).map(|_| vec![1u8; 1000]).collect();
        let pin = blocks.pop().expect("one block");
        drop(blocks);
        pin
    })
    .join()
    .expect("the allocating thread ends");
    let freed = resident_bytes().expect("/proc/self/statm");
    assert!(
        freed > before + 64 * MIB,
        "the freed blocks are still resident before any trim ({} -> {} MiB)",
        before / MIB,
        freed / MIB
    );

    let mut ceiling = ResidentCeiling::default();
    assert!(!ceiling.look(), "no ceiling set yet");
    set_resident_ceiling(before + 32 * MIB);
    assert!(ceiling.look(), "above the ceiling: memory is handed back");
    let now = resident_bytes().expect("/proc/self/statm");
    assert!(
        now < before + 32 * MIB,
        "resident {} MiB, {} MiB before the blocks were allocated",
        now / MIB,
        before / MIB
    );
    assert_eq!(ceiling_trims(), 1);
    // Under it now, and looked at again only after a quarter of a second.
    assert!(!ceiling.look());
    std::thread::sleep(Duration::from_millis(300));
    assert!(!ceiling.look(), "under the ceiling: nothing to do");
    assert_eq!(ceiling_trims(), 1);
    drop(held);
}
