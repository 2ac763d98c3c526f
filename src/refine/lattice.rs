//! The permutohedral lattice (Adams, Baek and Davis, 2010): Gaussian filtering of values
//! attached to points in a `d`-dimensional feature space, in time linear in the points.
//!
//! Points are splatted onto the vertices of the simplex that encloses them, the vertex
//! values are blurred along each of the `d + 1` lattice axes, and the result is sliced back
//! at the points. The arithmetic follows Krähenbühl's densecrf (its SSE path) step by step,
//! so a mean-field CRF built on it agrees with that reference; the data layout does not:
//! the lattice is built once per frame with a cache of enclosing simplices, splatting is a
//! gather over each vertex's points (so it splits across threads without atomics), and all
//! passes run on rayon's pool.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use rayon::prelude::*;

/// Most feature dimensions (position and colour).
pub const MAX_DIM: usize = 5;

/// Vertex keys are `d` coordinates of 16 bits; frames and kernels that need more are refused.
const KEY_LIMIT: f32 = 32_000.0;

/// Pixels (or vertices) per parallel task.
const CHUNK: usize = 4096;

#[derive(Debug, thiserror::Error)]
#[error(
    "lattice coordinates out of range: features up to {0:.0} (the frame is too large for \
     the kernel's standard deviations)"
)]
pub struct LatticeError(f32);

/// Multiply-xorshift hashing of packed lattice keys.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u128(&mut self, v: u128) {
        let x = (v as u64) ^ ((v >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let x = (x ^ (x >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        self.0 = x ^ (x >> 29);
    }
}

type Map<V> = HashMap<u128, V, BuildHasherDefault<KeyHasher>>;

/// Packs `d` small signed coordinates, 16 bits each.
fn pack(coords: &[i32]) -> u128 {
    coords
        .iter()
        .enumerate()
        .fold(0u128, |k, (i, &c)| k | ((c as u16 as u128) << (16 * i)))
}

fn unpack(key: u128, d: usize, out: &mut [i32]) {
    for (i, c) in out.iter_mut().enumerate().take(d) {
        *c = (key >> (16 * i)) as u16 as i16 as i32;
    }
}

/// Rounds to the nearest integer, ties to even (as SSE's rounding does), without the libm
/// call `round_ties_even` becomes on the x86-64 baseline: adding and subtracting 1.5 · 2²³
/// leaves the rounded value for magnitudes up to 2²², which covers every coordinate below
/// `KEY_LIMIT`; larger ones (refused later anyway) take the slow path. (For the one-point
/// reference: [`Elevation::enclose8`] uses `round_ties_even`, one instruction under AVX2
/// and a library call in the portable fallback.)
#[cfg(test)]
#[inline(always)]
fn round_even(v: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    if v.abs() < 4_194_304.0 {
        (v + ROUND) - ROUND
    } else {
        v.round_ties_even()
    }
}

/// Where one point lies: its enclosing simplex (the remainder-0 vertex and the coordinate
/// ranks, which determine every vertex) and its barycentric weights.
struct Enclosing {
    simplex: u128,
    bary: [f32; MAX_DIM + 1],
    largest: f32,
}

/// The lattice arithmetic shared by every point.
struct Elevation {
    d: usize,
    scale: [f32; MAX_DIM],
}

impl Elevation {
    fn new(d: usize) -> Self {
        // Expected standard deviation of the filter and the diagonal of E (Adams et al.,
        // pp. 5-6), computed as densecrf does: in double, then stored as float.
        let inv_std_dev = ((2.0f64 / 3.0).sqrt() * (d + 1) as f64) as f32;
        let mut scale = [0f32; MAX_DIM];
        for (i, s) in scale.iter_mut().enumerate().take(d) {
            *s = (1.0 / (((i + 2) * (i + 1)) as f64).sqrt() * inv_std_dev as f64) as f32;
        }
        Elevation { d, scale }
    }

    /// `D` is the dimension (`self.d`), a constant so the small loops unroll. One point at
    /// a time, as densecrf computes it: the reference the tests hold [`Self::enclose8`] to.
    #[cfg(test)]
    fn enclose<const D: usize>(&self, f: &[f32; MAX_DIM]) -> Enclosing {
        let d = D;
        let dp1 = (d + 1) as f32;
        let down = 1.0 / dp1;
        let mut elevated = [0f32; MAX_DIM + 1];
        let mut sm = 0f32;
        for j in (1..=d).rev() {
            let cf = f[j - 1] * self.scale[j - 1];
            elevated[j] = sm - j as f32 * cf;
            sm += cf;
        }
        elevated[0] = sm;

        // The closest remainder-0 point, by rounding (to nearest even, as SSE does).
        let mut rem0 = [0f32; MAX_DIM + 1];
        let mut sum = 0f32;
        for i in 0..=d {
            let v = round_even(down * elevated[i]);
            rem0[i] = v * dp1;
            sum += v;
        }
        // The rank of each coordinate's remainder, which orders the simplex's vertices.
        let mut rank = [0f32; MAX_DIM + 1];
        // Branch-free: the comparisons go either way at random, and mispredicted branches
        // cost more than the rest of the point's arithmetic.
        for i in 0..d {
            let di = elevated[i] - rem0[i];
            for j in i + 1..=d {
                let dj = elevated[j] - rem0[j];
                let lt = (di < dj) as u32 as f32;
                rank[i] += lt;
                rank[j] += 1.0 - lt;
            }
        }
        // Back onto the hyperplane when the rounded point left it (branch-free too).
        for i in 0..=d {
            let r = rank[i] + sum;
            let shift = dp1 * ((r < 0.0) as u32 as f32 - (r >= dp1) as u32 as f32);
            rank[i] = r + shift;
            rem0[i] += shift;
        }
        // Barycentric weights: coordinate i adds to weight d - rank[i] and subtracts from the
        // next. The ranks are a permutation, so each weight is one difference, computed from
        // plain stores (adding in place at computed indices chains every step through
        // memory).
        let mut by_rank = [0f32; MAX_DIM + 1];
        for i in 0..=d {
            by_rank[d - rank[i] as usize] = (elevated[i] - rem0[i]) * down;
        }
        let mut b = [0f32; MAX_DIM + 2];
        b[0] = by_rank[0] + (1.0 - by_rank[d]);
        for k in 1..=d {
            b[k] = by_rank[k] - by_rank[k - 1];
        }

        let mut simplex = 0u128;
        let mut largest = 0f32;
        for i in 0..d {
            largest = largest.max(rem0[i].abs());
            simplex |= (rem0[i] as i32 as u16 as u128) << (16 * i);
            simplex |= (rank[i] as u32 as u128) << (16 * MAX_DIM + 3 * i);
        }
        let mut bary = [0f32; MAX_DIM + 1];
        bary[..=d].copy_from_slice(&b[..=d]);
        Enclosing {
            simplex,
            bary,
            largest,
        }
    }

    /// [`Self::enclose`] for eight points at once, `f[dim][lane]`: the same operations in
    /// the same order on each lane (so the same bits), written over lanes so they
    /// vectorize; the barycentric store by rank becomes a select per rank.
    #[inline(always)]
    fn enclose8<const D: usize>(&self, f: &[[f32; 8]; MAX_DIM]) -> [Enclosing; 8] {
        type L = [f32; 8];
        let d = D;
        let dp1 = (d + 1) as f32;
        let down = 1.0 / dp1;
        let mut elevated = [[0f32; 8]; MAX_DIM + 1];
        let mut sm: L = [0.0; 8];
        for j in (1..=d).rev() {
            for l in 0..8 {
                let cf = f[j - 1][l] * self.scale[j - 1];
                elevated[j][l] = sm[l] - j as f32 * cf;
                sm[l] += cf;
            }
        }
        elevated[0] = sm;
        let mut rem0 = [[0f32; 8]; MAX_DIM + 1];
        let mut sum: L = [0.0; 8];
        for i in 0..=d {
            for l in 0..8 {
                // Exactly `round_even` (adding and subtracting 2^23 + 2^22 rounds to even).
                let v = (down * elevated[i][l]).round_ties_even();
                rem0[i][l] = v * dp1;
                sum[l] += v;
            }
        }
        let mut rank = [[0f32; 8]; MAX_DIM + 1];
        for i in 0..d {
            for j in i + 1..=d {
                for l in 0..8 {
                    let di = elevated[i][l] - rem0[i][l];
                    let dj = elevated[j][l] - rem0[j][l];
                    let lt = (di < dj) as u32 as f32;
                    rank[i][l] += lt;
                    rank[j][l] += 1.0 - lt;
                }
            }
        }
        for i in 0..=d {
            for l in 0..8 {
                let r = rank[i][l] + sum[l];
                let shift = dp1 * ((r < 0.0) as u32 as f32 - (r >= dp1) as u32 as f32);
                rank[i][l] = r + shift;
                rem0[i][l] += shift;
            }
        }
        let mut by_rank = [[0f32; 8]; MAX_DIM + 1];
        for (k, by_rank) in by_rank.iter_mut().enumerate().take(d + 1) {
            let want = (d - k) as f32;
            for i in 0..=d {
                for l in 0..8 {
                    let v = (elevated[i][l] - rem0[i][l]) * down;
                    by_rank[l] = if rank[i][l] == want { v } else { by_rank[l] };
                }
            }
        }
        std::array::from_fn(|l| {
            let mut bary = [0f32; MAX_DIM + 1];
            bary[0] = by_rank[0][l] + (1.0 - by_rank[d][l]);
            for k in 1..=d {
                bary[k] = by_rank[k][l] - by_rank[k - 1][l];
            }
            let mut simplex = 0u128;
            let mut largest = 0f32;
            for i in 0..d {
                largest = largest.max(rem0[i][l].abs());
                simplex |= (rem0[i][l] as i32 as u16 as u128) << (16 * i);
                simplex |= (rank[i][l] as u32 as u128) << (16 * MAX_DIM + 3 * i);
            }
            Enclosing {
                simplex,
                bary,
                largest,
            }
        })
    }

    /// The keys of a simplex's `d + 1` vertices, by remainder.
    fn vertices(&self, simplex: u128, out: &mut [u128; MAX_DIM + 1]) {
        let d = self.d;
        let mut rem0 = [0i32; MAX_DIM];
        unpack(simplex, d, &mut rem0);
        let mut key = [0i32; MAX_DIM];
        for (r, out) in out.iter_mut().enumerate().take(d + 1) {
            for i in 0..d {
                let rank = ((simplex >> (16 * MAX_DIM + 3 * i)) & 7) as usize;
                // The canonical simplex: remainder r adds r, or r - (d + 1) past d - r.
                let canonical = if rank <= d - r {
                    r as i32
                } else {
                    r as i32 - (d as i32 + 1)
                };
                key[i] = rem0[i] + canonical;
            }
            *out = pack(&key[..d]);
        }
    }
}

/// A lattice's storage, kept between frames so steady-state video allocates (and
/// first-touches) nothing: at 1920x1080 a lattice is a few hundred megabytes.
#[derive(Default)]
pub struct LatticeBuffers {
    offset: Vec<u32>,
    bary: Vec<f32>,
    pre: Vec<f32>,
    post: Vec<f32>,
    neighbours: Vec<[u32; 2]>,
    simplex: Vec<u128>,
    numbering: Vec<Numbering>,
}

/// One task's share of numbering the vertices: the points of one run, numbered on their
/// own (vertex ids from 1 in order of first use), then renumbered into the whole lattice's
/// order. After the merge the first task's map and keys are the lattice's.
#[derive(Default)]
struct Numbering {
    /// Vertex key to id.
    vertices: Map<u32>,
    /// Simplex key to the first of the run's points inside it.
    simplices: Map<u32>,
    /// Keys by id - 1.
    keys: Vec<u128>,
    /// This run's ids to the lattice's (index 0 stays 0).
    remap: Vec<u32>,
}

impl Numbering {
    /// Numbers the vertices of points `simplex` (one run), writing each point's `dp1`
    /// vertex ids into `offset`. Neighbouring points mostly share their simplex, so
    /// simplices are looked up first and vertices only for new simplices.
    fn number(&mut self, e: &Elevation, simplex: &[u128], offset: &mut [u32]) {
        let dp1 = e.d + 1;
        self.vertices.clear();
        self.simplices.clear();
        self.keys.clear();
        let mut vkeys = [0u128; MAX_DIM + 1];
        let mut last = u128::MAX;
        for (i, &s) in simplex.iter().enumerate() {
            let from = if s == last {
                Some(i - 1)
            } else {
                self.simplices.get(&s).map(|&p| p as usize)
            };
            match from {
                Some(p) => offset.copy_within(p * dp1..(p + 1) * dp1, i * dp1),
                None => {
                    e.vertices(s, &mut vkeys);
                    for (r, &key) in vkeys.iter().enumerate().take(dp1) {
                        offset[i * dp1 + r] = self.id(key);
                    }
                    self.simplices.insert(s, i as u32);
                }
            }
            last = s;
        }
    }

    /// Gives `run`'s vertices ids in this (the first run's) numbering, new ones after the
    /// ones already here in `run`'s order: the order of first use over all points.
    fn absorb(&mut self, run: &mut Numbering) {
        run.remap.clear();
        run.remap.push(0);
        for &key in &run.keys {
            run.remap.push(self.id(key));
        }
    }

    /// Vertex `key`'s id, the next one if it is new.
    #[inline(always)]
    fn id(&mut self, key: u128) -> u32 {
        let next = self.keys.len() as u32 + 1;
        let keys = &mut self.keys;
        *self.vertices.entry(key).or_insert_with(|| {
            keys.push(key);
            next
        })
    }
}

/// Working space of [`Lattice::splat_blur`], kept between calls.
#[derive(Default)]
pub struct FilterBuffers {
    /// The blurred vertex values after `splat_blur`: row `v` for vertex `v`, row 0 zero.
    pub values: Vec<f32>,
    scratch: Vec<f32>,
    /// Per task, a copy of the vertex rows that task splats into.
    pub(crate) partials: Vec<Vec<f32>>,
}

/// Most floats of per-task vertex copies for splatting in point order.
pub(crate) const SCATTER_LIMIT: usize = 16 << 20;

/// `v` emptied and refilled with `len` default values, keeping its allocation.
pub(crate) fn refill<T: Copy + Default>(v: &mut Vec<T>, len: usize) {
    v.clear();
    v.resize(len, T::default());
}

/// Encloses points `first..` (as many as `simplex` holds); returns the largest remainder-0
/// coordinate seen.
fn locate<const D: usize>(
    e: &Elevation,
    feature: &(impl Fn(usize, &mut [f32; MAX_DIM]) + Sync),
    first: usize,
    simplex: &mut [u128],
    weight: &mut [f32],
) -> f32 {
    let mut run = || locate_in::<D>(e, feature, first, simplex, weight);
    #[cfg(target_arch = "x86_64")]
    if super::lanes::avx2() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(run: impl FnOnce() -> R) -> R {
            run()
        }
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { avx2(run) };
    }
    run()
}

/// [`locate`]'s body: eight points at a time.
#[inline(always)]
fn locate_in<const D: usize>(
    e: &Elevation,
    feature: &(impl Fn(usize, &mut [f32; MAX_DIM]) + Sync),
    first: usize,
    simplex: &mut [u128],
    weight: &mut [f32],
) -> f32 {
    let mut f = [0f32; MAX_DIM];
    let mut largest = 0f32;
    for (g, (s, w)) in simplex
        .chunks_mut(8)
        .zip(weight.chunks_mut(8 * (D + 1)))
        .enumerate()
    {
        // A last group of fewer than eight points repeats its last point in the spare lanes.
        let mut lanes = [[0f32; 8]; MAX_DIM];
        for l in 0..8 {
            feature(first + g * 8 + l.min(s.len() - 1), &mut f);
            for (j, lane) in lanes.iter_mut().enumerate().take(D) {
                lane[l] = f[j];
            }
        }
        let enc = e.enclose8::<D>(&lanes);
        for ((s, w), enc) in s.iter_mut().zip(w.chunks_exact_mut(D + 1)).zip(&enc) {
            *s = enc.simplex;
            w.copy_from_slice(&enc.bary[..D + 1]);
            largest = largest.max(enc.largest);
        }
    }
    largest
}

/// A lattice built for one set of points, ready to filter any values attached to them.
pub struct Lattice {
    d: usize,
    /// Points.
    n: usize,
    /// Vertices; vertex values are stored from row 1, row 0 is the zero of missing neighbours.
    m: usize,
    /// Per point, its `d + 1` vertices (1-based rows).
    pub(crate) offset: Vec<u32>,
    /// Per point, the barycentric weights of its vertices.
    pub(crate) bary: Vec<f32>,
    /// Per point, a factor on its splatted values (1 until `normalize`).
    pub(crate) pre: Vec<f32>,
    /// Per point, a factor on its sliced values (1 until `normalize`).
    pub(crate) post: Vec<f32>,
    /// Per axis and vertex, the two neighbours along the axis (rows, 0 when absent).
    neighbours: Vec<[u32; 2]>,
    /// Build-time storage, handed back by `into_buffers`.
    spare: (Vec<u128>, Vec<Numbering>),
}

impl Lattice {
    /// Builds the lattice of `n` points whose `d`-dimensional features `feature(i, &mut f)`
    /// writes (already divided by the kernel's standard deviations).
    pub fn new(
        n: usize,
        d: usize,
        feature: impl Fn(usize, &mut [f32; MAX_DIM]) + Sync,
    ) -> Result<Lattice, LatticeError> {
        Self::new_in(n, d, feature, LatticeBuffers::default())
    }

    /// [`Lattice::new`] in storage left by an earlier lattice ([`Lattice::into_buffers`]).
    pub fn new_in(
        n: usize,
        d: usize,
        feature: impl Fn(usize, &mut [f32; MAX_DIM]) + Sync,
        buffers: LatticeBuffers,
    ) -> Result<Lattice, LatticeError> {
        assert!((1..=MAX_DIM).contains(&d), "lattice dimension {d}");
        let e = Elevation::new(d);
        let dp1 = d + 1;
        let LatticeBuffers {
            mut offset,
            bary: mut weight,
            mut pre,
            mut post,
            mut neighbours,
            mut simplex,
            mut numbering,
        } = buffers;

        // Where every point lies, in parallel.
        refill(&mut simplex, n);
        refill(&mut weight, n * dp1);
        let largest = simplex
            .par_chunks_mut(CHUNK)
            .zip(weight.par_chunks_mut(CHUNK * dp1))
            .enumerate()
            .map(|(c, (s, w))| match d {
                1 => locate::<1>(&e, &feature, c * CHUNK, s, w),
                2 => locate::<2>(&e, &feature, c * CHUNK, s, w),
                3 => locate::<3>(&e, &feature, c * CHUNK, s, w),
                4 => locate::<4>(&e, &feature, c * CHUNK, s, w),
                _ => locate::<5>(&e, &feature, c * CHUNK, s, w),
            })
            .reduce(|| 0.0, f32::max);
        // NaN features fail too.
        if largest.is_nan() || largest >= KEY_LIMIT {
            return Err(LatticeError(largest));
        }

        // Number the vertices in order of first use: runs of points in parallel, each on
        // its own, then each later run's vertices renumbered after the runs before it (the
        // same numbering as one pass over all points).
        refill(&mut offset, n * dp1);
        let runs = rayon::current_num_threads().clamp(1, n.div_ceil(4 * CHUNK).max(1));
        let per = n.div_ceil(runs).max(1);
        let runs = n.div_ceil(per).max(1);
        numbering.resize_with(runs, Numbering::default);
        if n == 0 {
            numbering[0].number(&e, &[], &mut []);
        }
        offset
            .par_chunks_mut(per * dp1)
            .zip(simplex.par_chunks(per))
            .zip(numbering.par_iter_mut())
            .for_each(|((offset, simplex), run)| run.number(&e, simplex, offset));
        if let Some((first, later)) = numbering.split_first_mut() {
            for run in later.iter_mut() {
                first.absorb(run);
            }
        }
        offset
            .par_chunks_mut(per * dp1)
            .zip(numbering.par_iter())
            .skip(1)
            .for_each(|(offset, run)| {
                for o in offset {
                    *o = run.remap[*o as usize];
                }
            });
        let (keys, vertices) = (&numbering[0].keys, &numbering[0].vertices);
        let m = keys.len();

        // Blur neighbours along each axis: all coordinates -1 except axis j at +d, and the
        // opposite (the last axis is implicit in the key). The two are inverse steps, so
        // one lookup per vertex and axis finds both: when `u` is the first neighbour of
        // `v`, `v` is the second neighbour of `u`.
        refill(&mut neighbours, dp1 * m);
        neighbours
            .par_chunks_mut(m.max(1))
            .enumerate()
            .for_each(|(j, axis)| {
                let mut c = [0i32; MAX_DIM];
                let mut n1 = [0i32; MAX_DIM];
                for (v, nb) in axis.iter_mut().enumerate() {
                    unpack(keys[v], d, &mut c);
                    for k in 0..d {
                        n1[k] = c[k] - 1;
                    }
                    if j < d {
                        n1[j] = c[j] + d as i32;
                    }
                    nb[0] = vertices.get(&pack(&n1[..d])).copied().unwrap_or(0);
                }
                for v in 0..axis.len() {
                    let u = axis[v][0] as usize;
                    if u != 0 {
                        axis[u - 1][1] = v as u32 + 1;
                    }
                }
            });

        pre.clear();
        pre.resize(n, 1.0);
        post.clear();
        post.resize(n, 1.0);
        Ok(Lattice {
            d,
            n,
            m,
            offset,
            bary: weight,
            pre,
            post,
            neighbours,
            spare: (simplex, numbering),
        })
    }

    /// The lattice's storage, for building the next one in.
    pub fn into_buffers(self) -> LatticeBuffers {
        let (simplex, numbering) = self.spare;
        LatticeBuffers {
            offset: self.offset,
            bary: self.bary,
            pre: self.pre,
            post: self.post,
            neighbours: self.neighbours,
            simplex,
            numbering,
        }
    }

    pub fn dim(&self) -> usize {
        self.d
    }

    pub fn points(&self) -> usize {
        self.n
    }

    pub fn vertices(&self) -> usize {
        self.m
    }

    /// densecrf's "magic scaling constant" of the slice.
    pub fn alpha(&self) -> f32 {
        1.0 / (1.0 + 2f32.powi(-(self.d as i32)))
    }

    /// Symmetric normalization with a Potts `weight`, as densecrf's `NORMALIZE_SYMMETRIC`:
    /// with `n = (α K 1 + 1e-20)^-1/2`, every point's splatted values are multiplied by
    /// `n[i]` and its sliced values by `n[i] · α · weight`.
    pub fn normalize(&mut self, weight: f32) {
        let mut buffers = FilterBuffers::default();
        let ones = vec![1f32; self.n];
        self.splat_blur(&ones, 1, &mut buffers);
        drop(ones);
        let alpha = self.alpha();
        let (offset, bary, values) = (&self.offset, &self.bary, &buffers.values);
        let dp1 = self.d + 1;
        self.pre
            .par_iter_mut()
            .zip(self.post.par_iter_mut())
            .enumerate()
            .for_each(|(i, (pre, post))| {
                let k1 = slice_scalar(&offset[i * dp1..], &bary[i * dp1..], dp1, values) * alpha;
                *pre = 1.0 / (k1 + 1e-20).sqrt();
                *post = *pre * alpha * weight;
            });
    }

    /// Splats `input` (`cp` values per point) onto the vertices and blurs them; the blurred
    /// vertex rows end up in `buffers.values` (row 0 zero).
    pub fn splat_blur(&self, input: &[f32], cp: usize, buffers: &mut FilterBuffers) {
        let FilterBuffers {
            values, partials, ..
        } = buffers;
        let rows = (self.m + 1) * cp;
        refill(values, rows);
        // Splat in point order, reading the input once and sequentially: with a copy of
        // the vertex rows per task where the copies are small, else on one thread.
        let tasks = rayon::current_num_threads()
            .min(self.n.div_ceil(CHUNK))
            .max(1);
        let tasks = if rows * tasks <= SCATTER_LIMIT {
            tasks
        } else {
            1
        };
        if tasks == 1 {
            simd::scatter(self, input, cp, 0..self.n, values);
        } else {
            partials.resize_with(tasks, Vec::new);
            let span = self.n.div_ceil(tasks);
            partials.par_iter_mut().enumerate().for_each(|(t, buf)| {
                refill(buf, rows);
                let points = t * span..((t + 1) * span).min(self.n);
                simd::scatter(self, input, cp, points, buf);
            });
            let parts: Vec<(&[f32], usize)> = partials.iter().map(|p| (&p[..], 0)).collect();
            super::lanes::sum_into(values, &parts);
        }
        self.blur(cp, buffers);
    }

    /// Blurs the vertex rows in `buffers.values` (`cp` values each, row 0 zero) along every
    /// lattice axis, in place.
    pub fn blur(&self, cp: usize, buffers: &mut FilterBuffers) {
        let FilterBuffers {
            values, scratch, ..
        } = buffers;
        let rows = (self.m + 1) * cp;
        debug_assert_eq!(values.len(), rows);
        refill(scratch, rows);
        let per = (CHUNK / cp).max(16);
        for j in 0..=self.d {
            let nb = &self.neighbours[j * self.m..(j + 1) * self.m];
            let old = &values[..];
            scratch[cp..]
                .par_chunks_mut(per * cp)
                .enumerate()
                .for_each(|(c, out)| {
                    simd::blur(old, &nb[c * per..], cp, c * per, out);
                });
            std::mem::swap(values, scratch);
        }
    }

    /// Gaussian filtering of one value per point, sliced with the current weights.
    pub fn filter_scalar(&self, input: &[f32]) -> Vec<f32> {
        let mut buffers = FilterBuffers::default();
        self.splat_blur(input, 1, &mut buffers);
        let dp1 = self.d + 1;
        (0..self.n)
            .into_par_iter()
            .map(|i| {
                let (o, b) = (&self.offset[i * dp1..], &self.bary[i * dp1..]);
                slice_scalar(o, b, dp1, &buffers.values) * self.alpha()
            })
            .collect()
    }
}

/// One point's value sliced from blurred scalar vertex `values`: its first `dp1` vertices
/// and weights.
fn slice_scalar(offset: &[u32], bary: &[f32], dp1: usize, values: &[f32]) -> f32 {
    (0..dp1).map(|r| bary[r] * values[offset[r] as usize]).sum()
}

/// The inner loops, compiled twice: for the baseline and, picked at run time, for AVX2 with
/// FMA (eight lanes). `cp` is a multiple of 8 for the multi-class passes.
pub(crate) mod simd {
    use super::Lattice;

    #[inline(always)]
    fn scatter_body<const F: bool>(
        l: &Lattice,
        input: &[f32],
        cp: usize,
        points: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        let dp1 = l.d + 1;
        for i in points {
            let x = &input[i * cp..i * cp + cp];
            let p = l.pre[i];
            for e in i * dp1..i * dp1 + dp1 {
                let o = l.offset[e] as usize * cp;
                let w = l.bary[e] * p;
                if cp.is_multiple_of(8) {
                    crate::refine::lanes::axpy::<F>(&mut out[o..o + cp], w, x);
                } else {
                    for (o, &x) in out[o..o + cp].iter_mut().zip(x) {
                        *o += w * x;
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn scatter_avx2(
        l: &Lattice,
        input: &[f32],
        cp: usize,
        points: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        scatter_body::<true>(l, input, cp, points, out)
    }

    pub(super) fn scatter(
        l: &Lattice,
        input: &[f32],
        cp: usize,
        points: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            return unsafe { scatter_avx2(l, input, cp, points, out) };
        }
        scatter_body::<false>(l, input, cp, points, out)
    }

    #[inline(always)]
    fn blur_body(old: &[f32], nb: &[[u32; 2]], cp: usize, first: usize, out: &mut [f32]) {
        for (k, row) in out.chunks_exact_mut(cp).enumerate() {
            let v = first + k + 1;
            let [n1, n2] = nb[k];
            let (n1, n2) = (n1 as usize * cp, n2 as usize * cp);
            let o = &old[v * cp..v * cp + cp];
            let (a, b) = (&old[n1..n1 + cp], &old[n2..n2 + cp]);
            if cp.is_multiple_of(8) {
                let blocks = row.chunks_exact_mut(8).zip(o.chunks_exact(8));
                for ((r, o), (a, b)) in blocks.zip(a.chunks_exact(8).zip(b.chunks_exact(8))) {
                    for k in 0..8 {
                        r[k] = o[k] + 0.5 * (a[k] + b[k]);
                    }
                }
            } else {
                for (((r, &o), &a), &b) in row.iter_mut().zip(o).zip(a).zip(b) {
                    *r = o + 0.5 * (a + b);
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn blur_avx2(old: &[f32], nb: &[[u32; 2]], cp: usize, first: usize, out: &mut [f32]) {
        blur_body(old, nb, cp, first, out)
    }

    use crate::refine::lanes::avx2;

    pub(super) fn blur(old: &[f32], nb: &[[u32; 2]], cp: usize, first: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            return unsafe { blur_avx2(old, nb, cp, first, out) };
        }
        blur_body(old, nb, cp, first, out)
    }
}

#[cfg(test)]
mod tests {
    /// Eight points at a time give the bits one point at a time gives.
    #[test]
    fn eight_lanes_enclose_as_one() {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 40) as f32 / (1u64 << 24) as f32
        };
        fn check<const D: usize>(next: &mut impl FnMut() -> f32) {
            let e = super::Elevation::new(D);
            for round in 0..200 {
                let span = [0.01f32, 1.0, 30.0, 400.0][round % 4];
                let mut lanes = [[0f32; 8]; super::MAX_DIM];
                for lane in lanes.iter_mut().take(D) {
                    for v in lane.iter_mut() {
                        *v = (next() - 0.5) * span;
                    }
                }
                // Exact ties between remainders too.
                if round % 5 == 0 {
                    lanes[0] = [0.0; 8];
                }
                let eight = e.enclose8::<D>(&lanes);
                for (l, got) in eight.iter().enumerate() {
                    let mut f = [0f32; super::MAX_DIM];
                    for j in 0..D {
                        f[j] = lanes[j][l];
                    }
                    let want = e.enclose::<D>(&f);
                    assert_eq!(got.simplex, want.simplex, "d {D}, round {round}, lane {l}");
                    let (g, w) = (&got.bary[..=D], &want.bary[..=D]);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(g), bits(w), "d {D}, round {round}, lane {l}");
                    assert_eq!(got.largest.to_bits(), want.largest.to_bits());
                }
            }
        }
        check::<1>(&mut next);
        check::<2>(&mut next);
        check::<3>(&mut next);
        check::<5>(&mut next);
    }

    use super::*;

    /// Filtering a constant gives (nearly) the same constant everywhere away from borders:
    /// the lattice blur is a normalized Gaussian up to densecrf's scaling.
    #[test]
    fn blur_of_a_single_point_is_symmetric_and_decays() {
        // A 21x21 grid of positions with unit spacing (standard deviation 1).
        let (w, h) = (21usize, 21usize);
        let l = Lattice::new(w * h, 2, |i, f| {
            f[0] = (i % w) as f32 / 2.0;
            f[1] = (i / w) as f32 / 2.0;
        })
        .unwrap();
        let mut input = vec![0f32; w * h];
        input[10 * w + 10] = 1.0;
        let out = l.filter_scalar(&input);
        let at = |x: usize, y: usize| out[y * w + x];
        assert!(at(10, 10) > at(11, 10) && at(11, 10) > at(13, 10));
        assert!(at(10, 10) > at(10, 11) && at(10, 11) > at(10, 13));
        assert!(at(18, 10) < 0.01 * at(10, 10));
        // Roughly isotropic: left and right, up and down within 30%.
        for (a, b) in [(at(9, 10), at(11, 10)), (at(10, 9), at(10, 11))] {
            assert!((a - b).abs() < 0.3 * a.max(b), "{a} {b}");
        }
    }

    #[test]
    fn neighbouring_points_share_vertices() {
        let l = Lattice::new(1000, 5, |i, f| {
            *f = [
                (i % 40) as f32 / 80.0,
                (i / 40) as f32 / 80.0,
                1.0,
                2.0,
                3.0,
            ];
        })
        .unwrap();
        assert!(l.vertices() < 60, "{} vertices", l.vertices());
        assert_eq!(l.offset.len(), 6000);
        assert!(l
            .offset
            .iter()
            .all(|&o| o >= 1 && o as usize <= l.vertices()));
    }

    /// Five-dimensional features of a `w`-wide frame: position over `spread`, and three
    /// patterned "colours" that revisit vertices in an irregular order.
    fn textured(w: usize, spread: f32) -> impl Fn(usize, &mut [f32; MAX_DIM]) + Sync + Copy {
        move |i, f| {
            let (x, y) = (i % w, i / w);
            f[0] = x as f32 / spread;
            f[1] = y as f32 / spread;
            f[2] = ((x * 13 + y * 7) % 97) as f32 / 9.0;
            f[3] = ((x / 5 + y / 3) % 11) as f32 / 2.0;
            f[4] = ((x * y) % 31) as f32 / 5.0;
        }
    }

    /// Numbering runs of points in parallel gives the numbering of one pass over them all.
    #[test]
    fn parallel_numbering_is_the_serial_one() {
        let (w, h) = (200usize, 180usize);
        let feature = textured(w, 7.0);
        let pool = |t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
        };
        let one = pool(1).install(|| Lattice::new(w * h, 5, feature).unwrap());
        for threads in [2, 3, 4] {
            let many = pool(threads).install(|| Lattice::new(w * h, 5, feature).unwrap());
            assert_eq!(many.vertices(), one.vertices(), "{threads} threads");
            assert!(
                many.offset == one.offset,
                "{threads} threads: vertex ids differ"
            );
            assert!(
                many.neighbours == one.neighbours,
                "{threads} threads: neighbours"
            );
        }
    }

    /// Each vertex's two blur neighbours along each axis are the vertices at the two
    /// offsets from its key (found with one lookup per vertex and axis).
    #[test]
    fn neighbours_are_the_keys_either_side_along_each_axis() {
        let (w, h) = (90usize, 70usize);
        let l = Lattice::new(w * h, 5, textured(w, 9.0)).unwrap();
        let (d, m) = (5, l.vertices());
        let numbering = &l.spare.1[0];
        let (mut c, mut k) = ([0i32; MAX_DIM], [0i32; MAX_DIM]);
        let mut found = 0;
        for j in 0..=d {
            for v in 0..m {
                unpack(numbering.keys[v], d, &mut c);
                for (side, step) in [(0, -1), (1, 1)] {
                    for i in 0..d {
                        k[i] = c[i] + step;
                    }
                    if j < d {
                        k[j] = c[j] - step * d as i32;
                    }
                    let want = numbering.vertices.get(&pack(&k[..d])).copied().unwrap_or(0);
                    assert_eq!(l.neighbours[j * m + v][side], want, "axis {j}, vertex {v}");
                    found += (want != 0) as usize;
                }
            }
        }
        assert!(found > m, "{found} neighbours of {m} vertices");
    }

    #[test]
    fn huge_features_are_refused() {
        assert!(Lattice::new(2, 2, |i, f| f[0] = i as f32 * 1e6).is_err());
    }
}
