package dev.lean.core;

import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;

/**
 * Runs an evaluation job: windows.f32 in, scores.f32 rows appended, status.properties kept current
 * (benchmarks/DEVICE_EVAL.md). Whole score rows already present are kept and the job continues with
 * the next window, so a killed job resumes where it stopped.
 */
public final class EvalRunner {
    /** The status is rewritten at least this often (in windows), as the contract requires. */
    public static final int STATUS_EVERY = 100;

    /** Receives progress on the worker thread. */
    public interface Listener {
        void onProgress(EvalStatus status);
    }

    private final EvalJob job;
    private final WindowClassifier classifier;
    private final Delegation delegation;
    private final Listener listener;

    /**
     * @param job the job to run
     * @param classifier the model on the job's accelerator
     * @param delegation where the classifier runs, written to every status
     * @param listener progress, or null
     */
    public EvalRunner(EvalJob job, WindowClassifier classifier, Delegation delegation,
            Listener listener) {
        this.job = job;
        this.classifier = classifier;
        this.delegation = delegation;
        this.listener = listener;
    }

    /**
     * Scores every window not yet scored; on failure writes state=error with the reason.
     *
     * @return the final status (done or error)
     * @throws IOException when even the status file cannot be written
     */
    public EvalStatus run() throws IOException {
        int numClasses = classifier.numClasses();
        int done = 0;
        long inferenceNanos = 0;
        int timedWindows = 0;
        try {
            if (classifier.windowSamples() != job.windowSamples()) {
                throw new EvalException("the model takes " + classifier.windowSamples()
                        + " samples per window, job.properties says " + job.windowSamples());
            }
            done = keepWholeRows(job.scoresFile(), numClasses, job.numWindows());
            report(EvalStatus.State.RUNNING, done, numClasses, Double.NaN, null);
            float[] window = new float[job.windowSamples()];
            float[] scores = new float[numClasses];
            ByteBuffer windowBytes = ByteBuffer.allocate(window.length * 4)
                    .order(ByteOrder.LITTLE_ENDIAN);
            ByteBuffer rowBytes = ByteBuffer.allocate(numClasses * 4).order(ByteOrder.LITTLE_ENDIAN);
            try (FileInputStream windowsIn = new FileInputStream(job.windowsFile());
                    FileOutputStream scoresOut = new FileOutputStream(job.scoresFile(), true)) {
                FileChannel windows = windowsIn.getChannel();
                FileChannel scoresChannel = scoresOut.getChannel();
                windows.position((long) done * windowBytes.capacity());
                while (done < job.numWindows()) {
                    readFully(windows, windowBytes);
                    windowBytes.asFloatBuffer().get(window);
                    long start = System.nanoTime();
                    classifier.classify(window, scores);
                    inferenceNanos += System.nanoTime() - start;
                    timedWindows++;
                    rowBytes.clear();
                    rowBytes.asFloatBuffer().put(scores);
                    while (rowBytes.hasRemaining()) {
                        scoresChannel.write(rowBytes);
                    }
                    done++;
                    if (done % STATUS_EVERY == 0 && done < job.numWindows()) {
                        // Rows must be on disk before the status claims them.
                        scoresChannel.force(false);
                        report(EvalStatus.State.RUNNING, done, numClasses,
                                meanMs(inferenceNanos, timedWindows), null);
                    }
                }
                scoresChannel.force(false);
            }
            return report(EvalStatus.State.DONE, done, numClasses,
                    meanMs(inferenceNanos, timedWindows), null);
        } catch (Exception | LinkageError e) {
            // A LinkageError here is a delegate library that failed at its first real use.
            String reason = e instanceof EvalException ? e.getMessage() : Failures.describe(e);
            return report(EvalStatus.State.ERROR, done, numClasses,
                    meanMs(inferenceNanos, timedWindows), reason);
        }
    }

    /**
     * Truncates a partial trailing row of the scores file and returns the number of whole rows.
     */
    static int keepWholeRows(File scores, int numClasses, int numWindows)
            throws IOException, EvalException {
        if (!scores.exists()) {
            return 0;
        }
        long rowBytes = numClasses * 4L;
        long rows = scores.length() / rowBytes;
        if (rows > numWindows) {
            throw new EvalException(scores + ": holds " + rows + " rows of " + numClasses
                    + " scores but the job has " + numWindows + " windows; delete it to restart");
        }
        if (scores.length() != rows * rowBytes) {
            try (RandomAccessFile file = new RandomAccessFile(scores, "rw")) {
                file.setLength(rows * rowBytes);
            }
        }
        return (int) rows;
    }

    private EvalStatus report(EvalStatus.State state, int done, int numClasses, double latencyMs,
            String error) throws IOException {
        EvalStatus status = new EvalStatus(state, done, job.numWindows(), numClasses, latencyMs,
                error, delegation);
        status.write(job.statusFile());
        if (listener != null) {
            listener.onProgress(status);
        }
        return status;
    }

    private static void readFully(FileChannel channel, ByteBuffer target) throws IOException {
        target.clear();
        while (target.hasRemaining()) {
            if (channel.read(target) < 0) {
                throw new IOException("windows.f32 ended early");
            }
        }
        target.flip();
    }

    private static double meanMs(long nanos, int count) {
        return count == 0 ? Double.NaN : nanos / 1e6 / count;
    }
}
