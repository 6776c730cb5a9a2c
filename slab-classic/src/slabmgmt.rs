//! The slab descriptor (`struct slab`) and its `kmem_bufctl_t` index chain — 2.6.32 `mm/slab.c`
//! `slab_mgmt_size`, `slab_bufctl`, `index_to_obj`, `obj_to_index`, `slab_get_obj`,
//! `slab_put_obj`, `cache_init_objs`, `check_slabp`.
//!
//! Layout of an on-slab slab (2.6.32: descriptor at the start, after the colour offset):
//! ```text
//! page ─► [colour: colour_next × colour_off][struct slab][bufctl[num]][pad to align][obj 0]…[obj num-1][left-over]
//!                                           ▲ slabp                                 ▲ s_mem
//! ```
//! Off-slab, the descriptor and its bufctl array are an object of `slabp_cache` (a kmalloc cache)
//! and `s_mem` is the page plus the colour offset.
//!
//! Free objects form a singly linked list of indices: `free` is the first free index and
//! `bufctl[i]` the index after `i`; [`BUFCTL_END`] ends it. Invariant (checked by
//! [`check_slabp`]): the chain from `free` visits exactly `num − inuse` distinct indices, each
//! below `num`.

use crate::cache::KmemCache;
use common::list::ListHead;
use core::marker::PhantomData;
use core::ptr::{addr_of_mut, NonNull};

/// `kmem_bufctl_t`.
pub(crate) type KmemBufctl = u32;
/// `BUFCTL_END`: end of the free chain.
pub(crate) const BUFCTL_END: KmemBufctl = !0;
/// `BUFCTL_FREE`: written into the bufctl of an object handed out (debug marker; we always
/// write it, so a second free of an object still in a slab is caught by `slab_put_obj`).
pub(crate) const BUFCTL_FREE: KmemBufctl = !0 - 1;
/// `SLAB_LIMIT`: most objects in one slab.
pub(crate) const SLAB_LIMIT: KmemBufctl = !0 - 3;

/// `struct slab` of 2.6.32: 48 bytes on a 64-bit machine, as in the kernel.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SlabDesc {
    /// Link on one of the node's three lists.
    pub(crate) list: ListHead,
    /// Bytes from the page start to `s_mem`.
    pub(crate) colouroff: usize,
    /// Address of object 0.
    pub(crate) s_mem: *mut u8,
    /// Objects handed out (in arrays or in use).
    pub(crate) inuse: u32,
    /// First free index, or [`BUFCTL_END`].
    pub(crate) free: KmemBufctl,
    /// Node of the slab's pages.
    pub(crate) nodeid: u16,
}

/// `sizeof(struct slab)`.
pub(crate) const SLAB_DESC_SIZE: usize = core::mem::size_of::<SlabDesc>();
const _: () = assert!(SLAB_DESC_SIZE == 48);
/// `sizeof(kmem_bufctl_t)`.
pub(crate) const BUFCTL_SIZE: usize = core::mem::size_of::<KmemBufctl>();

/// `ALIGN(x, a)` for a power of two `a`.
#[inline(always)]
pub(crate) const fn align_up(x: usize, a: usize) -> usize {
    (x + a - 1) & !(a - 1)
}

/// `slab_mgmt_size`: descriptor plus `nr_objs` bufctls, aligned.
pub(crate) const fn slab_mgmt_size(nr_objs: usize, align: usize) -> usize {
    align_up(SLAB_DESC_SIZE + nr_objs * BUFCTL_SIZE, align)
}

/// `reciprocal_value(k)` of 2.6.32 `lib/reciprocal_div.c`: ⌈2³²/k⌉.
pub(crate) const fn reciprocal_value(k: u32) -> u32 {
    (((1u64 << 32) + k as u64 - 1) / k as u64) as u32
}

/// `reciprocal_divide(a, r)`: `a / k` for `r = reciprocal_value(k)` (exact for the object
/// offsets of a slab: `a < 2³²/…`, see the unit test).
#[inline(always)]
pub(crate) const fn reciprocal_divide(a: u32, r: u32) -> u32 {
    ((a as u64 * r as u64) >> 32) as u32
}

/// The descriptor whose `list` link is `link` (`list_entry(link, struct slab, list)`).
#[inline(always)]
pub(crate) fn slab_from_list(link: *mut ListHead) -> *mut SlabDesc {
    link.cast::<SlabDesc>()
}

/// `slab_bufctl(slabp)`: the bufctl array right after the descriptor.
///
/// # Safety
/// `slabp` must point to a descriptor laid out by `alloc_slabmgmt`.
#[inline(always)]
pub(crate) unsafe fn slab_bufctl(slabp: *mut SlabDesc) -> *mut KmemBufctl {
    // SAFETY: the bufctl array directly follows the descriptor in the same allocation.
    unsafe { slabp.add(1).cast::<KmemBufctl>() }
}

/// `index_to_obj`.
///
/// # Safety
/// `cachep` and `slabp` valid; `idx < num`.
#[inline(always)]
pub(crate) unsafe fn index_to_obj(cachep: &KmemCache, slabp: *const SlabDesc, idx: u32) -> *mut u8 {
    // SAFETY: the object lies inside the slab's pages.
    unsafe { (*slabp).s_mem.add(cachep.buffer_size * idx as usize) }
}

/// `obj_to_index`: the index of `obj` with the reciprocal divide (no division instruction).
///
/// # Safety
/// `cachep` and `slabp` valid; `obj >= s_mem` inside the slab.
#[inline(always)]
pub(crate) unsafe fn obj_to_index(
    cachep: &KmemCache,
    slabp: *const SlabDesc,
    obj: *const u8,
) -> u32 {
    // SAFETY: fields of live structures.
    unsafe {
        let off = obj as usize - (*slabp).s_mem as usize;
        reciprocal_divide(off as u32, cachep.reciprocal_buffer_size)
    }
}

/// `slab_get_obj`: takes the first free object of the slab. The caller holds the node's
/// `list_lock` and knows the slab has a free object.
///
/// # Safety
/// As above.
#[inline]
pub(crate) unsafe fn slab_get_obj(cachep: &KmemCache, slabp: *mut SlabDesc) -> *mut u8 {
    // SAFETY: the slab is valid and has a free object (free < num); list_lock held.
    unsafe {
        let idx = (*slabp).free;
        let obj = index_to_obj(cachep, slabp, idx);
        (*slabp).inuse += 1;
        let bufctl = slab_bufctl(slabp);
        let next = *bufctl.add(idx as usize);
        *bufctl.add(idx as usize) = BUFCTL_FREE;
        (*slabp).free = next;
        obj
    }
}

/// `slab_put_obj`: puts `obj` at the head of the slab's free chain (LIFO within a slab).
/// Returns `false` (and changes nothing) when the object's bufctl shows it is already on the
/// chain — the 2.6.32 debug "double free detected" check, cheap enough to keep always.
///
/// # Safety
/// `obj` is an object start of this slab; list_lock held.
#[inline]
pub(crate) unsafe fn slab_put_obj(cachep: &KmemCache, slabp: *mut SlabDesc, obj: *mut u8) -> bool {
    // SAFETY: as documented; objnr < num because obj is an object start of this slab.
    unsafe {
        let objnr = obj_to_index(cachep, slabp, obj);
        let bufctl = slab_bufctl(slabp);
        if (*bufctl.add(objnr as usize)).wrapping_add(1) <= SLAB_LIMIT.wrapping_add(1) {
            return false;
        }
        *bufctl.add(objnr as usize) = (*slabp).free;
        (*slabp).free = objnr;
        (*slabp).inuse -= 1;
        true
    }
}

/// `cache_init_objs`: runs the constructor on every object and chains all indices in address
/// order (`bufctl[i] = i + 1`, last = `BUFCTL_END`, `free = 0`).
///
/// # Safety
/// `slabp` freshly made by `alloc_slabmgmt` for `cachep`.
pub(crate) unsafe fn cache_init_objs(cachep: &KmemCache, slabp: *mut SlabDesc) {
    if let Some(ctor) = cachep.ctor {
        for i in 0..cachep.num {
            // SAFETY: i < num: an object of the fresh slab, ours (contract), handed to the
            // constructor as its contract asks.
            unsafe { ctor(index_to_obj(cachep, slabp, i)) };
        }
    }
    // SAFETY: forwarded contract.
    unsafe { chain_bufctls(cachep, slabp) };
}

/// The free chain of a fresh slab in address order: `bufctl[i] = i + 1`, the last
/// [`BUFCTL_END`], `free = 0`.
///
/// # Safety
/// `slabp` freshly made by `alloc_slabmgmt` for `cachep`, nobody else's.
pub(crate) unsafe fn chain_bufctls(cachep: &KmemCache, slabp: *mut SlabDesc) {
    let num = cachep.num as usize;
    // SAFETY: `num` bufctls follow the descriptor (alloc_slabmgmt's layout), ours (contract).
    let bufctl = unsafe { core::slice::from_raw_parts_mut(slab_bufctl(slabp), num) };
    for (i, b) in bufctl.iter_mut().enumerate() {
        *b = i as KmemBufctl + 1;
    }
    bufctl[num - 1] = BUFCTL_END;
    // SAFETY: as above.
    unsafe { (*slabp).free = 0 };
}

/// `check_slabp`: walks the free chain; `Err` with a description if it is longer than `num`,
/// holds an index ≥ `num`, or its length is not `num − inuse`.
///
/// # Safety
/// `slabp` a live slab of `cachep`, list_lock held.
pub(crate) unsafe fn check_slabp(
    cachep: &KmemCache,
    slabp: *mut SlabDesc,
) -> Result<(), &'static str> {
    // SAFETY: as documented.
    unsafe {
        let num = cachep.num;
        let bufctl = slab_bufctl(slabp);
        let mut entries = 0u32;
        let mut i = (*slabp).free;
        while i != BUFCTL_END {
            entries += 1;
            if entries > num || i >= num {
                return Err("bufctl chain corruption (index out of range or cycle)");
            }
            i = *bufctl.add(i as usize);
        }
        if (*slabp).inuse > num || entries != num - (*slabp).inuse {
            return Err("bufctl chain length != num - inuse");
        }
        Ok(())
    }
}

/// Initialises the descriptor fields (`alloc_slabmgmt`'s common tail).
///
/// # Safety
/// `slabp` valid for writes.
pub(crate) unsafe fn init_slab_desc(
    slabp: *mut SlabDesc,
    colouroff: usize,
    s_mem: *mut u8,
    nodeid: usize,
) {
    // SAFETY: valid for writes per the contract.
    unsafe {
        addr_of_mut!((*slabp).list).write(ListHead::new());
        (*slabp).inuse = 0;
        (*slabp).colouroff = colouroff;
        (*slabp).s_mem = s_mem;
        (*slabp).nodeid = nodeid as u16;
        (*slabp).free = 0;
    }
}

/// A slab descriptor whose node's `list_lock` is held for `'a` (or that nobody else can see
/// yet): plain loads and stores of its fields and bufctls race with nothing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlabRef<'a> {
    s: NonNull<SlabDesc>,
    _locked: PhantomData<&'a mut SlabDesc>,
}

impl<'a> SlabRef<'a> {
    /// # Safety
    /// `s` is a live descriptor laid out by `alloc_slabmgmt` (bufctls after it), and its
    /// node's `list_lock` is held (or the slab is private) for the returned lifetime.
    #[inline(always)]
    pub(crate) unsafe fn new(s: *mut SlabDesc) -> Self {
        SlabRef {
            // SAFETY: live, so non-null (contract).
            s: unsafe { NonNull::new_unchecked(s) },
            _locked: PhantomData,
        }
    }

    /// The descriptor's address.
    #[inline(always)]
    pub(crate) fn as_ptr(self) -> *mut SlabDesc {
        self.s.as_ptr()
    }

    /// The `list` link.
    #[inline(always)]
    pub(crate) fn link(self) -> *mut ListHead {
        // SAFETY: a field address of a live descriptor.
        unsafe { addr_of_mut!((*self.as_ptr()).list) }
    }

    /// `inuse`.
    #[inline(always)]
    pub(crate) fn inuse(self) -> u32 {
        // SAFETY: live descriptor, lock held (constructor contract).
        unsafe { (*self.as_ptr()).inuse }
    }

    /// `free`: the first free index, or [`BUFCTL_END`].
    #[inline(always)]
    pub(crate) fn free(self) -> KmemBufctl {
        // SAFETY: as `inuse`.
        unsafe { (*self.as_ptr()).free }
    }

    /// `nodeid`.
    #[inline(always)]
    pub(crate) fn nodeid(self) -> usize {
        // SAFETY: as `inuse`.
        unsafe { (*self.as_ptr()).nodeid as usize }
    }

    /// `colouroff`.
    pub(crate) fn colouroff(self) -> usize {
        // SAFETY: as `inuse`.
        unsafe { (*self.as_ptr()).colouroff }
    }

    /// `s_mem`: object 0.
    pub(crate) fn s_mem(self) -> *mut u8 {
        // SAFETY: as `inuse`.
        unsafe { (*self.as_ptr()).s_mem }
    }

    /// The start of the slab's pages (`s_mem − colouroff`).
    pub(crate) fn mem_start(self) -> *mut u8 {
        self.s_mem().wrapping_sub(self.colouroff())
    }

    /// `bufctl[i]`, `i < num` of `cachep` (this slab's cache).
    pub(crate) fn bufctl(self, cachep: &KmemCache, i: u32) -> KmemBufctl {
        assert!(i < cachep.num);
        // SAFETY: i < num: inside the bufctl array.
        unsafe { *slab_bufctl(self.as_ptr()).add(i as usize) }
    }

    /// `index_to_obj`, `i < num`.
    pub(crate) fn index_to_obj(self, cachep: &KmemCache, i: u32) -> *mut u8 {
        assert!(i < cachep.num);
        // SAFETY: i < num: inside the slab.
        unsafe { index_to_obj(cachep, self.as_ptr(), i) }
    }

    /// `obj_to_index` of an address inside this slab's objects.
    pub(crate) fn obj_to_index(self, cachep: &KmemCache, obj: *const u8) -> u32 {
        // SAFETY: live descriptor; the computation reads two fields only.
        unsafe { obj_to_index(cachep, self.as_ptr(), obj) }
    }

    /// `slab_get_obj`: the first free object. The slab must have one.
    #[inline]
    pub(crate) fn get_obj(self, cachep: &KmemCache) -> *mut u8 {
        assert!(self.free() < cachep.num);
        // SAFETY: a free object exists (checked); lock held.
        unsafe { slab_get_obj(cachep, self.as_ptr()) }
    }

    /// `slab_put_obj` (see there).
    ///
    /// # Safety
    /// `obj` is an object start of this slab.
    #[inline]
    pub(crate) unsafe fn put_obj(self, cachep: &KmemCache, obj: *mut u8) -> bool {
        // SAFETY: forwarded contract; lock held.
        unsafe { slab_put_obj(cachep, self.as_ptr(), obj) }
    }

    /// `check_slabp`.
    pub(crate) fn check(self, cachep: &KmemCache) -> Result<(), &'static str> {
        // SAFETY: a live slab of cachep, lock held.
        unsafe { check_slabp(cachep, self.as_ptr()) }
    }

    /// The free chain's object addresses, in chain order (call on a slab that passed
    /// [`Self::check`]).
    pub(crate) fn free_objects<'c>(
        self,
        cachep: &'c KmemCache,
    ) -> impl Iterator<Item = *mut u8> + use<'a, 'c> {
        let mut i = self.free();
        core::iter::from_fn(move || {
            if i == BUFCTL_END || i >= cachep.num {
                return None;
            }
            let obj = self.index_to_obj(cachep, i);
            i = self.bufctl(cachep, i);
            Some(obj)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reciprocal_divide_is_exact_for_object_offsets() {
        for &k in &[8u32, 32, 64, 104, 128, 192, 1000, 4096, 8192, 1 << 22] {
            let r = reciprocal_value(k);
            let max = (4u32 << 20) / k;
            for i in 0..max.min(5000) {
                assert_eq!(reciprocal_divide(i * k, r), i, "k={k} i={i}");
            }
        }
        assert_eq!(reciprocal_value(3), 1431655766);
    }

    fn fake_cache(num: u32, size: usize) -> Box<KmemCache> {
        // SAFETY: every field of KmemCache is valid as all-zero bytes (null pointers, None,
        // zero atomics, an empty name).
        let mut c: Box<KmemCache> =
            Box::new(unsafe { core::mem::MaybeUninit::zeroed().assume_init() });
        c.num = num;
        c.buffer_size = size;
        c.reciprocal_buffer_size = reciprocal_value(size as u32);
        c.buffer_size_divides = common::ExactDiv::new(size as u32);
        c
    }

    #[test]
    fn bufctl_chain_get_put_and_double_free() {
        let c = fake_cache(8, 64);
        let cp: &KmemCache = &c;
        let mut page = vec![0u64; 4096 / 8];
        let base = page.as_mut_ptr().cast::<u8>();
        let slabp = base.cast::<SlabDesc>();
        let mgmt = slab_mgmt_size(8, 64);
        assert_eq!(mgmt, 128);
        // SAFETY: `page` is a 4 KiB buffer holding the descriptor, 8 bufctls and 8 objects,
        // used by this test alone.
        let s = unsafe {
            init_slab_desc(slabp, mgmt, base.add(mgmt), 0);
            cache_init_objs(cp, slabp);
            SlabRef::new(slabp)
        };
        let chain: Vec<u32> = (0..8).map(|i| s.bufctl(cp, i)).collect();
        assert_eq!(chain, vec![1, 2, 3, 4, 5, 6, 7, BUFCTL_END]);
        s.check(cp).unwrap();
        // Objects come out in address order.
        let objs: Vec<*mut u8> = (0..8).map(|_| s.get_obj(cp)).collect();
        for (i, &o) in objs.iter().enumerate() {
            assert_eq!(o, base.wrapping_add(128 + 64 * i));
            assert_eq!(s.obj_to_index(cp, o), i as u32);
        }
        assert_eq!((s.inuse(), s.free()), (8, BUFCTL_END));
        s.check(cp).unwrap();
        // LIFO within the slab.
        // SAFETY: object starts of this slab.
        unsafe {
            assert!(s.put_obj(cp, objs[5]));
            assert!(s.put_obj(cp, objs[2]));
        }
        assert_eq!(s.free(), 2);
        assert_eq!(s.bufctl(cp, 2), 5);
        assert_eq!(s.get_obj(cp), objs[2]);
        // A second put of an object already on the chain is refused (BUFCTL_FREE check).
        // SAFETY: an object start of this slab.
        assert!(!unsafe { s.put_obj(cp, objs[5]) });
        assert_eq!(s.inuse(), 7);
        s.check(cp).unwrap();
        // check_slabp catches a cycle and a wrong count.
        // SAFETY: the test's own descriptor; each corruption is undone before the next.
        unsafe { *slab_bufctl(slabp).add(5) = 5 };
        assert!(s.check(cp).is_err());
        // SAFETY: as above.
        unsafe {
            *slab_bufctl(slabp).add(5) = BUFCTL_END;
            (*slabp).inuse = 6;
        }
        assert!(s.check(cp).is_err());
    }

    #[test]
    fn mgmt_size_formula() {
        assert_eq!(slab_mgmt_size(112, 32), 512);
        assert_eq!(slab_mgmt_size(59, 64), 320);
        assert_eq!(slab_mgmt_size(37, 8), 200);
    }
}
