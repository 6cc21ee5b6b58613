//! RFC 9162 Merkle tree math over blake3 (docs/FORMAT.md, "Merkle tree").
//!
//! Leaves are record hashes (already `blake3(0x00 || …)`); an interior node is
//! `blake3(0x01 || left || right)`; a tree of n leaves splits at the largest
//! power of two below n, so no leaf is ever duplicated to pad a level.

use crate::limits::PROOF_HASHES_MAX;
use crate::types::Hash32;

/// RFC 9162 interior-node prefix.
pub const NODE_PREFIX: u8 = 0x01;

/// `blake3(0x01 || left || right)`.
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut buf = [0u8; 65];
    buf[0] = NODE_PREFIX;
    buf[1..33].copy_from_slice(left.as_bytes());
    buf[33..].copy_from_slice(right.as_bytes());
    Hash32::from_bytes(*blake3::hash(&buf).as_bytes())
}

/// The root of the empty tree: `blake3("")`, as RFC 9162 defines `MTH({})`.
pub fn empty_root() -> Hash32 {
    Hash32::from_bytes(*blake3::hash(b"").as_bytes())
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Hash of the leaf range `[start, end)` built from perfect subtrees, where
/// `perfect(level, index)` is the hash of leaves `[index << level, (index + 1) << level)`.
///
/// Every range an RFC 9162 proof names starts at a multiple of its own
/// power-of-two ceiling, so it is the perfect subtrees of its binary
/// decomposition, largest first, folded from the right. A store that keeps
/// only perfect subtrees can therefore answer any proof in O(log n) lookups.
pub fn range_hash_from_perfect(start: u64, end: u64, perfect: &mut dyn FnMut(u32, u64) -> Hash32) -> Hash32 {
    assert!(start < end, "empty range");
    let mut parts: [Hash32; 64] = [Hash32::ZERO; 64];
    let mut count = 0;
    let mut at = start;
    let mut remaining = end - start;
    while remaining > 0 {
        let level = 63 - remaining.leading_zeros();
        let width = 1u64 << level;
        assert!(at.is_multiple_of(width), "range [{start}, {end}) is not proof-aligned");
        parts[count] = perfect(level, at >> level);
        count += 1;
        at += width;
        remaining -= width;
    }
    let mut acc = parts[count - 1];
    for part in parts[..count - 1].iter().rev() {
        acc = node_hash(part, &acc);
    }
    acc
}

/// A source of subtree hashes for proof generation: `subtree(start, end)` is
/// `MTH(D[start:end])`.
pub trait Subtrees {
    fn subtree(&mut self, start: u64, end: u64) -> Hash32;
}

/// The RFC 9162 inclusion proof of leaf `index` in the tree of `size` leaves,
/// ordered from the leaf's sibling upward. `None` when `index >= size`.
pub fn inclusion_proof(index: u64, size: u64, tree: &mut dyn Subtrees) -> Option<Vec<Hash32>> {
    if index >= size {
        return None;
    }
    let mut proof = Vec::new();
    let (mut start, mut end) = (0, size);
    // Walk down from the root, collecting the sibling of each branch taken;
    // the proof is then those siblings from the bottom up.
    while end - start > 1 {
        let k = split(end - start);
        if index - start < k {
            proof.push(tree.subtree(start + k, end));
            end = start + k;
        } else {
            proof.push(tree.subtree(start, start + k));
            start += k;
        }
    }
    proof.reverse();
    Some(proof)
}

/// The RFC 9162 consistency proof from `old_size` to `new_size`.
/// `None` unless `0 < old_size <= new_size`.
pub fn consistency_proof(old_size: u64, new_size: u64, tree: &mut dyn Subtrees) -> Option<Vec<Hash32>> {
    if old_size == 0 || old_size > new_size {
        return None;
    }
    let mut proof = Vec::new();
    subproof(old_size, 0, new_size, true, tree, &mut proof);
    Some(proof)
}

/// RFC 9162 SUBPROOF(m, D[start:end], b), with m counted from `start`.
fn subproof(m: u64, start: u64, end: u64, whole: bool, tree: &mut dyn Subtrees, out: &mut Vec<Hash32>) {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(tree.subtree(start, end));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, start, start + k, whole, tree, out);
        out.push(tree.subtree(start + k, end));
    } else {
        subproof(m - k, start + k, end, false, tree, out);
        out.push(tree.subtree(start, start + k));
    }
}

/// The root that an inclusion proof for `leaf` at `index` in a tree of `size`
/// implies (RFC 9162 §2.1.3.2), or `None` if the proof has the wrong shape.
/// Callers compare the result with a *signed* root: computing it here and
/// binding it to the checkpoint is the whole point.
pub fn root_from_inclusion(index: u64, size: u64, leaf: &Hash32, proof: &[Hash32]) -> Option<Hash32> {
    if index >= size || proof.len() > PROOF_HASHES_MAX {
        return None;
    }
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return None;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    (sn == 0).then_some(r)
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2): true iff the tree of
/// `new_size` with root `new_root` extends the tree of `old_size` with `old_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash32,
    new_root: &Hash32,
    proof: &[Hash32],
) -> bool {
    if old_size == 0 || old_size > new_size || proof.len() > PROOF_HASHES_MAX {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash32> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let mut fn_ = old_size - 1;
    let mut sn = new_size - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && fr == *old_root && sr == *new_root
}

/// The right edge of a tree: the perfect subtrees of the binary decomposition
/// of its size, largest first. Appends in O(1) amortised, holds at most 64
/// hashes, and yields the root at any time: this is how the streaming verifier
/// recomputes a million-record tree in constant memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    peaks: Vec<Hash32>,
}

impl CompactRange {
    pub fn new() -> CompactRange {
        CompactRange { size: 0, peaks: Vec::with_capacity(64) }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree hashes, largest first.
    pub fn peaks(&self) -> &[Hash32] {
        &self.peaks
    }

    /// Rebuilds a range from stored peaks; `None` if the count does not match
    /// `size`'s popcount.
    pub fn from_parts(size: u64, peaks: Vec<Hash32>) -> Option<CompactRange> {
        (peaks.len() == size.count_ones() as usize).then_some(CompactRange { size, peaks })
    }

    pub fn append(&mut self, leaf: Hash32) {
        let mut hash = leaf;
        let mut bits = self.size;
        while bits & 1 == 1 {
            let left = self.peaks.pop().expect("a set bit has a peak");
            hash = node_hash(&left, &hash);
            bits >>= 1;
        }
        self.peaks.push(hash);
        self.size = self.size.checked_add(1).expect("tree size overflow");
        debug_assert_eq!(self.peaks.len(), self.size.count_ones() as usize);
    }

    pub fn root(&self) -> Hash32 {
        let Some((last, rest)) = self.peaks.split_last() else {
            return empty_root();
        };
        rest.iter().rev().fold(*last, |acc, peak| node_hash(peak, &acc))
    }
}

/// A whole tree in memory, every perfect subtree kept: for tests, vectors and
/// the export generator. O(n) memory; the store keeps the same levels on disk.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    /// `levels[l][i]` is the perfect subtree of leaves `[i << l, (i + 1) << l)`.
    levels: Vec<Vec<Hash32>>,
}

impl MemoryTree {
    pub fn new() -> MemoryTree {
        MemoryTree { levels: vec![Vec::new()] }
    }

    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    pub fn leaf(&self, index: u64) -> Option<Hash32> {
        self.levels[0].get(usize::try_from(index).ok()?).copied()
    }

    pub fn append(&mut self, leaf: Hash32) {
        self.levels[0].push(leaf);
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let n = self.levels[level].len();
            let parent = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(parent);
            level += 1;
        }
    }

    /// Root of the first `size` leaves; `None` past the end.
    pub fn root(&self, size: u64) -> Option<Hash32> {
        if size > self.size() {
            return None;
        }
        if size == 0 {
            return Some(empty_root());
        }
        Some(self.range(0, size))
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash32>> {
        if size > self.size() {
            return None;
        }
        inclusion_proof(index, size, &mut &*self)
    }

    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Option<Vec<Hash32>> {
        if new_size > self.size() {
            return None;
        }
        consistency_proof(old_size, new_size, &mut &*self)
    }

    fn range(&self, start: u64, end: u64) -> Hash32 {
        range_hash_from_perfect(start, end, &mut |level, index| self.levels[level as usize][index as usize])
    }
}

impl Subtrees for &MemoryTree {
    fn subtree(&mut self, start: u64, end: u64) -> Hash32 {
        self.range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u64) -> Hash32 {
        Hash32::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    /// RFC 9162 MTH, written as the RFC writes it: the model the fast code must match.
    fn mth(leaves: &[Hash32]) -> Hash32 {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn roots_match_the_rfc_definition() {
        let mut tree = MemoryTree::new();
        let mut compact = CompactRange::new();
        let mut leaves = Vec::new();
        assert_eq!(compact.root(), mth(&[]));
        for i in 0..70 {
            leaves.push(leaf(i));
            tree.append(leaf(i));
            compact.append(leaf(i));
            let expected = mth(&leaves);
            assert_eq!(compact.root(), expected, "compact size {}", i + 1);
            assert_eq!(tree.root(i + 1), Some(expected), "tree size {}", i + 1);
        }
        for size in 0..=70 {
            assert_eq!(tree.root(size), Some(mth(&leaves[..size as usize])));
        }
    }

    #[test]
    fn no_odd_leaf_duplication() {
        // Bitcoin's CVE-2012-2459: [a, b, c] must not equal [a, b, c, c].
        let three = mth(&[leaf(0), leaf(1), leaf(2)]);
        let four = mth(&[leaf(0), leaf(1), leaf(2), leaf(2)]);
        assert_ne!(three, four);
        assert_eq!(three, node_hash(&node_hash(&leaf(0), &leaf(1)), &leaf(2)));
    }

    #[test]
    fn single_leaf_tree_root_is_the_leaf() {
        let mut c = CompactRange::new();
        c.append(leaf(9));
        assert_eq!(c.root(), leaf(9));
        assert_eq!(root_from_inclusion(0, 1, &leaf(9), &[]), Some(leaf(9)));
    }
}
