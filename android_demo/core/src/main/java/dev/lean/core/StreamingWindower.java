package dev.lean.core;

/**
 * Turns a live sample stream into model windows: one window every hop once a full window has
 * been heard.
 *
 * <p>When inference falls behind (more than one hop arrived since the last window) only the newest
 * window is produced and the skipped ones are counted, so live results never lag further behind
 * the microphone.
 */
public final class StreamingWindower {
    private final RingBuffer buffer;
    private final int windowSamples;
    private final int hopSamples;
    private long lastWindowEnd = -1;
    private long droppedWindows;

    /**
     * @param windowSamples samples per window (the model's input length)
     * @param hopSamples samples between window starts, 1..windowSamples
     */
    public StreamingWindower(int windowSamples, int hopSamples) {
        if (windowSamples <= 0 || hopSamples <= 0 || hopSamples > windowSamples) {
            throw new IllegalArgumentException("need 0 < hop <= window, got window "
                    + windowSamples + ", hop " + hopSamples);
        }
        this.buffer = new RingBuffer(windowSamples);
        this.windowSamples = windowSamples;
        this.hopSamples = hopSamples;
    }

    public int windowSamples() {
        return windowSamples;
    }

    public int hopSamples() {
        return hopSamples;
    }

    /** Windows skipped because more than one hop arrived between two calls to takeWindow. */
    public long droppedWindows() {
        return droppedWindows;
    }

    public void append(float[] samples, int offset, int length) {
        buffer.write(samples, offset, length);
    }

    /**
     * Copies the newest {@code windowSamples} samples into {@code window} when a window is due: a
     * full window has been heard and at least one hop arrived since the previous window.
     *
     * <p>Fed in chunks of exactly one hop (AudioRecord blocking reads of hop samples), the windows
     * start at 0, hop, 2 hop, ... of the stream, like the evaluation windows of a clip.
     *
     * @return true when a window was copied
     */
    public boolean takeWindow(float[] window) {
        long written = buffer.totalWritten();
        long previousEnd = lastWindowEnd < 0 ? windowSamples - hopSamples : lastWindowEnd;
        if (written < windowSamples || written - previousEnd < hopSamples) {
            return false;
        }
        droppedWindows += (written - previousEnd) / hopSamples - 1;
        buffer.copyLatest(window, windowSamples);
        lastWindowEnd = written;
        return true;
    }

    public void reset() {
        buffer.clear();
        lastWindowEnd = -1;
        droppedWindows = 0;
    }
}
