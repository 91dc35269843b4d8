//! Sparse constants as TFLite stores them (`SparsityParameters`): the values of the non-zero
//! elements (or blocks) and, per traversal level, either a dense size or CSR segments and
//! indices. A sparse constant's `Tensor::data` is always its dense form, expanded and checked
//! once at import; the [`SparseForm`] rides along so a writer can store the tensor as it was
//! read, after checking that it still expands to the same data.

use bytes::Bytes;

/// One traversal level of a sparse tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum SparseLevel {
    /// Every index `0..size` is stored.
    Dense(usize),
    /// CSR: `segments[p]..segments[p + 1]` are the positions (in `indices`) of the stored indices
    /// under parent position `p`. `width` is the byte width the file used for the two arrays
    /// (1, 2 or 4), kept to write them back the same way.
    Csr { segments: Vec<u32>, indices: Vec<u32>, segments_width: u8, indices_width: u8 },
}

/// How a sparse constant is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseForm {
    /// The order the levels traverse the dimensions: the tensor's `rank` dimensions, then the
    /// block dimensions (`rank + k` for block `k`).
    pub traversal_order: Vec<usize>,
    /// For block `k`, the tensor dimension it blocks.
    pub block_map: Vec<usize>,
    /// One per entry of `traversal_order`.
    pub levels: Vec<SparseLevel>,
    /// The stored values, little-endian, in traversal order.
    pub values: Bytes,
}

/// Refuse a dense size, segment or index that would make expanding a sparse tensor read or
/// write out of bounds (the checks LiteRT's verifier makes; a lying header gets an error).
fn bad<T>(msg: impl Into<String>) -> Result<T, String> {
    Err(msg.into())
}

impl SparseForm {
    /// Expand into the dense row-major bytes of a tensor of `shape` with `elem` bytes per
    /// element. Every level, index and the count of stored values is checked.
    pub fn densify(&self, shape: &[usize], elem: usize) -> Result<Vec<u8>, String> {
        let rank = shape.len();
        let n_levels = self.traversal_order.len();
        if n_levels != self.levels.len() {
            return bad(format!("{} traversal entries but {} dimension metadata", n_levels, self.levels.len()));
        }
        if n_levels != rank + self.block_map.len() {
            return bad(format!(
                "traversal order has {n_levels} entries for rank {rank} with {} block dimensions",
                self.block_map.len()
            ));
        }
        // The first `rank` entries permute the tensor's dims, the rest the block dims.
        let mut seen = vec![false; n_levels];
        for (i, &t) in self.traversal_order.iter().enumerate() {
            let ok = if i < rank { t < rank } else { t >= rank && t < n_levels };
            if !ok || seen[t] {
                return bad(format!("traversal order {:?} is not a valid permutation", self.traversal_order));
            }
            seen[t] = true;
        }
        let level_of = |dim: usize| self.traversal_order.iter().position(|&t| t == dim).unwrap_or(0);
        // Block sizes: the dense size of the level that traverses block dim k.
        let mut block_size = Vec::with_capacity(self.block_map.len());
        let mut blocked: Vec<usize> = shape.to_vec();
        for (k, &d) in self.block_map.iter().enumerate() {
            if d >= rank || self.block_map[..k].contains(&d) {
                return bad(format!("block map {:?} is invalid for rank {rank}", self.block_map));
            }
            let SparseLevel::Dense(b) = self.levels[level_of(rank + k)] else {
                return bad(format!("block dimension {k} must be stored dense"));
            };
            if b == 0 || !shape[d].is_multiple_of(b) {
                return bad(format!("block size {b} does not divide dimension {d} of size {}", shape[d]));
            }
            block_size.push(b);
            blocked[d] = shape[d] / b;
        }
        // Each level's extent: a tensor dim's blocked size or a block's size.
        let extent = |level: usize| {
            let t = self.traversal_order[level];
            if t < rank { blocked[t] } else { block_size[t - rank] }
        };
        let mut parents = 1usize;
        for (l, lv) in self.levels.iter().enumerate() {
            match lv {
                SparseLevel::Dense(n) => {
                    if *n != extent(l) {
                        return bad(format!("level {l} is dense of size {n}, its dimension has {}", extent(l)));
                    }
                    parents = parents.checked_mul(*n).ok_or("sparse index space overflows")?;
                }
                SparseLevel::Csr { segments, indices, .. } => {
                    if segments.len() != parents + 1 || segments.first() != Some(&0) {
                        return bad(format!(
                            "level {l}: {} segments for {parents} parents (need {} starting at 0)",
                            segments.len(),
                            parents + 1
                        ));
                    }
                    if segments.windows(2).any(|w| w[0] > w[1]) || segments[parents] as usize != indices.len() {
                        return bad(format!(
                            "level {l}: segments must be non-decreasing and end at the {} indices",
                            indices.len()
                        ));
                    }
                    for w in segments.windows(2) {
                        let seg = &indices[w[0] as usize..w[1] as usize];
                        if seg.iter().any(|&i| i as usize >= extent(l)) || seg.windows(2).any(|p| p[0] >= p[1]) {
                            return bad(format!("level {l}: indices must be increasing and below {}", extent(l)));
                        }
                    }
                    parents = indices.len();
                }
            }
        }
        if self.values.len() != parents.checked_mul(elem).ok_or("sparse value count overflows")? {
            return bad(format!(
                "{} stored values expected ({} bytes), the buffer has {} bytes",
                parents,
                parents.saturating_mul(elem),
                self.values.len()
            ));
        }
        let total = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("dense size overflows")?;
        let mut out = vec![0u8; total.checked_mul(elem).ok_or("dense size overflows")?];
        let mut strides = vec![1usize; rank];
        for d in (0..rank.saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * shape[d + 1];
        }
        // Depth-first over the levels with an explicit stack: (level, parent position, index).
        let mut idx = vec![0usize; n_levels];
        let mut next_value = 0usize;
        self.walk(0, 0, &mut idx, &mut |idx| {
            let mut coord = vec![0usize; rank];
            for (l, &i) in idx.iter().enumerate().take(rank) {
                coord[self.traversal_order[l]] = i;
            }
            for (l, &i) in idx.iter().enumerate().skip(rank) {
                let k = self.traversal_order[l] - rank;
                let d = self.block_map[k];
                coord[d] = coord[d] * block_size[k] + i;
            }
            let flat: usize = coord.iter().zip(&strides).map(|(c, s)| c * s).sum();
            let v = next_value * elem;
            out[flat * elem..flat * elem + elem].copy_from_slice(&self.values[v..v + elem]);
            next_value += 1;
        });
        Ok(out)
    }

    /// Visit every stored element's per-level indices, in storage order (validated first).
    fn walk(&self, level: usize, parent: usize, idx: &mut Vec<usize>, f: &mut dyn FnMut(&[usize])) {
        if level == self.levels.len() {
            f(idx);
            return;
        }
        match &self.levels[level] {
            SparseLevel::Dense(n) => {
                for i in 0..*n {
                    idx[level] = i;
                    self.walk(level + 1, parent * n + i, idx, f);
                }
            }
            SparseLevel::Csr { segments, indices, .. } => {
                let (lo, hi) = (segments[parent] as usize, segments[parent + 1] as usize);
                for (p, &i) in indices.iter().enumerate().take(hi).skip(lo) {
                    idx[level] = i as usize;
                    self.walk(level + 1, p, idx, f);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(segments: &[u32], indices: &[u32]) -> SparseLevel {
        SparseLevel::Csr { segments: segments.to_vec(), indices: indices.to_vec(), segments_width: 4, indices_width: 4 }
    }

    /// The 4×4 example of TFLite's schema comments: rows dense, columns CSR.
    #[test]
    fn csr_matrix_expands() {
        let values: Vec<u8> = [6u8, 9, 8, 5].to_vec();
        let s = SparseForm {
            traversal_order: vec![0, 1],
            block_map: vec![],
            levels: vec![SparseLevel::Dense(4), csr(&[0, 2, 2, 3, 4], &[0, 3, 2, 1])],
            values: Bytes::from(values),
        };
        let d = s.densify(&[4, 4], 1).unwrap();
        assert_eq!(d, [6, 0, 0, 9, 0, 0, 0, 0, 0, 0, 8, 0, 0, 5, 0, 0]);
    }

    /// 2×2 blocks of a 4×4 matrix: blocked rows dense, blocked columns CSR, blocks dense.
    #[test]
    fn block_sparse_expands() {
        // Blocks at (0,0) and (1,1).
        let values: Vec<u8> = (1..=8).collect();
        let s = SparseForm {
            traversal_order: vec![0, 1, 2, 3],
            block_map: vec![0, 1],
            levels: vec![SparseLevel::Dense(2), csr(&[0, 1, 2], &[0, 1]), SparseLevel::Dense(2), SparseLevel::Dense(2)],
            values: Bytes::from(values),
        };
        let d = s.densify(&[4, 4], 1).unwrap();
        assert_eq!(d, [1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 5, 6, 0, 0, 7, 8]);
    }

    #[test]
    fn lying_metadata_is_an_error() {
        let ok = SparseForm {
            traversal_order: vec![0, 1],
            block_map: vec![],
            levels: vec![SparseLevel::Dense(2), csr(&[0, 1, 2], &[1, 0])],
            values: Bytes::from(vec![1u8, 2]),
        };
        assert_eq!(ok.densify(&[2, 2], 1).unwrap(), [0, 1, 2, 0]);
        let mut bad_index = ok.clone();
        bad_index.levels[1] = csr(&[0, 1, 2], &[5, 0]);
        assert!(bad_index.densify(&[2, 2], 1).unwrap_err().contains("below 2"));
        let mut bad_segments = ok.clone();
        bad_segments.levels[1] = csr(&[0, 9, 2], &[1, 0]);
        assert!(bad_segments.densify(&[2, 2], 1).is_err());
        let mut short = ok.clone();
        short.values = Bytes::from(vec![1u8]);
        assert!(short.densify(&[2, 2], 1).unwrap_err().contains("stored values"));
        let mut perm = ok.clone();
        perm.traversal_order = vec![0, 0];
        assert!(perm.densify(&[2, 2], 1).is_err());
        let mut dense = ok;
        dense.levels[0] = SparseLevel::Dense(3);
        assert!(dense.densify(&[2, 2], 1).is_err());
    }
}
