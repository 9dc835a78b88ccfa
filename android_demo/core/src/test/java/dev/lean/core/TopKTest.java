package dev.lean.core;

import static org.junit.Assert.assertArrayEquals;

import org.junit.Test;

public class TopKTest {
    @Test
    public void bestFirstWithTiesInIndexOrder() {
        float[] scores = {0.1f, 0.7f, 0.3f, 0.7f, 0.9f};
        assertArrayEquals(new int[] {4, 1, 3}, TopK.indices(scores, 3));
        assertArrayEquals(new int[] {4, 1, 3, 2, 0}, TopK.indices(scores, 5));
    }

    @Test
    public void kIsCappedAndZeroGivesNothing() {
        float[] scores = {0.5f, 0.2f};
        assertArrayEquals(new int[] {0, 1}, TopK.indices(scores, 10));
        assertArrayEquals(new int[0], TopK.indices(scores, 0));
    }

    @Test
    public void nanRanksLast() {
        float[] scores = {Float.NaN, 0.2f, Float.NaN, 0.1f};
        assertArrayEquals(new int[] {1, 3, 0}, TopK.indices(scores, 3));
    }
}
