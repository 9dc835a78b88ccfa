package dev.lean.core;

import java.util.ArrayList;
import java.util.List;

/** The k highest scores of a classifier output, best first; ties keep the lower class index. */
public final class TopK {
    private TopK() {}

    /**
     * Indices of the {@code k} highest scores, best first (NaN ranks below every number).
     *
     * @param scores one score per class
     * @param k how many to return; capped at the number of classes
     * @return class indices, in the order of numpy's argsort(-scores, kind="stable")[:k]
     */
    public static int[] indices(float[] scores, int k) {
        if (k < 0) {
            throw new IllegalArgumentException("k must be >= 0, got " + k);
        }
        int count = Math.min(k, scores.length);
        int[] best = new int[count];
        int filled = 0;
        // Insertion into a sorted prefix: O(n k), fine for a few hundred classes and small k.
        for (int i = 0; i < scores.length; i++) {
            int at = filled;
            while (at > 0 && ranksAbove(scores[i], scores[best[at - 1]])) {
                at--;
            }
            if (at >= count) {
                continue;
            }
            int last = Math.min(filled, count - 1);
            System.arraycopy(best, at, best, at + 1, last - at);
            best[at] = i;
            filled = Math.min(filled + 1, count);
        }
        return best;
    }

    /**
     * The top {@code k} classes with their labels, without those below the model's score
     * threshold (as MediaPipe's AudioClassifier does).
     *
     * @param scores one score per class
     * @param k how many to return at most
     * @param info the model, for the labels and the threshold
     * @return the categories, best first
     */
    public static List<Category> categories(float[] scores, int k, ModelInfo info) {
        float threshold = info.scoreThreshold();
        List<Category> top = new ArrayList<>();
        for (int index : indices(scores, k)) {
            if (Float.isNaN(threshold) || scores[index] >= threshold) {
                top.add(new Category(index, info.label(index), scores[index]));
            }
        }
        return top;
    }

    /** Strictly better: a later index only moves ahead of an earlier one on a higher score. */
    private static boolean ranksAbove(float candidate, float incumbent) {
        if (Float.isNaN(candidate)) {
            return false;
        }
        return Float.isNaN(incumbent) || candidate > incumbent;
    }
}
