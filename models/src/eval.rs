//! Test-split metrics for the model and its naive baselines.
//!
//! Regression: MSE, MAE and directional accuracy (over the rows whose target is not 0; a
//! prediction of exactly 0 takes no side and scores ½, so the zero predictor sits at 0.5).
//! Classification: accuracy at 0.5, rank AUC (ties get their average rank), log loss (the
//! probability clipped to [1e-7, 1 − 1e-7]) and a 10-bin calibration table.

pub use dexlab_types::predict::{
    Baseline, CalibrationBin, ClassificationMetrics, Metrics, RegressionMetrics, TestReport,
};

pub fn regression(pred: &[f64], y: &[f64]) -> RegressionMetrics {
    assert_eq!(pred.len(), y.len());
    let n = y.len();
    let nf = n.max(1) as f64;
    let mse = pred
        .iter()
        .zip(y)
        .map(|(p, t)| (p - t) * (p - t))
        .sum::<f64>()
        / nf;
    let mae = pred.iter().zip(y).map(|(p, t)| (p - t).abs()).sum::<f64>() / nf;
    let (mut hits, mut moves) = (0.0, 0usize);
    for (p, t) in pred.iter().zip(y) {
        if *t == 0.0 {
            continue;
        }
        moves += 1;
        hits += if *p == 0.0 {
            0.5
        } else if (*p > 0.0) == (*t > 0.0) {
            1.0
        } else {
            0.0
        };
    }
    RegressionMetrics {
        n,
        mse,
        mae,
        directional_accuracy: (moves > 0).then(|| hits / moves as f64),
    }
}

const EPS: f64 = 1e-7;

/// `prob` are predicted probabilities of the positive class, `y` are 0/1.
pub fn classification(prob: &[f64], y: &[f64]) -> ClassificationMetrics {
    assert_eq!(prob.len(), y.len());
    let n = y.len();
    let nf = n.max(1) as f64;
    let positives = y.iter().filter(|&&t| t == 1.0).count();
    let accuracy = prob
        .iter()
        .zip(y)
        .filter(|(p, t)| (**p >= 0.5) == (**t == 1.0))
        .count() as f64
        / nf;
    let log_loss = -prob
        .iter()
        .zip(y)
        .map(|(p, t)| {
            let p = p.clamp(EPS, 1.0 - EPS);
            if *t == 1.0 { p.ln() } else { (1.0 - p).ln() }
        })
        .sum::<f64>()
        / nf;
    ClassificationMetrics {
        n,
        positive_rate: positives as f64 / nf,
        accuracy,
        auc: auc(prob, y),
        log_loss,
        calibration: calibration(prob, y, 10),
    }
}

/// Mann–Whitney AUC: P(score of a random positive > that of a random negative), ties ½.
pub fn auc(score: &[f64], y: &[f64]) -> Option<f64> {
    let n_pos = y.iter().filter(|&&t| t == 1.0).count();
    let n_neg = y.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    // Average 1-based ranks over runs of equal scores.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && score[order[j + 1]] == score[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += avg_rank * order[i..=j].iter().filter(|&&k| y[k] == 1.0).count() as f64;
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

pub fn calibration(prob: &[f64], y: &[f64], bins: usize) -> Vec<CalibrationBin> {
    let mut sum_p = vec![0.0; bins];
    let mut sum_y = vec![0.0; bins];
    let mut count = vec![0usize; bins];
    for (p, t) in prob.iter().zip(y) {
        let b = ((p * bins as f64).floor() as usize).min(bins - 1);
        sum_p[b] += p;
        sum_y[b] += t;
        count[b] += 1;
    }
    (0..bins)
        .map(|b| CalibrationBin {
            lo: b as f64 / bins as f64,
            hi: (b + 1) as f64 / bins as f64,
            count: count[b],
            mean_predicted: (count[b] > 0).then(|| sum_p[b] / count[b] as f64),
            observed_rate: (count[b] > 0).then(|| sum_y[b] / count[b] as f64),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_handles_ties_and_one_class() {
        assert_eq!(
            auc(&[0.1, 0.4, 0.35, 0.8], &[0.0, 0.0, 1.0, 1.0]),
            Some(0.75)
        );
        // All scores tied: 0.5 whatever the labels.
        assert_eq!(auc(&[0.3; 5], &[0.0, 1.0, 0.0, 1.0, 1.0]), Some(0.5));
        // A tie across classes counts ½.
        assert_eq!(
            auc(&[0.2, 0.5, 0.5, 0.9], &[0.0, 0.0, 1.0, 1.0]),
            Some(0.875)
        );
        assert_eq!(auc(&[0.2, 0.5], &[1.0, 1.0]), None);
    }

    #[test]
    fn regression_metrics_and_the_zero_predictor() {
        let y = [1.0, -2.0, 0.0, 3.0];
        let zero = regression(&[0.0; 4], &y);
        assert_eq!(zero.mse, 14.0 / 4.0);
        assert_eq!(zero.mae, 6.0 / 4.0);
        assert_eq!(zero.directional_accuracy, Some(0.5));
        let m = regression(&[0.5, -1.0, 7.0, -1.0], &y);
        assert_eq!(m.directional_accuracy, Some(2.0 / 3.0));
        assert_eq!(regression(&[1.0], &[0.0]).directional_accuracy, None);
    }

    #[test]
    fn classification_metrics_and_calibration() {
        let p = [0.05, 0.95, 0.55, 0.45, 1.0];
        let y = [0.0, 1.0, 0.0, 1.0, 1.0];
        let m = classification(&p, &y);
        assert_eq!(m.accuracy, 3.0 / 5.0);
        assert_eq!(m.positive_rate, 3.0 / 5.0);
        assert_eq!(m.calibration.len(), 10);
        assert_eq!(m.calibration.iter().map(|b| b.count).sum::<usize>(), 5);
        let last = &m.calibration[9];
        assert_eq!(last.count, 2);
        assert_eq!(last.observed_rate, Some(1.0));
        assert!((last.mean_predicted.unwrap() - 0.975).abs() < 1e-12);
        assert_eq!(m.calibration[0].count, 1);
        assert_eq!(m.calibration[1].count, 0);
        assert_eq!(m.calibration[1].mean_predicted, None);
        let expected =
            -(0.95f64.ln() + 0.95f64.ln() + 0.45f64.ln() + 0.45f64.ln() + (1.0 - EPS).ln()) / 5.0;
        assert!((m.log_loss - expected).abs() < 1e-12);
        assert!(Metrics::Classification(m).is_finite());
    }
}
