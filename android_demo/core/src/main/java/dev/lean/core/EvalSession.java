package dev.lean.core;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;

/**
 * One evaluation job from its folder to its last status: reads and checks the job, loads the
 * model on the job's accelerator (never another one), scores the windows. Whatever fails, the
 * job's status.properties ends in {@code state=done} or {@code state=error} with the reason, so
 * the host never waits for a job that died.
 */
public final class EvalSession {
    private EvalSession() {
    }

    /**
     * Runs the job in {@code directory} to its end.
     *
     * @param directory the job folder (benchmarks/DEVICE_EVAL.md)
     * @param factory builds the classifier on the job's accelerator
     * @param listener progress, or null
     * @return the final status, as written
     * @throws IOException only when the status file itself cannot be written
     */
    public static EvalStatus run(File directory, ClassifierFactory factory,
            EvalRunner.Listener listener) throws IOException {
        int numWindows = 0;
        try {
            EvalJob job = EvalJob.read(directory);
            numWindows = job.numWindows();
            ByteBuffer model = map(job.modelFile());
            ModelInfo info;
            try {
                info = ModelInfo.read(model);
            } catch (ModelFormatException e) {
                throw new EvalException(job.modelFile() + ": " + e.getMessage(), e);
            }
            job.checkModel(info);
            // No fallback: a latency labelled "gpu" must come from the GPU delegate.
            AcceleratorFallback.Outcome outcome = AcceleratorFallback.create(factory, model, info,
                    job.accelerator(), job.threads(), false);
            try (LoadedClassifier classifier = outcome.classifier) {
                return new EvalRunner(job, classifier, classifier.delegation(), listener).run();
            }
        } catch (Exception | LinkageError e) {
            boolean explained = e instanceof EvalException || e instanceof AcceleratorException;
            EvalStatus status = EvalStatus.failedToStart(numWindows,
                    explained ? e.getMessage() : Failures.describe(e));
            status.write(new File(directory, EvalJob.STATUS_FILE));
            if (listener != null) {
                listener.onProgress(status);
            }
            return status;
        }
    }

    private static ByteBuffer map(File file) throws EvalException {
        try (FileInputStream in = new FileInputStream(file)) {
            FileChannel channel = in.getChannel();
            return channel.map(FileChannel.MapMode.READ_ONLY, 0, channel.size());
        } catch (IOException e) {
            throw new EvalException(file + ": cannot read (" + e.getMessage() + ")", e);
        }
    }
}
