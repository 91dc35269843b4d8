//! Calibration: streaming range statistics and the plain-data calibration table.

use crate::config::CalibrationMethod;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Observed range of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Range {
    pub min: f32,
    pub max: f32,
}

/// What calibration produced: a float range per tensor name. Plain data, saved as JSON and
/// reusable with `--calibration-table`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CalibrationTable {
    pub method: String,
    pub samples: usize,
    pub ranges: BTreeMap<String, Range>,
    /// `auto` before its search: every tensor's range under each method (minmax, percentile,
    /// MSE), for the search to choose from. Not saved.
    #[serde(skip)]
    pub candidates: BTreeMap<String, Vec<(String, Range)>>,
}

impl CalibrationTable {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<Self, String> {
        let t: CalibrationTable = serde_json::from_str(s).map_err(|e| format!("not a calibration table: {e}"))?;
        for (name, r) in &t.ranges {
            if !(r.min.is_finite() && r.max.is_finite()) || r.min > r.max {
                return Err(format!("calibration table range of {name:?} is invalid: [{}, {}]", r.min, r.max));
            }
        }
        Ok(t)
    }
}

/// Pass 1 of every method: global min and max per tensor, NaNs skipped.
#[derive(Debug, Default, Clone)]
pub struct MinMaxObserver {
    ranges: BTreeMap<String, Range>,
    pub samples: usize,
}

impl MinMaxObserver {
    pub fn observe(&mut self, name: &str, values: &[f32]) {
        let (lo, hi) = min_max(values);
        if lo > hi {
            return;
        }
        let e = self.ranges.entry(name.to_string()).or_insert(Range { min: lo, max: hi });
        e.min = e.min.min(lo);
        e.max = e.max.max(hi);
    }

    pub fn ranges(&self) -> &BTreeMap<String, Range> {
        &self.ranges
    }

    /// Fold in what another observer saw (samples split across threads): the union of the
    /// ranges, the same whatever the order.
    pub fn merge(&mut self, other: MinMaxObserver) {
        for (name, r) in other.ranges {
            let e = self.ranges.entry(name).or_insert(r);
            e.min = e.min.min(r.min);
            e.max = e.max.max(r.max);
        }
        self.samples += other.samples;
    }

    pub fn into_table(self) -> CalibrationTable {
        CalibrationTable {
            method: CalibrationMethod::MinMax.name(),
            samples: self.samples,
            ranges: self.ranges,
            candidates: BTreeMap::new(),
        }
    }
}

/// The smallest and largest values, NaN skipped (`(inf, -inf)` when there is none). Sixteen
/// running lanes of `if v < lo { v } else { lo }` (a NaN compares false and is passed over),
/// which the compiler turns into vector min/max: calibration calls this on every value of
/// every tensor of every sample.
fn min_max(values: &[f32]) -> (f32, f32) {
    const L: usize = 16;
    let mut lo = [f32::INFINITY; L];
    let mut hi = [f32::NEG_INFINITY; L];
    let chunks = values.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..L {
            lo[k] = if c[k] < lo[k] { c[k] } else { lo[k] };
            hi[k] = if c[k] > hi[k] { c[k] } else { hi[k] };
        }
    }
    let (mut a, mut b) = (f32::INFINITY, f32::NEG_INFINITY);
    for k in 0..L {
        a = if lo[k] < a { lo[k] } else { a };
        b = if hi[k] > b { hi[k] } else { b };
    }
    for &v in rest {
        a = if v < a { v } else { a };
        b = if v > b { v } else { b };
    }
    (a, b)
}

/// The percentile `auto` tries.
pub const AUTO_PERCENTILE: f64 = 99.99;

/// Number of histogram bins over each tensor's min/max range.
pub const BINS: usize = 2048;

/// Pass 2 of `percentile` and `mse`: fixed-bin histograms over the pass-1 range, merged
/// across samples (memory is BINS counters per tensor, whatever the number of samples).
#[derive(Debug, Clone)]
pub struct HistogramObserver {
    ranges: BTreeMap<String, Range>,
    hist: BTreeMap<String, Vec<u64>>,
}

impl HistogramObserver {
    pub fn new(ranges: BTreeMap<String, Range>) -> Self {
        HistogramObserver { ranges, hist: BTreeMap::new() }
    }

    pub fn observe(&mut self, name: &str, values: &[f32]) {
        let Some(r) = self.ranges.get(name) else { return };
        let width = (r.max - r.min) as f64;
        let h = self.hist.entry(name.to_string()).or_insert_with(|| vec![0; BINS]);
        for &v in values {
            if v.is_nan() {
                continue;
            }
            let b = if width <= 0.0 { 0 } else { (((v - r.min) as f64 / width) * BINS as f64) as usize };
            h[b.min(BINS - 1)] += 1;
        }
    }

    /// Fold in another observer's counts (samples split across threads; integer sums, so the
    /// same whatever the order). Both must have been made from the same pass-1 ranges.
    pub fn merge(&mut self, other: HistogramObserver) {
        for (name, h) in other.hist {
            match self.hist.get_mut(&name) {
                Some(mine) => mine.iter_mut().zip(&h).for_each(|(a, b)| *a += b),
                None => {
                    self.hist.insert(name, h);
                }
            }
        }
    }

    /// Final ranges for `method` (`auto`: the minmax ranges, with every method's range of each
    /// tensor as candidates for the search).
    pub fn into_table(self, method: &CalibrationMethod, samples: usize) -> CalibrationTable {
        let mut ranges = BTreeMap::new();
        let mut candidates = BTreeMap::new();
        for (name, r) in &self.ranges {
            let range = match self.hist.get(name) {
                Some(h) => match method {
                    CalibrationMethod::Percentile { percentile } => percentile_range(h, *r, *percentile),
                    CalibrationMethod::Mse => mse_range(h, *r),
                    CalibrationMethod::MinMax => *r,
                    CalibrationMethod::Auto => {
                        candidates.insert(
                            name.clone(),
                            vec![
                                ("minmax".to_string(), *r),
                                (
                                    CalibrationMethod::Percentile { percentile: AUTO_PERCENTILE }.name(),
                                    percentile_range(h, *r, AUTO_PERCENTILE),
                                ),
                                ("mse".to_string(), mse_range(h, *r)),
                            ],
                        );
                        *r
                    }
                },
                None => *r,
            };
            ranges.insert(name.clone(), range);
        }
        CalibrationTable { method: method.name(), samples, ranges, candidates }
    }
}

fn bin_edge(r: Range, i: usize) -> f32 {
    r.min + (r.max - r.min) * (i as f32 / BINS as f32)
}

/// Clip each tail so that `p` percent of the values lie inside the range.
fn percentile_range(h: &[u64], r: Range, p: f64) -> Range {
    let total: u64 = h.iter().sum();
    if total == 0 {
        return r;
    }
    let tail = ((100.0 - p.clamp(0.0, 100.0)) / 200.0 * total as f64).floor() as u64;
    let (mut acc, mut lo) = (0u64, 0usize);
    while lo < BINS && acc + h[lo] <= tail {
        acc += h[lo];
        lo += 1;
    }
    let (mut acc, mut hi) = (0u64, BINS);
    while hi > lo + 1 && acc + h[hi - 1] <= tail {
        acc += h[hi - 1];
        hi -= 1;
    }
    Range { min: bin_edge(r, lo), max: bin_edge(r, hi) }
}

/// Expected squared error of quantizing the histogram to 256 levels over [lo, hi].
fn expected_error(h: &[u64], r: Range, lo: f32, hi: f32) -> f64 {
    let lo = lo.min(0.0);
    let hi = hi.max(0.0);
    let step = ((hi - lo) as f64 / 255.0).max(1e-12);
    let mut err = 0.0;
    for (i, &c) in h.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let center = (bin_edge(r, i) as f64 + bin_edge(r, i + 1) as f64) / 2.0;
        let e = if center < lo as f64 {
            (lo as f64 - center).powi(2)
        } else if center > hi as f64 {
            (center - hi as f64).powi(2)
        } else {
            step * step / 12.0
        };
        err += c as f64 * e;
    }
    err
}

/// The clipping range (shrinking both ends of the min/max range by the same fraction of
/// their distance to zero) with the smallest expected quantization error.
fn mse_range(h: &[u64], r: Range) -> Range {
    let mut best = (expected_error(h, r, r.min, r.max), r);
    for k in 1..=80 {
        let f = 1.0 - k as f32 / 100.0;
        let cand = Range { min: r.min.min(0.0) * f, max: r.max.max(0.0) * f };
        let e = expected_error(h, r, cand.min, cand.max);
        if e < best.0 {
            best = (e, cand);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minmax_skips_nan_and_merges() {
        let mut o = MinMaxObserver::default();
        o.observe("a", &[1.0, f32::NAN, -2.0]);
        o.observe("a", &[5.0]);
        assert_eq!(o.ranges()["a"], Range { min: -2.0, max: 5.0 });
    }

    #[test]
    fn min_max_skips_nan_in_every_lane_and_the_tail() {
        for n in [0usize, 1, 15, 16, 17, 40] {
            let mut v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 10.0).collect();
            for i in (0..n).step_by(3) {
                v[i] = f32::NAN;
            }
            let want = v
                .iter()
                .filter(|x| !x.is_nan())
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
            assert_eq!(min_max(&v), want, "n = {n}");
        }
        assert_eq!(min_max(&[f32::NAN; 20]), (f32::INFINITY, f32::NEG_INFINITY));
    }

    #[test]
    fn merged_observers_equal_one_observer() {
        let samples: Vec<Vec<f32>> =
            (0..6).map(|k| (0..50).map(|i| ((i * 7 + k * 13) % 31) as f32 - 9.5).collect()).collect();
        let mut one = MinMaxObserver::default();
        samples.iter().for_each(|s| one.observe("t", s));
        let (mut a, mut b) = (MinMaxObserver::default(), MinMaxObserver::default());
        samples[..2].iter().for_each(|s| a.observe("t", s));
        samples[2..].iter().for_each(|s| b.observe("t", s));
        b.merge(a);
        assert_eq!(b.ranges(), one.ranges());
        let mut h1 = HistogramObserver::new(one.ranges().clone());
        samples.iter().for_each(|s| h1.observe("t", s));
        let (mut ha, mut hb) =
            (HistogramObserver::new(one.ranges().clone()), HistogramObserver::new(one.ranges().clone()));
        samples[..3].iter().for_each(|s| ha.observe("t", s));
        samples[3..].iter().for_each(|s| hb.observe("t", s));
        ha.merge(hb);
        assert_eq!(ha.hist, h1.hist);
    }

    #[test]
    fn percentile_and_mse_clip_outliers() {
        let mut values: Vec<f32> = (0..10000).map(|i| (i % 100) as f32 / 100.0).collect();
        values.push(50.0);
        let mut o = MinMaxObserver::default();
        o.observe("t", &values);
        let mut h = HistogramObserver::new(o.ranges().clone());
        h.observe("t", &values);
        let p = h.clone().into_table(&CalibrationMethod::Percentile { percentile: 99.9 }, 1).ranges["t"];
        assert!(p.max < 2.0, "{p:?}");
        let m = h.into_table(&CalibrationMethod::Mse, 1).ranges["t"];
        assert!(m.max < 50.0, "{m:?}");
    }

    #[test]
    fn tables_round_trip_through_json() {
        let mut t = CalibrationTable { method: "minmax".into(), samples: 3, ..Default::default() };
        t.ranges.insert("x".into(), Range { min: -1.0, max: 2.5 });
        assert_eq!(CalibrationTable::from_json(&t.to_json()).unwrap(), t);
        assert!(
            CalibrationTable::from_json("{\"method\":\"m\",\"samples\":1,\"ranges\":{\"x\":{\"min\":3,\"max\":1}}}")
                .is_err()
        );
    }
}
