//! slab-classic: Linux 2.6.32 SLAB on the slabworks page provider (issue 4).
