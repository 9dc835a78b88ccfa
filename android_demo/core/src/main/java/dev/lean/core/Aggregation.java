package dev.lean.core;

/**
 * How window scores are pooled into one clip score, as lean.data.windows.aggregate_clip_scores.
 */
public enum Aggregation {
    /** Mean of the window probabilities (the paper). */
    MEAN("mean"),
    /** Maximum over windows. */
    MAX("max"),
    /** Mean of logit(p) over windows, then the sigmoid. */
    MEAN_LOGITS("mean_logits"),
    /**
     * For softmax outputs: the sum of log(p) over windows, then a softmax over classes (the
     * product of the window posteriors, renormalised; multiplicative fusion).
     */
    LOG_SUM("log_sum");

    /** Probabilities are clipped to [eps, 1 - eps] before the logit, as in the Python SDK. */
    public static final double LOGIT_EPSILON = 1e-7;

    private final String key;

    Aggregation(String key) {
        this.key = key;
    }

    /** The name used by the Python SDK and the CLIs ("mean", "max", "mean_logits", "log_sum"). */
    public String key() {
        return key;
    }

    public static Aggregation fromKey(String key) {
        for (Aggregation method : values()) {
            if (method.key.equals(key)) {
                return method;
            }
        }
        throw new IllegalArgumentException(
                "unknown aggregation '" + key + "': expected one of mean, max, mean_logits, log_sum");
    }

    /**
     * Pools window probabilities into clip scores.
     *
     * @param windowScores probabilities [N][C]
     * @param clipOfWindow the clip index (0..numClips-1) of each window, in any order
     * @param numClips number of clips; every clip needs at least one window
     * @return clip scores [numClips][C]
     */
    public double[][] aggregate(float[][] windowScores, int[] clipOfWindow, int numClips) {
        if (windowScores.length != clipOfWindow.length) {
            throw new IllegalArgumentException(windowScores.length + " window score rows but "
                    + clipOfWindow.length + " clip indices");
        }
        int numClasses = windowScores.length == 0 ? 0 : windowScores[0].length;
        double[][] pooled = new double[numClips][numClasses];
        int[] counts = new int[numClips];
        for (int i = 0; i < windowScores.length; i++) {
            int clip = clipOfWindow[i];
            if (clip < 0 || clip >= numClips) {
                throw new IllegalArgumentException("window " + i + " belongs to clip " + clip
                        + ", outside 0.." + (numClips - 1));
            }
            if (windowScores[i].length != numClasses) {
                throw new IllegalArgumentException("window " + i + " has " + windowScores[i].length
                        + " scores, expected " + numClasses);
            }
            double[] row = pooled[clip];
            for (int c = 0; c < numClasses; c++) {
                double p = windowScores[i][c];
                if (this == MAX) {
                    row[c] = counts[clip] == 0 ? p : Math.max(row[c], p);
                } else if (this == MEAN) {
                    row[c] += p;
                } else if (this == LOG_SUM) {
                    row[c] += Math.log(Math.min(Math.max(p, LOGIT_EPSILON), 1.0));
                } else {
                    double clipped = Math.min(Math.max(p, LOGIT_EPSILON), 1.0 - LOGIT_EPSILON);
                    row[c] += Math.log(clipped) - Math.log1p(-clipped);
                }
            }
            counts[clip]++;
        }
        for (int clip = 0; clip < numClips; clip++) {
            if (counts[clip] == 0) {
                throw new IllegalArgumentException("clip " + clip + " has no windows");
            }
            if (this == MAX) {
                continue;
            }
            if (this == LOG_SUM) {
                softmaxInPlace(pooled[clip]);
                continue;
            }
            for (int c = 0; c < numClasses; c++) {
                double mean = pooled[clip][c] / counts[clip];
                pooled[clip][c] = this == MEAN ? mean : 1.0 / (1.0 + Math.exp(-mean));
            }
        }
        return pooled;
    }

    /** exp(x - max) / sum: the shift by the maximum keeps exp() finite for long clips. */
    private static void softmaxInPlace(double[] row) {
        double max = Double.NEGATIVE_INFINITY;
        for (double value : row) {
            max = Math.max(max, value);
        }
        double sum = 0.0;
        for (int c = 0; c < row.length; c++) {
            row[c] = Math.exp(row[c] - max);
            sum += row[c];
        }
        for (int c = 0; c < row.length; c++) {
            row[c] /= sum;
        }
    }
}
