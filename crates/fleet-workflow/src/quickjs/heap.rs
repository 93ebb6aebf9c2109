//! The script heap's allocator: rquickjs's Rust allocator with a hard cap per run.
//!
//! QuickJS turns a failed allocation into an `out of memory` error that a script could catch
//! and carry on from. The cap is enforced here instead, and the first refusal trips a flag that
//! the interrupt handler turns into an uncatchable interrupt, so exhausting the heap always ends
//! the run.
//!
//! This is the crate's only `unsafe`: rquickjs's `Allocator` is an `unsafe trait`. Every method
//! forwards to `RustAllocator` with the pointer QuickJS gave back, and only adds bookkeeping.
#![allow(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rquickjs::allocator::{Allocator, RustAllocator};

/// What the allocator shares with the run: bytes in use and whether the cap was hit.
#[derive(Debug, Default)]
pub(crate) struct HeapGauge {
    pub used: AtomicUsize,
    pub tripped: AtomicBool,
}

pub(crate) struct CappedAllocator {
    limit: usize,
    gauge: Arc<HeapGauge>,
}

impl CappedAllocator {
    pub(crate) fn new(limit: usize, gauge: Arc<HeapGauge>) -> Self {
        Self { limit, gauge }
    }

    fn admit(&self, more: usize) -> bool {
        let used = self.gauge.used.load(Ordering::Relaxed);
        if used.saturating_add(more) > self.limit {
            self.gauge.tripped.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }
}

// SAFETY: every method returns what `RustAllocator` returns (null or a block of at least the
// requested size, aligned as the trait requires) and passes through only pointers that QuickJS
// got from this same allocator, as the trait's contract guarantees.
unsafe impl Allocator for CappedAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if !self.admit(size) {
            return std::ptr::null_mut();
        }
        let ptr = RustAllocator.alloc(size);
        if !ptr.is_null() {
            // SAFETY: `ptr` was just returned by `RustAllocator`.
            let usable = unsafe { RustAllocator::usable_size(ptr) };
            self.gauge.used.fetch_add(usable, Ordering::Relaxed);
        }
        ptr
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        if !self.admit(count.saturating_mul(size)) {
            return std::ptr::null_mut();
        }
        let ptr = RustAllocator.calloc(count, size);
        if !ptr.is_null() {
            // SAFETY: `ptr` was just returned by `RustAllocator`.
            let usable = unsafe { RustAllocator::usable_size(ptr) };
            self.gauge.used.fetch_add(usable, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        // SAFETY: the caller passes a pointer this allocator returned (trait contract).
        let usable = unsafe { RustAllocator::usable_size(ptr) };
        self.gauge.used.fetch_sub(usable, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { RustAllocator.dealloc(ptr) }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a pointer this allocator returned (trait contract).
        let old = unsafe { RustAllocator::usable_size(ptr) };
        if new_size > old && !self.admit(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: as above; on failure the old block is untouched, as `realloc` promises.
        let new = unsafe { RustAllocator.realloc(ptr, new_size) };
        if !new.is_null() {
            // SAFETY: `new` was just returned by `RustAllocator`.
            let usable = unsafe { RustAllocator::usable_size(new) };
            self.gauge.used.fetch_sub(old, Ordering::Relaxed);
            self.gauge.used.fetch_add(usable, Ordering::Relaxed);
        }
        new
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // SAFETY: the caller passes a pointer this allocator returned (trait contract).
        unsafe { RustAllocator::usable_size(ptr) }
    }
}
