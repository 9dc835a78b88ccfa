package dev.lean.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import org.junit.Test;

public class AggregationTest {
    private static final float[][] SCORES = {
        {0.2f, 0.9f},
        {0.5f, 0.0f},
        {0.4f, 1.0f},
    };
    private static final int[] CLIPS = {1, 0, 1};

    @Test
    public void meanAndMaxPerClip() {
        double[][] mean = Aggregation.MEAN.aggregate(SCORES, CLIPS, 2);
        assertArrayEquals(new double[] {0.5f, 0.0}, mean[0], 1e-12);
        assertArrayEquals(new double[] {((double) 0.2f + 0.4f) / 2.0, ((double) 0.9f + 1.0f) / 2.0}, mean[1], 1e-12);
        double[][] max = Aggregation.MAX.aggregate(SCORES, CLIPS, 2);
        assertArrayEquals(new double[] {0.5f, 0.0}, max[0], 0);
        assertArrayEquals(new double[] {0.4f, 1.0}, max[1], 0);
    }

    @Test
    public void meanLogitsClipsSaturatedProbabilities() {
        double[][] pooled = Aggregation.MEAN_LOGITS.aggregate(SCORES, CLIPS, 2);
        // One window: sigmoid(logit(p)) == p, and 0 becomes the clipped epsilon.
        assertEquals(0.5f, pooled[0][0], 1e-12);
        assertEquals(1e-7, pooled[0][1], 1e-15);
        double a = Math.log(0.9f) - Math.log1p(-0.9f);
        double clipped = 1.0 - 1e-7;
        double b = Math.log(clipped) - Math.log1p(-clipped);
        assertEquals(1 / (1 + Math.exp(-(a + b) / 2)), pooled[1][1], 1e-12);
    }

    @Test
    public void logSumIsTheRenormalisedProductOfPosteriors() {
        float[][] scores = {{0.6f, 0.3f, 0.1f}, {0.2f, 0.5f, 0.3f}, {0.5f, 0.4f, 0.1f}};
        double[][] pooled = Aggregation.LOG_SUM.aggregate(scores, new int[] {0, 0, 0}, 1);
        double[] product = new double[3];
        double sum = 0.0;
        for (int c = 0; c < 3; c++) {
            product[c] = (double) scores[0][c] * scores[1][c] * scores[2][c];
            sum += product[c];
        }
        for (int c = 0; c < 3; c++) {
            assertEquals(product[c] / sum, pooled[0][c], 1e-12);
        }
    }

    @Test
    public void keysMatchThePythonNames() {
        assertEquals(Aggregation.MEAN_LOGITS, Aggregation.fromKey("mean_logits"));
        assertEquals("max", Aggregation.MAX.key());
        assertEquals(Aggregation.LOG_SUM, Aggregation.fromKey("log_sum"));
    }

    @Test(expected = IllegalArgumentException.class)
    public void clipWithoutWindowsIsRejected() {
        Aggregation.MEAN.aggregate(SCORES, CLIPS, 3);
    }

    @Test(expected = IllegalArgumentException.class)
    public void unknownKeyIsRejected() {
        Aggregation.fromKey("median");
    }
}
