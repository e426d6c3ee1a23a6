//! Approximate composition of LoRA adapters, with PEFT's `add_weighted_adapter` semantics
//! (peft 0.21.2, `peft/tuners/lora/model.py` and `peft/utils/merge_utils.py`). These make new
//! weights: the result is materialized once as an ordinary adapter (scale 1: `r = alpha`),
//! docked like any other, and cached under the ordered list of (content hash, weight) plus
//! the method and all its options ([`CompositeCache`]).
//!
//! With `cᵢ = wᵢ·sᵢ` (request weight times the adapter's own scale), per adapted module:
//! - `svd`: `D = Σ cᵢ·BᵢAᵢ` truncated to rank R (default: the largest input rank):
//!   `B' = U_R·diag(S_R)`, `A' = V_Rᵀ`. Computed from thin QRs of the stacked factors, never
//!   forming the `out × in` matrix.
//! - `ties`, `dare_linear`, `dare_ties`, `magnitude_prune`: the A's and the B's are merged
//!   separately (so `B'A'` has cross terms), A with weights `sign(cᵢ)·√|cᵢ|`, B with `√|cᵢ|`;
//!   all inputs must share a rank. `magnitude_prune` keeps the `⌊density·n⌋` largest |x| of
//!   each input; `ties` prunes so, elects each entry's sign as that of the unweighted sum, and
//!   averages the weighted entries that agree; `dare_*` keep each entry with probability
//!   `density` and rescale by `1/density` (loradock's seeded RNG: PEFT's torch RNG cannot be
//!   reproduced, so masks differ from PEFT's for the same seed).
//!
//! The exact composite (`cat`) is never materialized: rows carry (adapter, weight) lists and
//! are applied unmerged.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::linalg::{matmul, qr, svd, transpose, Mat};
use super::{LoraAdapter, LoraPair, Module};
use crate::error::{Error, Result};

/// How several adapters combine.
#[derive(Debug, Clone, PartialEq)]
pub enum Combination {
    /// The exact sum `Σ wᵢ·sᵢ·BᵢAᵢ`, applied unmerged (PEFT's `cat`).
    Cat,
    /// Truncated SVD of the exact sum to `rank` (None: the largest input rank).
    Svd {
        /// Target rank.
        rank: Option<usize>,
    },
    /// TIES merging of A's and B's.
    Ties {
        /// Fraction of entries kept per input.
        density: f32,
    },
    /// DARE (random drop and rescale), then a weighted sum.
    DareLinear {
        /// Keep probability.
        density: f32,
        /// RNG seed.
        seed: u64,
    },
    /// DARE, then TIES sign election.
    DareTies {
        /// Keep probability.
        density: f32,
        /// RNG seed.
        seed: u64,
    },
    /// Magnitude pruning, then a weighted sum.
    MagnitudePrune {
        /// Fraction of entries kept per input.
        density: f32,
    },
}

impl Combination {
    /// Parse a method name with its options (`density` defaults to 0.5, `seed` to 0).
    pub fn parse(
        name: &str,
        density: Option<f32>,
        svd_rank: Option<usize>,
        seed: Option<u64>,
    ) -> Result<Combination> {
        let density = density.unwrap_or(0.5);
        if !(density > 0.0 && density <= 1.0) {
            return Err(Error::invalid("density", format!("{density} is not in (0, 1]")));
        }
        let seed = seed.unwrap_or(0);
        Ok(match name {
            "cat" | "linear_exact" => Combination::Cat,
            "svd" => {
                if svd_rank == Some(0) {
                    return Err(Error::invalid("svd_rank", "must be > 0"));
                }
                Combination::Svd { rank: svd_rank }
            }
            "ties" => Combination::Ties { density },
            "dare_linear" => Combination::DareLinear { density, seed },
            "dare_ties" => Combination::DareTies { density, seed },
            "magnitude_prune" => Combination::MagnitudePrune { density },
            other => {
                return Err(Error::invalid(
                    "combination",
                    format!("'{other}' (known: cat, svd, ties, dare_linear, dare_ties, magnitude_prune)"),
                ))
            }
        })
    }

    /// The method and every option, for cache keys.
    pub fn key(&self) -> String {
        format!("{self:?}")
    }
}

/// Materialize the composite of `inputs` (adapter, request weight) by `method`.
pub fn materialize(inputs: &[(&LoraAdapter, f32)], method: &Combination) -> Result<LoraAdapter> {
    let Some(first) = inputs.first() else {
        return Err(Error::invalid("adapters", "a composite needs at least one adapter"));
    };
    if let Some((a, w)) = inputs.iter().find(|(_, w)| !w.is_finite()) {
        return Err(Error::invalid("adapters", format!("adapter {} has a non-finite weight {w}", a.name)));
    }
    if inputs.iter().any(|(a, _)| a.layers.len() != first.0.layers.len()) {
        return Err(Error::invalid(
            "adapters",
            "the adapters were made for models with different layer counts",
        ));
    }
    let names: Vec<String> = inputs.iter().map(|(a, w)| format!("{}*{w}", a.name)).collect();
    let mut layers: Vec<[Option<LoraPair>; 7]> =
        (0..first.0.layers.len()).map(|_| Default::default()).collect();
    for (li, layer) in layers.iter_mut().enumerate() {
        for m in Module::ALL {
            let parts: Vec<(&LoraPair, f32)> =
                inputs.iter().filter_map(|(a, w)| a.pair(li, m).map(|p| (p, w * p.scale))).collect();
            if parts.is_empty() {
                continue;
            }
            let what = format!("layer {li} {}", m.hf_name());
            layer[m as usize] = Some(match method {
                Combination::Cat => {
                    return Err(Error::invalid(
                        "combination",
                        "cat is applied unmerged and never materialized",
                    ))
                }
                Combination::Svd { rank } => svd_pair(&parts, *rank)?,
                _ => elementwise_pair(&parts, method, li * 7 + m as usize, &what)?,
            });
        }
    }
    Ok(LoraAdapter { name: format!("{}({})", method_name(method), names.join(" + ")), layers })
}

fn method_name(m: &Combination) -> &'static str {
    match m {
        Combination::Cat => "cat",
        Combination::Svd { .. } => "svd",
        Combination::Ties { .. } => "ties",
        Combination::DareLinear { .. } => "dare_linear",
        Combination::DareTies { .. } => "dare_ties",
        Combination::MagnitudePrune { .. } => "magnitude_prune",
    }
}

/// Truncated SVD of `Σ cᵢ·BᵢAᵢ` through `B_cat = Q_b R_b`, `A_catᵀ = Q_a R_a` and the SVD of
/// the small `R_b R_aᵀ`.
fn svd_pair(parts: &[(&LoraPair, f32)], rank: Option<usize>) -> Result<LoraPair> {
    let (d_in, d_out) = (parts[0].0.d_in, parts[0].0.d_out);
    let k: usize = parts.iter().map(|(p, _)| p.rank).sum();
    let mut bcat = Mat::zeros(d_out, k);
    let mut at = Mat::zeros(d_in, k);
    let mut col = 0;
    for (p, c) in parts {
        for j in 0..p.rank {
            for o in 0..d_out {
                bcat.data[col * d_out + o] = *c as f64 * p.b[o * p.rank + j] as f64;
            }
            for i in 0..d_in {
                at.data[col * d_in + i] = p.a[j * d_in + i] as f64;
            }
            col += 1;
        }
    }
    let (qb, rb) = qr(&bcat);
    let (qa, ra) = qr(&at);
    let (um, s, vm) = svd(&matmul(&rb, &transpose(&ra)));
    let (u, v) = (matmul(&qb, &um), matmul(&qa, &vm));
    let r = rank.unwrap_or_else(|| parts.iter().map(|(p, _)| p.rank).max().unwrap_or(1)).min(k);
    let mut a = vec![0.0f32; r * d_in];
    let mut b = vec![0.0f32; d_out * r];
    for j in 0..r {
        for i in 0..d_in {
            a[j * d_in + i] = v.at(i, j) as f32;
        }
        for o in 0..d_out {
            b[o * r + j] = (u.at(o, j) * s[j]) as f32;
        }
    }
    Ok(LoraPair { rank: r, d_in, d_out, a, b, scale: 1.0 })
}

/// A small deterministic RNG (SplitMix64) for DARE masks.
struct SplitMix(u64);

impl SplitMix {
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Keep the `⌊density·n⌋` entries of largest magnitude.
fn magnitude_prune(x: &[f32], density: f32) -> Vec<f32> {
    let k = (density as f64 * x.len() as f64) as usize;
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&i, &j| x[j].abs().total_cmp(&x[i].abs()));
    let mut out = vec![0.0; x.len()];
    for &i in &idx[..k] {
        out[i] = x[i];
    }
    out
}

/// Keep each entry with probability `density`, rescaled by `1/density`.
fn dare_prune(x: &[f32], density: f32, rng: &mut SplitMix) -> Vec<f32> {
    x.iter().map(|&v| if rng.next_f32() < density { v / density } else { 0.0 }).collect()
}

/// TIES: elect each entry's sign from the unweighted sum, then average the weighted entries
/// that agree (zeros never count).
fn ties_merge(pruned: &[Vec<f32>], weights: &[f32]) -> Vec<f32> {
    let n = pruned[0].len();
    (0..n)
        .map(|e| {
            let total: f32 = pruned.iter().map(|p| p[e]).sum();
            let sign = if total >= 0.0 { 1.0 } else { -1.0 };
            let (mut sum, mut count) = (0.0f32, 0usize);
            for (p, w) in pruned.iter().zip(weights) {
                if p[e] != 0.0 && p[e].signum() == sign {
                    sum += p[e] * w;
                    count += 1;
                }
            }
            sum / count.max(1) as f32
        })
        .collect()
}

fn merge(xs: &[&[f32]], weights: &[f32], method: &Combination, rng: &mut SplitMix) -> Vec<f32> {
    let weighted_sum = |ps: &[Vec<f32>]| -> Vec<f32> {
        let mut out = vec![0.0; ps[0].len()];
        for (p, w) in ps.iter().zip(weights) {
            out.iter_mut().zip(p).for_each(|(o, v)| *o += w * v);
        }
        out
    };
    match method {
        Combination::MagnitudePrune { density } => {
            weighted_sum(&xs.iter().map(|x| magnitude_prune(x, *density)).collect::<Vec<_>>())
        }
        Combination::Ties { density } => {
            ties_merge(&xs.iter().map(|x| magnitude_prune(x, *density)).collect::<Vec<_>>(), weights)
        }
        Combination::DareLinear { density, .. } => {
            weighted_sum(&xs.iter().map(|x| dare_prune(x, *density, rng)).collect::<Vec<_>>())
        }
        Combination::DareTies { density, .. } => {
            ties_merge(&xs.iter().map(|x| dare_prune(x, *density, rng)).collect::<Vec<_>>(), weights)
        }
        Combination::Cat | Combination::Svd { .. } => unreachable!("not an element-wise method"),
    }
}

fn elementwise_pair(
    parts: &[(&LoraPair, f32)],
    method: &Combination,
    module_index: usize,
    what: &str,
) -> Result<LoraPair> {
    let p0 = parts[0].0;
    if let Some((p, _)) = parts.iter().find(|(p, _)| p.rank != p0.rank) {
        return Err(Error::invalid(
            "combination",
            format!(
                "{what}: ranks {} and {} differ; this method needs equal ranks (use svd or cat)",
                p0.rank, p.rank
            ),
        ));
    }
    let seed = match method {
        Combination::DareLinear { seed, .. } | Combination::DareTies { seed, .. } => *seed,
        _ => 0,
    };
    // One stream per module, so a module's mask does not depend on the others.
    let mut rng = SplitMix(seed ^ (module_index as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let aw: Vec<f32> = parts.iter().map(|(_, c)| c.signum() * c.abs().sqrt()).collect();
    let bw: Vec<f32> = parts.iter().map(|(_, c)| c.abs().sqrt()).collect();
    let a = merge(&parts.iter().map(|(p, _)| p.a.as_slice()).collect::<Vec<_>>(), &aw, method, &mut rng);
    let b = merge(&parts.iter().map(|(p, _)| p.b.as_slice()).collect::<Vec<_>>(), &bw, method, &mut rng);
    Ok(LoraPair { rank: p0.rank, d_in: p0.d_in, d_out: p0.d_out, a, b, scale: 1.0 })
}

/// The identity of a composite: inputs' content hashes and weights in order, and the method
/// with every option.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CompositeKey {
    parts: Vec<([u8; 32], u32)>,
    method: String,
}

impl CompositeKey {
    /// The key of `inputs` combined by `method`.
    pub fn new(inputs: &[(&LoraAdapter, f32)], method: &Combination) -> CompositeKey {
        CompositeKey {
            parts: inputs.iter().map(|(a, w)| (a.content_hash(), w.to_bits())).collect(),
            method: method.key(),
        }
    }
}

/// Materialized composites, at most `capacity` of them (the oldest is dropped first).
/// Thread safety: not synchronized; the owner serializes access.
pub struct CompositeCache {
    capacity: usize,
    map: HashMap<CompositeKey, Arc<LoraAdapter>>,
    order: VecDeque<CompositeKey>,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Composites built.
    pub misses: u64,
}

impl CompositeCache {
    /// An empty cache holding up to `capacity` composites.
    pub fn new(capacity: usize) -> CompositeCache {
        CompositeCache {
            capacity: capacity.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// The composite of `inputs` by `method`, built on first use.
    pub fn get_or_build(
        &mut self,
        inputs: &[(&LoraAdapter, f32)],
        method: &Combination,
    ) -> Result<Arc<LoraAdapter>> {
        let key = CompositeKey::new(inputs, method);
        if let Some(a) = self.map.get(&key) {
            self.hits += 1;
            return Ok(Arc::clone(a));
        }
        let built = Arc::new(materialize(inputs, method)?);
        self.misses += 1;
        if self.map.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        self.order.push_back(key.clone());
        self.map.insert(key, Arc::clone(&built));
        Ok(built)
    }

    /// Composites held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::pseudo_random;

    fn adapter(seed: u32, rank: usize, scale: f32) -> LoraAdapter {
        let (din, dout) = (24, 16);
        let pair = LoraPair {
            rank,
            d_in: din,
            d_out: dout,
            a: pseudo_random(rank * din, seed),
            b: pseudo_random(dout * rank, seed + 100),
            scale,
        };
        let mut l: [Option<LoraPair>; 7] = Default::default();
        l[Module::Q as usize] = Some(pair);
        LoraAdapter { name: format!("a{seed}"), layers: vec![l] }
    }

    /// Dense `Σ cᵢ BᵢAᵢ` of layer 0's q for checking.
    fn dense(a: &LoraAdapter, w: f32) -> Vec<f32> {
        let p = a.pair(0, Module::Q).unwrap();
        let mut d = vec![0.0; p.d_out * p.d_in];
        for o in 0..p.d_out {
            for i in 0..p.d_in {
                d[o * p.d_in + i] =
                    w * p.scale * (0..p.rank).map(|j| p.b[o * p.rank + j] * p.a[j * p.d_in + i]).sum::<f32>();
            }
        }
        d
    }

    #[test]
    fn svd_at_full_rank_is_the_exact_sum_and_lower_rank_is_close() {
        let (x, y) = (adapter(1, 3, 2.0), adapter(2, 2, 0.5));
        let inputs = [(&x, 0.7), (&y, -0.4)];
        let exact: Vec<f32> = dense(&x, 0.7).iter().zip(dense(&y, -0.4)).map(|(a, b)| a + b).collect();
        let full = materialize(&inputs, &Combination::Svd { rank: Some(5) }).unwrap();
        let d = dense(&full, 1.0);
        assert!(exact.iter().zip(&d).all(|(a, b)| (a - b).abs() < 1e-4));
        let low = materialize(&inputs, &Combination::Svd { rank: Some(2) }).unwrap();
        assert_eq!(low.pair(0, Module::Q).unwrap().rank, 2);
        let err: f32 = exact.iter().zip(dense(&low, 1.0)).map(|(a, b)| (a - b).powi(2)).sum();
        let norm: f32 = exact.iter().map(|a| a * a).sum();
        assert!(err < norm, "a rank-2 truncation keeps most of the energy");
    }

    #[test]
    fn density_one_prune_methods_are_the_sqrt_weighted_sums() {
        let (x, y) = (adapter(1, 3, 2.0), adapter(2, 3, 0.5));
        let inputs = [(&x, 0.7), (&y, 0.4)];
        let m = materialize(&inputs, &Combination::MagnitudePrune { density: 1.0 }).unwrap();
        let d = materialize(&inputs, &Combination::DareLinear { density: 1.0, seed: 9 }).unwrap();
        let (pm, pd) = (m.pair(0, Module::Q).unwrap(), d.pair(0, Module::Q).unwrap());
        assert_eq!(pm.a, pd.a);
        let c = (0.7f32 * 2.0).sqrt();
        let want = c * x.pair(0, Module::Q).unwrap().a[0]
            + (0.4f32 * 0.5).sqrt() * y.pair(0, Module::Q).unwrap().a[0];
        assert!((pm.a[0] - want).abs() < 1e-6);
    }

    #[test]
    fn dare_is_seeded_and_keeps_about_density() {
        let (x, y) = (adapter(1, 4, 1.0), adapter(2, 4, 1.0));
        let inputs = [(&x, 1.0), (&y, 1.0)];
        let m = |seed| materialize(&inputs, &Combination::DareLinear { density: 0.3, seed }).unwrap();
        let (a, b, c) = (m(1), m(1), m(2));
        let (pa, pc) = (a.pair(0, Module::Q).unwrap(), c.pair(0, Module::Q).unwrap());
        assert_eq!(pa.a, b.pair(0, Module::Q).unwrap().a);
        assert_ne!(pa.a, pc.a);
        let kept = pa.a.iter().filter(|v| **v != 0.0).count() as f32 / pa.a.len() as f32;
        // Two inputs at 0.3 each: an entry survives in at least one with p = 0.51.
        assert!((kept - 0.51).abs() < 0.12, "{kept}");
    }

    #[test]
    fn ties_elects_signs_and_averages_agreeing_entries() {
        let pruned = vec![vec![1.0, -2.0, 0.0], vec![3.0, 1.0, -1.0]];
        // Entry 0: both +: (1*1 + 3*2) / 2; entry 1: total -1 → '-': only -2 counts; entry 2: '-'.
        assert_eq!(ties_merge(&pruned, &[1.0, 2.0]), vec![3.5, -2.0, -2.0]);
    }

    #[test]
    fn unequal_ranks_and_bad_options_are_refused() {
        let (x, y) = (adapter(1, 3, 1.0), adapter(2, 2, 1.0));
        let e = materialize(&[(&x, 1.0), (&y, 1.0)], &Combination::Ties { density: 0.5 }).unwrap_err();
        assert!(e.to_string().contains("ranks 3 and 2 differ"), "{e}");
        assert!(Combination::parse("ties", Some(0.0), None, None).is_err());
        assert!(Combination::parse("svd", None, Some(0), None).is_err());
        assert!(Combination::parse("average", None, None, None).is_err());
        assert!(materialize(&[(&x, 1.0)], &Combination::Cat).is_err());
    }

    #[test]
    fn cache_keys_on_content_weights_and_options() {
        let (x, y) = (adapter(1, 3, 1.0), adapter(2, 3, 1.0));
        let mut cache = CompositeCache::new(2);
        let t = Combination::Ties { density: 0.5 };
        let first = cache.get_or_build(&[(&x, 1.0), (&y, 0.5)], &t).unwrap();
        let again = cache.get_or_build(&[(&x, 1.0), (&y, 0.5)], &t).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        // The same content under another name is the same composite.
        let renamed = LoraAdapter { name: "other".into(), ..x.clone() };
        assert!(Arc::ptr_eq(&first, &cache.get_or_build(&[(&renamed, 1.0), (&y, 0.5)], &t).unwrap()));
        assert_eq!((cache.hits, cache.misses), (2, 1));
        cache.get_or_build(&[(&y, 0.5), (&x, 1.0)], &t).unwrap();
        cache.get_or_build(&[(&x, 1.0), (&y, 0.5)], &Combination::Ties { density: 0.6 }).unwrap();
        assert_eq!((cache.misses, cache.len()), (3, 2), "order and options are part of the key; capacity 2");
    }
}
