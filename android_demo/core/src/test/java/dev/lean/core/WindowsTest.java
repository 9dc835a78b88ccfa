package dev.lean.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import org.junit.Test;

public class WindowsTest {
    @Test
    public void hopRoundsHalfToEvenLikePython() {
        assertEquals(8000, Windows.hopSamples(16000, 0.5));
        assertEquals(2, Windows.hopSamples(5, 0.5)); // round(2.5) == 2 in Python
        assertEquals(4, Windows.hopSamples(7, 0.5)); // round(3.5) == 4
        assertEquals(1, Windows.hopSamples(1, 0.1));
    }

    @Test
    public void startsCoverTheTailWithAWindowEndingAtTheClipEnd() {
        // 2.3 s at 16 kHz: starts every 0.5 s, then one window ending at 2.3 s.
        assertArrayEquals(new int[] {0, 8000, 16000, 20800}, Windows.windowStarts(36800, 16000, 0.5));
        // Exactly on a hop boundary: no extra window.
        assertArrayEquals(new int[] {0, 8000, 16000}, Windows.windowStarts(32000, 16000, 0.5));
        assertArrayEquals(new int[] {0}, Windows.windowStarts(16000, 16000, 0.5));
        assertArrayEquals(new int[] {0}, Windows.windowStarts(100, 16000, 0.5));
    }

    @Test
    public void shortClipsAreRepeatedToOneWindow() {
        float[] clip = {1f, 2f, 3f};
        float[][] windows = Windows.evalWindows(clip, 8, 0.5);
        assertEquals(1, windows.length);
        assertArrayEquals(new float[] {1f, 2f, 3f, 1f, 2f, 3f, 1f, 2f}, windows[0], 0f);
    }

    @Test
    public void windowsAreCopiesOfTheClip() {
        float[] clip = new float[11];
        for (int i = 0; i < clip.length; i++) {
            clip[i] = i;
        }
        float[][] windows = Windows.evalWindows(clip, 4, 0.5);
        assertEquals(5, windows.length); // starts 0, 2, 4, 6, then 7 for the tail
        assertArrayEquals(new float[] {7f, 8f, 9f, 10f}, windows[4], 0f);
        assertArrayEquals(new float[] {2f, 3f, 4f, 5f}, windows[1], 0f);
    }

    @Test(expected = IllegalArgumentException.class)
    public void emptyClipIsRejected() {
        Windows.evalWindows(new float[0], 4, 0.5);
    }

    @Test(expected = IllegalArgumentException.class)
    public void zeroHopIsRejected() {
        Windows.hopSamples(4, 0.0);
    }
}
