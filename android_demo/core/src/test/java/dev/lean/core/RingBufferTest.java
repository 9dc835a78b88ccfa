package dev.lean.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import org.junit.Test;

public class RingBufferTest {
    private static float[] range(int from, int to) {
        float[] values = new float[to - from];
        for (int i = 0; i < values.length; i++) {
            values[i] = from + i;
        }
        return values;
    }

    @Test
    public void keepsNewestSamplesInOrderAcrossWrapAround() {
        RingBuffer ring = new RingBuffer(5);
        ring.write(range(0, 3), 0, 3);
        ring.write(range(3, 7), 0, 4);
        assertEquals(5, ring.size());
        assertEquals(7, ring.totalWritten());
        float[] out = new float[5];
        ring.copyLatest(out, 5);
        assertArrayEquals(range(2, 7), out, 0f);
        float[] lastTwo = new float[2];
        ring.copyLatest(lastTwo, 2);
        assertArrayEquals(range(5, 7), lastTwo, 0f);
    }

    @Test
    public void writeLongerThanCapacityKeepsItsTail() {
        RingBuffer ring = new RingBuffer(4);
        ring.write(range(0, 1), 0, 1);
        float[] chunk = range(10, 20);
        ring.write(chunk, 2, 7); // 12..18
        float[] out = new float[4];
        ring.copyLatest(out, 4);
        assertArrayEquals(range(15, 19), out, 0f);
        assertEquals(8, ring.totalWritten());
    }

    @Test(expected = IllegalArgumentException.class)
    public void cannotCopyMoreThanHeld() {
        RingBuffer ring = new RingBuffer(4);
        ring.write(range(0, 2), 0, 2);
        ring.copyLatest(new float[4], 3);
    }

    @Test
    public void clearForgetsEverything() {
        RingBuffer ring = new RingBuffer(3);
        ring.write(range(0, 3), 0, 3);
        ring.clear();
        assertEquals(0, ring.size());
        ring.write(range(7, 8), 0, 1);
        float[] out = new float[1];
        ring.copyLatest(out, 1);
        assertEquals(7f, out[0], 0f);
    }
}
