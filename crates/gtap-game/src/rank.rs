//! Rank statistics for comparing power-index rankings (estimator agreement, index vs weight
//! magnitude).

/// Ranks starting at 1; tied values share the mean of their ranks. NaN sorts last.
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold ties: each gets the mean of ranks start+1 ..= end.
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            out[i] = mean_rank;
        }
        start = end;
    }
    out
}

/// Positions of the k lowest values, lowest first; ties broken by position (as the rankers do).
pub fn lowest_k(values: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Pearson correlation; NaN when either side is constant or the lengths differ.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() || a.len() < 2 {
        return f64::NAN;
    }
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

/// Spearman's rank correlation (Pearson correlation of the tie-averaged ranks).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(ranks(&[10.0, 30.0, 20.0, 30.0]), [1.0, 3.5, 2.0, 3.5]);
    }

    #[test]
    fn spearman_of_monotone_and_reversed_orders() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((spearman(&a, &[2.0, 4.0, 8.0, 16.0, 32.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &[5.0, 4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // One swapped pair among five: 1 - 6·Σd²/(n(n²-1)) = 1 - 6·2/120 = 0.9.
        assert!((spearman(&a, &[1.0, 2.0, 3.0, 5.0, 4.0]) - 0.9).abs() < 1e-12);
        assert!(spearman(&a, &[1.0; 5]).is_nan());
    }
}
