//! `memcpy`, `memmove`, `memcmp` and `bcmp` for the static musl build, in place of musl's. musl's
//! `memcmp` compares byte by byte, and on x86_64 its `memcpy` starts a `rep movsq` for any
//! copy of 8 bytes or more and ends with a byte loop: the store's key comparisons (skip list,
//! merges) and its many small copies made them 15% (`memcpy`) and 7% (`memcmp`) of the
//! static build's samples in a replay, where glibc's vector versions take a few percent
//! (README, "The static musl build").
//!
//! The functions are exported under the C names only in musl builds (a statically linked
//! program's own definition is the one the linker keeps; `memmove` goes with `memcpy`, whose
//! code musl's shares). The bodies are plain Rust compiled everywhere, so the unit tests
//! check them, in the usual glibc test build, against glibc's through the slice operations
//! and against byte loops of their own. They are written without anything the compiler could
//! turn back into a call to the function being defined: fixed-size moves of at most 16 bytes
//! (at opt-level 0, a move of more than 32 bytes is a call to `memcpy`), a loop of four
//! 16-byte moves (never recognised as a copy idiom: each store's stride is not its size) and
//! `rep movsb` for large disjoint copies on x86_64; `objdump -dr` of the rlib shows no call to
//! `memcpy`, `memmove`, `memcmp` or `bcmp` in them, in release and in debug builds.
//! aarch64's musl `memcpy` is already an optimised one, so only the comparisons are replaced
//! there.

/// Copies `n` bytes from `src` to `dest`; correct for disjoint regions and when `dest` starts
/// before an overlapping `src`.
///
/// # Safety
/// As `memcpy`: both regions valid for `n` bytes.
#[inline(always)]
pub unsafe fn copy_forward(dest: *mut u8, src: *const u8, n: usize) {
    // Every branch reads all it moves before it writes, except the loop, whose reads stay
    // ahead of its writes when `dest` starts before `src`.
    unsafe {
        if n <= 16 {
            if n >= 8 {
                let head = src.cast::<u64>().read_unaligned();
                let tail = src.add(n - 8).cast::<u64>().read_unaligned();
                dest.cast::<u64>().write_unaligned(head);
                dest.add(n - 8).cast::<u64>().write_unaligned(tail);
            } else if n >= 4 {
                let head = src.cast::<u32>().read_unaligned();
                let tail = src.add(n - 4).cast::<u32>().read_unaligned();
                dest.cast::<u32>().write_unaligned(head);
                dest.add(n - 4).cast::<u32>().write_unaligned(tail);
            } else if n > 0 {
                let (first, middle, last) = (*src, *src.add(n / 2), *src.add(n - 1));
                *dest = first;
                *dest.add(n / 2) = middle;
                *dest.add(n - 1) = last;
            }
            return;
        }
        if n <= 32 {
            let head = load16(src);
            let tail = load16(src.add(n - 16));
            store16(dest, head);
            store16(dest.add(n - 16), tail);
            return;
        }
        if n <= 64 {
            let a = load16(src);
            let b = load16(src.add(16));
            let c = load16(src.add(n - 32));
            let d = load16(src.add(n - 16));
            store16(dest, a);
            store16(dest.add(16), b);
            store16(dest.add(n - 32), c);
            store16(dest.add(n - 16), d);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if n >= LARGE_COPY && disjoint(dest, src, n) {
            // SAFETY: the direction flag is clear at every function call (System V ABI).
            std::arch::asm!(
                "rep movsb",
                inout("rcx") n => _,
                inout("rdi") dest => _,
                inout("rsi") src => _,
                options(nostack, preserves_flags)
            );
            return;
        }
        // The last 64 bytes are read before anything is written: the loop's writes may reach
        // them when the regions overlap. Four values, never an array: at opt-level 0 a move
        // of more than 32 bytes is itself a call to `memcpy`.
        let t0 = load16(src.add(n - 64));
        let t1 = load16(src.add(n - 48));
        let t2 = load16(src.add(n - 32));
        let t3 = load16(src.add(n - 16));
        let mut i = 0;
        while i + 64 < n {
            move_64(dest.add(i), src.add(i));
            i += 64;
        }
        store16(dest.add(n - 64), t0);
        store16(dest.add(n - 48), t1);
        store16(dest.add(n - 32), t2);
        store16(dest.add(n - 16), t3);
    }
}

#[inline(always)]
unsafe fn load16(p: *const u8) -> u128 {
    unsafe { p.cast::<u128>().read_unaligned() }
}

#[inline(always)]
unsafe fn store16(p: *mut u8, v: u128) {
    unsafe { p.cast::<u128>().write_unaligned(v) }
}

/// Moves 64 bytes, all read before any is written, as four 16-byte values.
#[inline(always)]
unsafe fn move_64(dest: *mut u8, src: *const u8) {
    unsafe {
        let a = load16(src);
        let b = load16(src.add(16));
        let c = load16(src.add(32));
        let d = load16(src.add(48));
        store16(dest, a);
        store16(dest.add(16), b);
        store16(dest.add(32), c);
        store16(dest.add(48), d);
    }
}

/// Copies `n` bytes from `src` to `dest` from the end down, for a `dest` that starts inside
/// `src` (what `memmove` cannot copy forward).
///
/// # Safety
/// As `memmove`: both regions valid for `n` bytes.
#[inline(always)]
pub unsafe fn copy_backward(dest: *mut u8, src: *const u8, n: usize) {
    unsafe {
        if n <= 64 {
            // Those branches read everything before they write.
            copy_forward(dest, src, n);
            return;
        }
        // The first 64 bytes are read before anything is written, as the tail is forward
        // (four values, never an array, for the same reason).
        let h0 = load16(src);
        let h1 = load16(src.add(16));
        let h2 = load16(src.add(32));
        let h3 = load16(src.add(48));
        let mut end = n;
        while end > 64 {
            end -= 64;
            move_64(dest.add(end), src.add(end));
        }
        store16(dest, h0);
        store16(dest.add(16), h1);
        store16(dest.add(32), h2);
        store16(dest.add(48), h3);
    }
}

/// `memmove`: forward unless `dest` starts inside `src`.
///
/// # Safety
/// As `memmove`: both regions valid for `n` bytes.
#[inline(always)]
pub unsafe fn copy_any(dest: *mut u8, src: *const u8, n: usize) {
    let (d, s) = (dest as usize, src as usize);
    unsafe {
        if d.wrapping_sub(s) >= n {
            copy_forward(dest, src, n);
        } else {
            copy_backward(dest, src, n);
        }
    }
}

/// From this size on, a disjoint copy is one `rep movsb`: its start-up costs less than the
/// loop from there (the CPUs of the last decade move whole cache lines per step).
#[cfg(target_arch = "x86_64")]
const LARGE_COPY: usize = 512;

#[cfg(target_arch = "x86_64")]
fn disjoint(dest: *mut u8, src: *const u8, n: usize) -> bool {
    let (d, s) = (dest as usize, src as usize);
    d.wrapping_sub(s) >= n && s.wrapping_sub(d) >= n
}

/// `memcmp`: negative, zero or positive as the first differing byte of `a` is below, equal
/// to or above `b`'s. Eight bytes at a time, read big-endian so that the numbers compare as
/// the bytes do.
///
/// # Safety
/// As `memcmp`: both regions valid for `n` bytes.
#[inline(always)]
pub unsafe fn compare(a: *const u8, b: *const u8, n: usize) -> i32 {
    unsafe {
        let mut i = 0;
        while i + 8 <= n {
            let x = u64::from_be(a.add(i).cast::<u64>().read_unaligned());
            let y = u64::from_be(b.add(i).cast::<u64>().read_unaligned());
            if x != y {
                return if x < y { -1 } else { 1 };
            }
            i += 8;
        }
        while i < n {
            let (x, y) = (*a.add(i), *b.add(i));
            if x != y {
                return i32::from(x) - i32::from(y);
            }
            i += 1;
        }
        0
    }
}

/// `bcmp`: zero when the regions hold the same bytes (what `==` on slices calls).
///
/// # Safety
/// As `bcmp`: both regions valid for `n` bytes.
#[inline(always)]
pub unsafe fn differ(a: *const u8, b: *const u8, n: usize) -> i32 {
    unsafe {
        let word = |p: *const u8| p.cast::<u64>().read_unaligned();
        if n >= 8 {
            let mut i = 0;
            while i + 8 < n {
                if word(a.add(i)) != word(b.add(i)) {
                    return 1;
                }
                i += 8;
            }
            // The last word, overlapping the one before it.
            return i32::from(word(a.add(n - 8)) != word(b.add(n - 8)));
        }
        let mut i = 0;
        while i < n {
            if *a.add(i) != *b.add(i) {
                return 1;
            }
            i += 1;
        }
        0
    }
}

/// C `memcpy` ([`copy_forward`]).
///
/// # Safety
/// The C function's: both regions valid for `n` bytes.
#[cfg(all(target_env = "musl", target_arch = "x86_64"))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's promise, as for any `memcpy`.
    unsafe { copy_forward(dest, src, n) };
    dest
}

/// C `memmove` ([`copy_any`]). Replaced with `memcpy`: musl's `memmove` shares its code
/// (`__memcpy_fwd`), so keeping it would bring musl's `memcpy` back beside this one.
///
/// # Safety
/// The C function's: both regions valid for `n` bytes.
#[cfg(all(target_env = "musl", target_arch = "x86_64"))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's promise, as for any `memmove`.
    unsafe { copy_any(dest, src, n) };
    dest
}

/// C `memcmp` ([`compare`]).
///
/// # Safety
/// The C function's: both regions valid for `n` bytes.
#[cfg(target_env = "musl")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's promise, as for any `memcmp`.
    unsafe { compare(a, b, n) }
}

/// C `bcmp` ([`differ`]).
///
/// # Safety
/// The C function's: both regions valid for `n` bytes.
#[cfg(target_env = "musl")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's promise, as for any `bcmp`.
    unsafe { differ(a, b, n) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes around every branch's edges, and a few large ones.
    fn sizes() -> impl Iterator<Item = usize> {
        (0..=300).chain([511, 512, 513, 1000, 4095, 4096, 4097, 65_537])
    }

    fn pattern(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + seed * 7 + 1) as u8).collect()
    }

    #[test]
    fn copies_every_size_at_every_alignment() {
        for n in sizes() {
            for (d_off, s_off) in [(0, 0), (1, 0), (0, 3), (7, 5), (15, 9)] {
                let src = pattern(n + 16, n);
                let mut dest = vec![0xAAu8; n + 32];
                unsafe { copy_forward(dest.as_mut_ptr().add(d_off), src.as_ptr().add(s_off), n) };
                assert_eq!(&dest[d_off..d_off + n], &src[s_off..s_off + n], "n {n}");
                // Nothing around the destination is touched.
                assert!(dest[..d_off].iter().all(|b| *b == 0xAA), "n {n}");
                assert!(dest[d_off + n..].iter().all(|b| *b == 0xAA), "n {n}");
            }
        }
    }

    #[test]
    fn copies_forward_when_the_destination_starts_before_an_overlapping_source() {
        for n in sizes() {
            for shift in [1, 3, 8, 16, 17, 40, 64, 65, 200] {
                let mut buf = pattern(n + shift, shift);
                let expected = buf[shift..shift + n].to_vec();
                let p = buf.as_mut_ptr();
                unsafe { copy_forward(p, p.add(shift), n) };
                assert_eq!(&buf[..n], &expected[..], "n {n} shift {shift}");
            }
        }
    }

    #[test]
    fn moves_overlapping_regions_either_way() {
        for n in sizes() {
            for shift in [1, 3, 8, 16, 17, 40, 64, 65, 200] {
                let original = pattern(n + shift, shift);
                // Down (the source starts after the destination) and up.
                for (from, to) in [(shift, 0), (0, shift)] {
                    let mut expected = original.clone();
                    expected.copy_within(from..from + n, to);
                    let mut buf = original.clone();
                    let p = buf.as_mut_ptr();
                    unsafe { copy_any(p.add(to), p.add(from), n) };
                    assert_eq!(buf, expected, "n {n} from {from} to {to}");
                }
            }
        }
    }

    #[test]
    fn copies_onto_itself_and_moves_large_disjoint_regions_both_ways() {
        for n in sizes() {
            let mut buf = pattern(n, 5);
            let expected = buf.clone();
            let p = buf.as_mut_ptr();
            unsafe { copy_any(p, p, n) };
            assert_eq!(buf, expected, "n {n}");
            // Disjoint, the destination after and before the source (`rep movsb` from 512).
            let mut buf = pattern(2 * n + 8, 6);
            let original = buf.clone();
            let p = buf.as_mut_ptr();
            unsafe { copy_any(p.add(n + 8), p, n) };
            assert_eq!(&buf[n + 8..], &original[..n], "n {n}");
            let mut buf = original.clone();
            let p = buf.as_mut_ptr();
            unsafe { copy_any(p, p.add(n + 8), n) };
            assert_eq!(&buf[..n], &original[n + 8..], "n {n}");
        }
    }

    /// The C meaning, byte by byte, written here: the slices' own comparison calls `memcmp`.
    fn reference(a: &[u8], b: &[u8]) -> i32 {
        for (x, y) in a.iter().zip(b) {
            if x != y {
                return if x < y { -1 } else { 1 };
            }
        }
        0
    }

    #[test]
    fn compares_as_slices_do() {
        for n in sizes() {
            let a = pattern(n, 1);
            // Equal, then one byte changed at each position up and down.
            assert_eq!(unsafe { compare(a.as_ptr(), a.clone().as_ptr(), n) }, 0);
            assert_eq!(unsafe { differ(a.as_ptr(), a.clone().as_ptr(), n) }, 0);
            for at in (0..n).step_by(1 + n / 40) {
                for delta in [1u8, 0x80, 0xff] {
                    let mut b = a.clone();
                    b[at] = b[at].wrapping_add(delta);
                    let ours = unsafe { compare(a.as_ptr(), b.as_ptr(), n) };
                    assert_eq!(ours.signum(), a.cmp(&b) as i32, "n {n} at {at}");
                    assert_eq!(ours.signum(), reference(&a, &b), "n {n} at {at}");
                    let theirs = unsafe { compare(b.as_ptr(), a.as_ptr(), n) };
                    assert_eq!(theirs.signum(), b.cmp(&a) as i32, "n {n} at {at}");
                    assert_eq!(theirs.signum(), reference(&b, &a), "n {n} at {at}");
                    assert_eq!(unsafe { differ(a.as_ptr(), b.as_ptr(), n) }, 1, "n {n}");
                }
            }
        }
    }
}
