package dev.lean.core;

/** A fixed-capacity float ring buffer that keeps the most recent samples of a stream. */
public final class RingBuffer {
    private final float[] data;
    private int next;
    private long totalWritten;

    /** @param capacity the number of most recent samples kept; must be positive */
    public RingBuffer(int capacity) {
        if (capacity <= 0) {
            throw new IllegalArgumentException("capacity must be positive, got " + capacity);
        }
        data = new float[capacity];
    }

    public int capacity() {
        return data.length;
    }

    /** Samples currently held: the total written, capped at the capacity. */
    public int size() {
        return (int) Math.min(totalWritten, data.length);
    }

    /** Samples written since creation or the last {@link #clear()}, including overwritten ones. */
    public long totalWritten() {
        return totalWritten;
    }

    public void clear() {
        next = 0;
        totalWritten = 0;
    }

    /** Appends {@code length} samples; when they exceed the capacity only the newest are kept. */
    public void write(float[] samples, int offset, int length) {
        if (offset < 0 || length < 0 || offset + length > samples.length) {
            throw new IndexOutOfBoundsException("offset " + offset + ", length " + length
                    + " outside an array of " + samples.length);
        }
        totalWritten += length;
        int skip = Math.max(0, length - data.length);
        int from = offset + skip;
        int remaining = length - skip;
        while (remaining > 0) {
            int chunk = Math.min(remaining, data.length - next);
            System.arraycopy(samples, from, data, next, chunk);
            next = (next + chunk) % data.length;
            from += chunk;
            remaining -= chunk;
        }
    }

    /** Copies the newest {@code count} samples, oldest first, into {@code out[0..count)}. */
    public void copyLatest(float[] out, int count) {
        if (count < 0 || count > size() || count > out.length) {
            throw new IllegalArgumentException("cannot copy " + count + " samples: " + size()
                    + " held, room for " + out.length);
        }
        int start = ((next - count) % data.length + data.length) % data.length;
        int firstPart = Math.min(count, data.length - start);
        System.arraycopy(data, start, out, 0, firstPart);
        System.arraycopy(data, 0, out, firstPart, count - firstPart);
    }
}
