package dev.lean.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.junit.Test;

public class StreamingWindowerTest {
    private static float[] stream(int length) {
        float[] values = new float[length];
        for (int i = 0; i < length; i++) {
            values[i] = (float) Math.sin(0.01 * i) + i * 1e-3f;
        }
        return values;
    }

    @Test
    public void hopSizedChunksGiveTheClipsEvaluationWindows() {
        int window = 16;
        int hop = Windows.hopSamples(window, 0.5);
        float[] audio = stream(window * 4); // ends on a hop boundary: no tail window
        StreamingWindower windower = new StreamingWindower(window, hop);
        List<float[]> produced = new ArrayList<>();
        float[] out = new float[window];
        for (int start = 0; start < audio.length; start += hop) {
            windower.append(audio, start, hop);
            if (windower.takeWindow(out)) {
                produced.add(out.clone());
            }
        }
        float[][] expected = Windows.evalWindows(audio, window, 0.5);
        assertEquals(expected.length, produced.size());
        for (int i = 0; i < expected.length; i++) {
            assertArrayEquals("window " + i, expected[i], produced.get(i), 0f);
        }
        assertEquals(0, windower.droppedWindows());
    }

    @Test
    public void noWindowBeforeAFullWindowNorTwiceWithinAHop() {
        StreamingWindower windower = new StreamingWindower(10, 5);
        float[] out = new float[10];
        float[] audio = stream(40);
        windower.append(audio, 0, 9);
        assertFalse(windower.takeWindow(out));
        windower.append(audio, 9, 1);
        assertTrue(windower.takeWindow(out));
        assertFalse(windower.takeWindow(out));
        windower.append(audio, 10, 4);
        assertFalse(windower.takeWindow(out));
        windower.append(audio, 14, 1);
        assertTrue(windower.takeWindow(out));
        float[] expected = new float[10];
        System.arraycopy(audio, 5, expected, 0, 10);
        assertArrayEquals(expected, out, 0f);
    }

    @Test
    public void fallingBehindTakesTheNewestWindowAndCountsTheSkipped() {
        StreamingWindower windower = new StreamingWindower(10, 5);
        float[] out = new float[10];
        float[] audio = stream(40);
        windower.append(audio, 0, 10);
        assertTrue(windower.takeWindow(out));
        windower.append(audio, 10, 17); // three hops and two samples
        assertTrue(windower.takeWindow(out));
        assertEquals(2, windower.droppedWindows());
        float[] expected = new float[10];
        System.arraycopy(audio, 17, expected, 0, 10);
        assertArrayEquals(expected, out, 0f);
        windower.reset();
        assertEquals(0, windower.droppedWindows());
        assertFalse(windower.takeWindow(out));
    }

    @Test(expected = IllegalArgumentException.class)
    public void hopLongerThanWindowIsRejected() {
        new StreamingWindower(10, 11);
    }
}
