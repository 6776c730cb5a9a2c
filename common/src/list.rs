//! An intrusive, circular, doubly linked list: the kernel's `struct list_head`.
//!
//! Both allocators keep their slabs on such lists (`slabs_partial`/`slabs_full`/`slabs_free`,
//! SLUB's node `partial` and `full`), linked through [`crate::Page::lru`]; the buddy allocator
//! links free blocks the same way. A list head lives inside a structure that never moves (all of
//! it comes from the page provider), and must be [`ListHead::init`]-ed in place before use.
//!
//! Every operation takes raw pointers and is `unsafe`: the caller holds whatever lock protects the
//! list (the module that owns a list says which in its header) and guarantees the entries are
//! live. Deleted entries get poison pointers, as the kernel's `LIST_POISON1/2`, so a use after
//! `list_del` faults at once instead of corrupting a neighbour.

use core::ptr;

/// `LIST_POISON1`: `next` of a deleted entry (a non-canonical address, so it faults).
pub const LIST_POISON1: usize = 0xdead_0000_0000_0100;
/// `LIST_POISON2`: `prev` of a deleted entry.
pub const LIST_POISON2: usize = 0xdead_0000_0000_0122;

/// A list link, or a list's head (a sentinel that links to itself when empty).
#[repr(C)]
#[derive(Debug)]
pub struct ListHead {
    /// The next link (the first entry, for a head).
    pub next: *mut ListHead,
    /// The previous link (the last entry, for a head).
    pub prev: *mut ListHead,
}

impl ListHead {
    /// A link that is not on any list yet (null pointers); call [`ListHead::init`] in place
    /// before using it as a head.
    pub const fn new() -> Self {
        Self {
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
        }
    }

    /// `INIT_LIST_HEAD`: makes `head` an empty list, linked to itself.
    ///
    /// # Safety
    /// `head` must be valid for writes and must not move afterwards while on use.
    #[inline]
    pub unsafe fn init(head: *mut ListHead) {
        // SAFETY: the caller guarantees `head` is valid for writes.
        unsafe {
            (*head).next = head;
            (*head).prev = head;
        }
    }

    /// `list_empty`.
    ///
    /// # Safety
    /// `head` must be an initialised list head, read under the list's lock.
    #[inline]
    pub unsafe fn is_empty(head: *const ListHead) -> bool {
        // SAFETY: the caller guarantees `head` is valid.
        unsafe { ptr::eq((*head).next, head) }
    }

    /// Links `new` between two consecutive entries.
    ///
    /// # Safety
    /// `prev` and `next` must be adjacent live links of one list; `new` valid and not on a list.
    #[inline]
    unsafe fn insert(new: *mut ListHead, prev: *mut ListHead, next: *mut ListHead) {
        // SAFETY: guaranteed by the caller.
        unsafe {
            (*next).prev = new;
            (*new).next = next;
            (*new).prev = prev;
            (*prev).next = new;
        }
    }

    /// `list_add`: inserts `new` right after `head` (at the front; stack order).
    ///
    /// # Safety
    /// `head` an initialised list head, `new` a valid link on no list; list lock held.
    #[inline]
    pub unsafe fn add(new: *mut ListHead, head: *mut ListHead) {
        // SAFETY: head and head.next are adjacent links of one list.
        unsafe { Self::insert(new, head, (*head).next) }
    }

    /// `list_add_tail`: inserts `new` right before `head` (at the back; queue order).
    ///
    /// # Safety
    /// As [`ListHead::add`].
    #[inline]
    pub unsafe fn add_tail(new: *mut ListHead, head: *mut ListHead) {
        // SAFETY: head.prev and head are adjacent links of one list.
        unsafe { Self::insert(new, (*head).prev, head) }
    }

    /// `list_del`: unlinks `entry` and poisons its links.
    ///
    /// # Safety
    /// `entry` must be on a list whose lock is held.
    #[inline]
    pub unsafe fn del(entry: *mut ListHead) {
        // SAFETY: entry is on a list, so its neighbours are live links.
        unsafe {
            let (prev, next) = ((*entry).prev, (*entry).next);
            (*next).prev = prev;
            (*prev).next = next;
            (*entry).next = LIST_POISON1 as *mut ListHead;
            (*entry).prev = LIST_POISON2 as *mut ListHead;
        }
    }

    /// `list_move`: takes `entry` off its list and adds it to the front of `head`.
    ///
    /// # Safety
    /// Both lists' locks held; `entry` on a list, `head` initialised.
    #[inline]
    pub unsafe fn move_to(entry: *mut ListHead, head: *mut ListHead) {
        // SAFETY: as documented on del/add.
        unsafe {
            Self::del(entry);
            Self::add(entry, head);
        }
    }

    /// `list_move_tail`: takes `entry` off its list and adds it to the back of `head`.
    ///
    /// # Safety
    /// As [`ListHead::move_to`].
    #[inline]
    pub unsafe fn move_tail(entry: *mut ListHead, head: *mut ListHead) {
        // SAFETY: as documented on del/add_tail.
        unsafe {
            Self::del(entry);
            Self::add_tail(entry, head);
        }
    }

    /// The first entry, or `None` for an empty list.
    ///
    /// # Safety
    /// `head` an initialised list head; lock held.
    #[inline]
    pub unsafe fn first(head: *mut ListHead) -> Option<*mut ListHead> {
        // SAFETY: the caller guarantees head is valid.
        unsafe { (!Self::is_empty(head)).then(|| (*head).next) }
    }

    /// The last entry, or `None` for an empty list.
    ///
    /// # Safety
    /// As [`ListHead::first`].
    #[inline]
    pub unsafe fn last(head: *mut ListHead) -> Option<*mut ListHead> {
        // SAFETY: the caller guarantees head is valid.
        unsafe { (!Self::is_empty(head)).then(|| (*head).prev) }
    }

    /// Number of entries (walks the list; for validation and statistics).
    ///
    /// # Safety
    /// As [`ListHead::first`].
    pub unsafe fn count(head: *mut ListHead) -> usize {
        // SAFETY: the caller guarantees head is a valid list under its lock.
        unsafe { Self::iter(head).count() }
    }

    /// `list_for_each_safe`: iterates over the entries; the current entry may be deleted or moved
    /// by the loop body, since the next link is read before it is yielded.
    ///
    /// # Safety
    /// `head` an initialised list head; the lock held for the whole iteration; the loop body must
    /// not remove any entry other than the one just yielded.
    pub unsafe fn iter(head: *mut ListHead) -> ListIter {
        // SAFETY: head is valid per the caller.
        let cur = unsafe { (*head).next };
        ListIter { head, cur }
    }
}

impl Default for ListHead {
    fn default() -> Self {
        Self::new()
    }
}

/// Iterator made by [`ListHead::iter`].
pub struct ListIter {
    head: *mut ListHead,
    cur: *mut ListHead,
}

impl Iterator for ListIter {
    type Item = *mut ListHead;

    fn next(&mut self) -> Option<*mut ListHead> {
        if ptr::eq(self.cur, self.head) {
            return None;
        }
        let item = self.cur;
        // SAFETY: `item` is a live link of the list (the iterator's contract, see ListHead::iter).
        self.cur = unsafe { (*item).next };
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_del_order_and_poison() {
        let mut head = ListHead::new();
        let mut a = ListHead::new();
        let mut b = ListHead::new();
        let mut c = ListHead::new();
        let (h, pa, pb, pc) = (&raw mut head, &raw mut a, &raw mut b, &raw mut c);
        // SAFETY: all links live on this stack frame and do not move during the test.
        unsafe {
            ListHead::init(h);
            assert!(ListHead::is_empty(h));
            ListHead::add(pa, h); // a
            ListHead::add_tail(pb, h); // a b
            ListHead::add(pc, h); // c a b
            let order: Vec<_> = ListHead::iter(h).collect();
            assert_eq!(order, vec![pc, pa, pb]);
            assert_eq!(ListHead::count(h), 3);
            ListHead::del(pa);
            assert_eq!((*pa).next as usize, LIST_POISON1);
            assert_eq!(ListHead::iter(h).collect::<Vec<_>>(), vec![pc, pb]);
            ListHead::move_tail(pc, h); // b c
            assert_eq!(ListHead::first(h), Some(pb));
            assert_eq!(ListHead::last(h), Some(pc));
            for e in ListHead::iter(h) {
                ListHead::del(e);
            }
            assert!(ListHead::is_empty(h));
            assert_eq!(ListHead::first(h), None);
        }
    }
}
