package dev.lean.core;

import java.util.Arrays;

/**
 * Cuts a clip into evaluation windows exactly like the Python SDK's lean.data.windows.eval_windows:
 * a clip shorter than a window is repeated to fill it, windows start every hop, and one more window
 * ending at the clip's end covers a tail the hops missed.
 */
public final class Windows {
    /** The paper's 50 % overlap. */
    public static final double DEFAULT_HOP_FRACTION = 0.5;

    private Windows() {}

    /** Hop in samples: window * fraction rounded half-to-even (Python's round), at least 1. */
    public static int hopSamples(int windowSamples, double hopFraction) {
        if (!(hopFraction > 0.0 && hopFraction <= 1.0)) {
            throw new IllegalArgumentException("hop fraction must be in (0, 1], got " + hopFraction);
        }
        return Math.max(1, (int) Math.rint(windowSamples * hopFraction));
    }

    /** Tiles a clip shorter than {@code length} until it fills it; longer clips are returned as is. */
    public static float[] repeatToLength(float[] audio, int length) {
        if (audio.length == 0) {
            throw new IllegalArgumentException("cannot window an empty clip");
        }
        if (audio.length >= length) {
            return audio;
        }
        float[] repeated = new float[length];
        for (int i = 0; i < length; i++) {
            repeated[i] = audio[i % audio.length];
        }
        return repeated;
    }

    /** Start sample of each window of a clip of {@code numSamples}; the last ends at the clip's end. */
    public static int[] windowStarts(int numSamples, int windowSamples, double hopFraction) {
        int hop = hopSamples(windowSamples, hopFraction);
        if (numSamples <= windowSamples) {
            return new int[] {0};
        }
        int lastStart = numSamples - windowSamples;
        int count = lastStart / hop + 1;
        boolean tail = (long) (count - 1) * hop != lastStart;
        int[] starts = new int[count + (tail ? 1 : 0)];
        for (int i = 0; i < count; i++) {
            starts[i] = i * hop;
        }
        if (tail) {
            starts[count] = lastStart;
        }
        return starts;
    }

    /**
     * Evaluation windows of one clip.
     *
     * @param audio mono samples of the clip
     * @param windowSamples window length (the model's input length)
     * @param hopFraction hop as a fraction of the window (0.5 = 50 % overlap)
     * @return windows [N][windowSamples]
     */
    public static float[][] evalWindows(float[] audio, int windowSamples, double hopFraction) {
        float[] filled = repeatToLength(audio, windowSamples);
        int[] starts = windowStarts(filled.length, windowSamples, hopFraction);
        float[][] windows = new float[starts.length][];
        for (int i = 0; i < starts.length; i++) {
            windows[i] = Arrays.copyOfRange(filled, starts[i], starts[i] + windowSamples);
        }
        return windows;
    }
}
