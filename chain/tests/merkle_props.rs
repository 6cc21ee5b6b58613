//! Goal: the Merkle math is exactly RFC 9162 over blake3, every honest proof
//! verifies, and no altered proof, leaf, root, index or size does.
//!
//! Method: leaves are `blake3(u64 i little-endian)`. For every tree size
//! 1..=512, every inclusion proof and every consistency proof (all pairs
//! 1 <= old <= new) from `MemoryTree` must verify; proofs are also compared
//! with a naive transcription of RFC 9162's PATH and SUBPROOF, and roots with
//! its MTH. Negative space: every single-bit flip of every proof element, the
//! leaf and the expected root fails, exhaustively for sizes 1, 2, 3, 5, 7, 8,
//! 13, 64, 100 and 511 (consistency: all old sizes up to 100, a spread at
//! 511), sampled elsewhere by proptest; so do a wrong index or size, a proof
//! with an element added or removed, empty trees, old > new and old == 0.
//! `CompactRange` must agree with `MemoryTree` at every size and round-trip
//! through `from_parts`; `range_hash_from_perfect` must agree with the naive
//! MTH on random proof-aligned ranges. Proptest covers sizes up to 10_000.

use std::sync::OnceLock;

use annal_chain::{
    CompactRange, Hash32, MemoryTree, Subtrees, consistency_proof, empty_root, inclusion_proof, node_hash,
    range_hash_from_perfect, root_from_inclusion, verify_consistency,
};
use proptest::prelude::*;

const EXHAUSTIVE_SIZE_MAX: u64 = 512;
const BIT_FLIP_SIZES: [u64; 10] = [1, 2, 3, 5, 7, 8, 13, 64, 100, 511];
const PROPTEST_SIZE_MAX: u64 = 10_000;

fn leaf(i: u64) -> Hash32 {
    Hash32::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

fn leaves(n: u64) -> Vec<Hash32> {
    (0..n).map(leaf).collect()
}

/// One tree of 10_000 leaves, shared by every test; prefixes are the smaller trees.
fn tree() -> &'static MemoryTree {
    static TREE: OnceLock<MemoryTree> = OnceLock::new();
    TREE.get_or_init(|| {
        let mut t = MemoryTree::new();
        for i in 0..PROPTEST_SIZE_MAX {
            t.append(leaf(i));
        }
        t
    })
}

/// Largest power of two strictly below n (n >= 2), as RFC 9162 splits.
fn split(n: usize) -> usize {
    assert!(n >= 2);
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 9162 §2.1.1 MTH, as the RFC writes it.
fn mth(d: &[Hash32]) -> Hash32 {
    match d.len() {
        0 => Hash32::from_bytes(*blake3::hash(b"").as_bytes()),
        1 => d[0],
        n => {
            let k = split(n);
            let mut buf = vec![0x01];
            buf.extend_from_slice(mth(&d[..k]).as_bytes());
            buf.extend_from_slice(mth(&d[k..]).as_bytes());
            Hash32::from_bytes(*blake3::hash(&buf).as_bytes())
        }
    }
}

/// RFC 9162 §2.1.3.1 PATH(m, D[n]).
fn rfc_path(m: usize, d: &[Hash32]) -> Vec<Hash32> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = split(n);
    if m < k {
        let mut p = rfc_path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = rfc_path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b).
fn rfc_subproof(m: usize, d: &[Hash32], b: bool) -> Vec<Hash32> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = rfc_subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = rfc_subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

fn root(n: u64) -> Hash32 {
    tree().root(n).expect("size within the tree")
}

fn flip(h: &mut Hash32, bit: usize) {
    let mut b = *h.as_bytes();
    b[bit / 8] ^= 1 << (bit % 8);
    *h = Hash32::from_bytes(b);
}

/// Every inclusion and consistency proof of every tree up to 512 leaves.
#[test]
fn every_inclusion_proof_up_to_512_verifies() {
    let t = tree();
    for n in 1..=EXHAUSTIVE_SIZE_MAX {
        let r = root(n);
        for i in 0..n {
            let proof = t.inclusion_proof(i, n).unwrap();
            assert_eq!(root_from_inclusion(i, n, &leaf(i), &proof), Some(r), "index {i} size {n}");
        }
    }
}

#[test]
fn every_consistency_proof_up_to_512_verifies() {
    let t = tree();
    for new in 1..=EXHAUSTIVE_SIZE_MAX {
        let new_root = root(new);
        for old in 1..=new {
            let proof = t.consistency_proof(old, new).unwrap();
            assert!(verify_consistency(old, new, &root(old), &new_root, &proof), "{old} -> {new}");
        }
    }
}

#[test]
fn roots_and_proofs_match_the_rfc_text() {
    let all = leaves(EXHAUSTIVE_SIZE_MAX);
    let t = tree();
    assert_eq!(t.root(0), Some(empty_root()));
    assert_eq!(empty_root(), mth(&[]));
    for n in 1..=EXHAUSTIVE_SIZE_MAX as usize {
        assert_eq!(root(n as u64), mth(&all[..n]), "root of size {n}");
    }
    for n in 1..=64usize {
        let d = &all[..n];
        for m in 0..n {
            assert_eq!(t.inclusion_proof(m as u64, n as u64).unwrap(), rfc_path(m, d), "PATH({m}, {n})");
        }
        for m in 1..=n {
            let expected = rfc_subproof(m, d, true);
            assert_eq!(t.consistency_proof(m as u64, n as u64).unwrap(), expected, "PROOF({m}, {n})");
        }
    }
}

/// A `Subtrees` that computes every range naively and remembers what it was asked.
struct NaiveSubtrees {
    leaves: Vec<Hash32>,
    asked: Vec<(u64, u64)>,
}

impl Subtrees for NaiveSubtrees {
    fn subtree(&mut self, start: u64, end: u64) -> Hash32 {
        self.asked.push((start, end));
        mth(&self.leaves[start as usize..end as usize])
    }
}

/// The property `range_hash_from_perfect` relies on: a proof only names
/// ranges that start at a multiple of their power-of-two ceiling.
fn proof_aligned(start: u64, end: u64) -> bool {
    start < end && start.is_multiple_of((end - start).next_power_of_two())
}

#[test]
fn proof_generation_only_asks_for_aligned_ranges() {
    let mut naive = NaiveSubtrees { leaves: leaves(130), asked: Vec::new() };
    for n in 1..=130u64 {
        for i in 0..n {
            let p = inclusion_proof(i, n, &mut naive).unwrap();
            assert_eq!(p, tree().inclusion_proof(i, n).unwrap());
        }
        for old in 1..=n {
            let p = consistency_proof(old, n, &mut naive).unwrap();
            assert_eq!(p, tree().consistency_proof(old, n).unwrap());
        }
    }
    assert!(!naive.asked.is_empty());
    for &(start, end) in &naive.asked {
        assert!(proof_aligned(start, end), "[{start}, {end})");
    }
}

#[test]
fn compact_range_matches_memory_tree_and_round_trips() {
    let mut c = CompactRange::new();
    assert_eq!((c.size(), c.root()), (0, empty_root()));
    for n in 0..=EXHAUSTIVE_SIZE_MAX {
        if n > 0 {
            c.append(leaf(n - 1));
        }
        assert_eq!(c.size(), n);
        assert_eq!(c.root(), root(n), "size {n}");
        assert_eq!(c.peaks().len(), n.count_ones() as usize);
        let rebuilt = CompactRange::from_parts(n, c.peaks().to_vec()).expect("matching peak count");
        assert_eq!(rebuilt, c);
        // The rebuilt range keeps growing like the original.
        let mut grown = rebuilt;
        grown.append(leaf(n));
        assert_eq!(grown.root(), root(n + 1));
        // Peak counts other than popcount(n) are refused.
        let mut more = c.peaks().to_vec();
        more.push(leaf(0));
        assert_eq!(CompactRange::from_parts(n, more), None);
        if n > 0 {
            assert_eq!(CompactRange::from_parts(n, c.peaks()[1..].to_vec()), None);
        }
    }
}

/// `check_inclusion_negative(i, n)`: every altered input to an honest
/// inclusion proof must fail. `all_bits` chooses exhaustive bit flips.
fn check_inclusion_negative(i: u64, n: u64, all_bits: bool, rng_bit: usize) {
    let t = tree();
    let r = root(n);
    let l = leaf(i);
    let proof = t.inclusion_proof(i, n).unwrap();
    assert_eq!(root_from_inclusion(i, n, &l, &proof), Some(r));
    let bits: Vec<usize> = if all_bits { (0..256).collect() } else { vec![rng_bit % 256] };
    let mut p = proof.clone();
    for e in 0..p.len() {
        for &bit in &bits {
            flip(&mut p[e], bit);
            assert_ne!(root_from_inclusion(i, n, &l, &p), Some(r), "index {i} size {n} elem {e} bit {bit}");
            flip(&mut p[e], bit);
        }
    }
    for &bit in &bits {
        let mut bad_leaf = l;
        flip(&mut bad_leaf, bit);
        assert_ne!(root_from_inclusion(i, n, &bad_leaf, &proof), Some(r), "leaf bit {bit}");
        let mut bad_root = r;
        flip(&mut bad_root, bit);
        assert_ne!(root_from_inclusion(i, n, &l, &proof), Some(bad_root), "root bit {bit}");
    }
    // An element added (anywhere) or removed (anywhere).
    for at in 0..=proof.len() {
        let mut longer = proof.clone();
        longer.insert(at, leaf(n + 1));
        assert_ne!(root_from_inclusion(i, n, &l, &longer), Some(r), "extra at {at}");
        if at < proof.len() {
            let mut shorter = proof.clone();
            shorter.remove(at);
            assert_ne!(root_from_inclusion(i, n, &l, &shorter), Some(r), "missing {at}");
        }
    }
}

#[test]
fn inclusion_bit_flips_fail_exhaustively() {
    for n in BIT_FLIP_SIZES {
        for i in 0..n {
            check_inclusion_negative(i, n, true, 0);
        }
    }
}

fn check_consistency_negative(old: u64, new: u64, all_bits: bool, rng_bit: usize) {
    let (old_root, new_root) = (root(old), root(new));
    let proof = tree().consistency_proof(old, new).unwrap();
    assert!(verify_consistency(old, new, &old_root, &new_root, &proof));
    let bits: Vec<usize> = if all_bits { (0..256).collect() } else { vec![rng_bit % 256] };
    let mut p = proof.clone();
    for e in 0..p.len() {
        for &bit in &bits {
            flip(&mut p[e], bit);
            assert!(
                !verify_consistency(old, new, &old_root, &new_root, &p),
                "{old}->{new} elem {e} bit {bit}"
            );
            flip(&mut p[e], bit);
        }
    }
    for &bit in &bits {
        let (mut o, mut n) = (old_root, new_root);
        flip(&mut o, bit);
        flip(&mut n, bit);
        assert!(!verify_consistency(old, new, &o, &new_root, &proof), "{old}->{new} old root bit {bit}");
        assert!(!verify_consistency(old, new, &old_root, &n, &proof), "{old}->{new} new root bit {bit}");
    }
    for at in 0..=proof.len() {
        let mut longer = proof.clone();
        longer.insert(at, leaf(new + 1));
        assert!(!verify_consistency(old, new, &old_root, &new_root, &longer), "{old}->{new} extra at {at}");
        if at < proof.len() {
            let mut shorter = proof.clone();
            shorter.remove(at);
            assert!(
                !verify_consistency(old, new, &old_root, &new_root, &shorter),
                "{old}->{new} missing {at}"
            );
        }
    }
    // A duplicated last element is the classic padding trick.
    if let Some(last) = proof.last() {
        let mut padded = proof.clone();
        padded.push(*last);
        assert!(!verify_consistency(old, new, &old_root, &new_root, &padded));
    }
}

/// Old sizes checked bit by bit for one new size: all of them up to 100,
/// then the edges and the powers of two and their neighbours.
fn flip_old_sizes(new: u64) -> Vec<u64> {
    if new <= 100 {
        return (1..=new).collect();
    }
    let mut olds = vec![1, 2, 3, new / 2, new - 2, new - 1, new];
    let mut p = 4;
    while p < new {
        olds.extend([p - 1, p, p + 1]);
        p *= 2;
    }
    olds.retain(|&o| (1..=new).contains(&o));
    olds.sort_unstable();
    olds.dedup();
    olds
}

#[test]
fn consistency_bit_flips_fail_exhaustively() {
    for new in BIT_FLIP_SIZES {
        for old in flip_old_sizes(new) {
            check_consistency_negative(old, new, true, 0);
        }
    }
}

#[test]
fn wrong_index_or_size_fails() {
    // A proof for (i, n) says nothing about another index, nor about the
    // tree of another size with that size's true root.
    for n in 1..=64u64 {
        for i in 0..n {
            let proof = tree().inclusion_proof(i, n).unwrap();
            for j in (0..n).filter(|&j| j != i) {
                assert_ne!(root_from_inclusion(j, n, &leaf(i), &proof), Some(root(n)), "{i} as {j} in {n}");
            }
            for m in (1..=80u64).filter(|&m| m != n) {
                let got = root_from_inclusion(i, m, &leaf(i), &proof);
                assert_ne!(got, Some(root(m)), "({i}, {n}) proof as size {m}");
            }
            // Out of range: index at or past the size.
            assert_eq!(root_from_inclusion(n, n, &leaf(i), &proof), None);
            assert_eq!(root_from_inclusion(n + 5, n, &leaf(i), &proof), None);
        }
        for old in 1..=n {
            let proof = tree().consistency_proof(old, n).unwrap();
            for other in (1..=n).filter(|&o| o != old) {
                let ok = verify_consistency(other, n, &root(other), &root(n), &proof);
                // An empty proof is honest for every pair with old == new only.
                assert!(!ok || proof == tree().consistency_proof(other, n).unwrap(), "{old}->{n} as {other}");
            }
            for other_new in (old..=80).filter(|&m| m != n) {
                let ok = verify_consistency(old, other_new, &root(old), &root(other_new), &proof);
                assert!(
                    !ok || proof == tree().consistency_proof(old, other_new).unwrap(),
                    "{old}->{n} as ->{other_new}"
                );
            }
        }
    }
}

#[test]
fn empty_and_inverted_cases_fail() {
    let t = tree();
    let e = empty_root();
    assert_eq!(e.as_bytes(), blake3::hash(b"").as_bytes());
    assert_eq!(t.inclusion_proof(0, 0), None);
    assert_eq!(root_from_inclusion(0, 0, &e, &[]), None);
    assert_eq!(root_from_inclusion(0, 0, &leaf(0), &[]), None);
    // Size 1: the root is the leaf, the proof is empty, nothing else works.
    assert_eq!(root_from_inclusion(0, 1, &leaf(0), &[]), Some(leaf(0)));
    assert_eq!(root_from_inclusion(0, 1, &leaf(0), &[leaf(1)]), None);
    assert_eq!(root_from_inclusion(1, 1, &leaf(0), &[]), None);
    for n in 0..=20u64 {
        assert_eq!(t.consistency_proof(0, n), None, "0 -> {n}");
        assert!(!verify_consistency(0, n, &e, &root(n), &[]), "0 -> {n}");
        assert!(!verify_consistency(0, n, &e, &root(n), &t.inclusion_proof(0, n.max(1)).unwrap()));
        for old in n + 1..=n + 3 {
            assert_eq!(t.consistency_proof(old, n), None, "{old} -> {n}");
            assert!(!verify_consistency(old, n, &root(old), &root(n), &[]), "{old} -> {n}");
            let forward = t.consistency_proof(n.max(1), old).unwrap();
            assert!(!verify_consistency(old, n, &root(old), &root(n), &forward), "{old} -> {n} reversed");
        }
    }
    // old == new: only the empty proof and equal roots.
    for n in 1..=20u64 {
        assert!(verify_consistency(n, n, &root(n), &root(n), &[]));
        assert!(!verify_consistency(n, n, &root(n), &root(n), &[root(n)]));
        assert!(!verify_consistency(n, n, &root(n), &root(n + 1), &[]));
    }
    // Past the tree's end, the tree refuses to answer.
    let small = {
        let mut s = MemoryTree::new();
        (0..5).for_each(|i| s.append(leaf(i)));
        s
    };
    assert_eq!(small.root(6), None);
    assert_eq!(small.inclusion_proof(0, 6), None);
    assert_eq!(small.consistency_proof(2, 6), None);
    // Proofs longer than any u64 tree are refused outright.
    let long = vec![leaf(0); 65];
    assert_eq!(root_from_inclusion(0, u64::MAX, &leaf(0), &long), None);
    assert!(!verify_consistency(1, u64::MAX, &leaf(0), &leaf(1), &long));
}

/// `range_hash_from_perfect` over naively computed perfect subtrees, so that
/// only its decomposition and folding are under test.
fn check_range(start: u64, end: u64) {
    let all = leaves_4096();
    let mut perfect = |level: u32, index: u64| {
        let from = (index << level) as usize;
        mth(&all[from..from + (1usize << level)])
    };
    let got = range_hash_from_perfect(start, end, &mut perfect);
    assert_eq!(got, mth(&all[start as usize..end as usize]), "[{start}, {end})");
}

fn leaves_4096() -> &'static [Hash32] {
    static LEAVES: OnceLock<Vec<Hash32>> = OnceLock::new();
    LEAVES.get_or_init(|| leaves(4096))
}

#[test]
fn range_hash_from_perfect_matches_naive_mth_on_every_small_aligned_range() {
    for start in 0..128u64 {
        for end in start + 1..=128 {
            if proof_aligned(start, end) {
                check_range(start, end);
            }
        }
    }
}

#[test]
fn node_hash_is_prefixed_blake3() {
    let (a, b) = (leaf(1), leaf(2));
    let mut buf = vec![0x01];
    buf.extend_from_slice(a.as_bytes());
    buf.extend_from_slice(b.as_bytes());
    assert_eq!(node_hash(&a, &b).as_bytes(), blake3::hash(&buf).as_bytes());
    assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_inclusion_proofs(n in 1..=PROPTEST_SIZE_MAX, i_seed in any::<u64>(), bit in 0usize..256) {
        let i = i_seed % n;
        let proof = tree().inclusion_proof(i, n).unwrap();
        prop_assert_eq!(root_from_inclusion(i, n, &leaf(i), &proof), Some(root(n)));
        check_inclusion_negative(i, n, false, bit);
    }

    #[test]
    fn random_consistency_proofs(a in 1..=PROPTEST_SIZE_MAX, b in 1..=PROPTEST_SIZE_MAX, bit in 0usize..256) {
        let (old, new) = (a.min(b), a.max(b));
        let proof = tree().consistency_proof(old, new).unwrap();
        prop_assert!(verify_consistency(old, new, &root(old), &root(new), &proof));
        check_consistency_negative(old, new, false, bit);
        if old < new {
            prop_assert!(!verify_consistency(new, old, &root(new), &root(old), &proof));
        }
    }

    #[test]
    fn random_aligned_ranges(len in 1u64..=2048, slot in 0u64..4096) {
        let width = len.next_power_of_two();
        let start = (slot / width) * width;
        prop_assume!(start + len <= 4096);
        check_range(start, start + len);
    }

    #[test]
    fn random_compact_range_from_parts(n in 0..=PROPTEST_SIZE_MAX) {
        let mut c = CompactRange::new();
        for i in 0..n {
            c.append(leaf(i));
        }
        prop_assert_eq!(c.root(), root(n));
        prop_assert_eq!(CompactRange::from_parts(n, c.peaks().to_vec()), Some(c));
    }
}
