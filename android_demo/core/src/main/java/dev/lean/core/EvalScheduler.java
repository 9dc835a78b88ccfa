package dev.lean.core;

import java.io.File;
import java.io.IOException;
import java.util.concurrent.ThreadFactory;

/**
 * Admits evaluation jobs one at a time per process, whichever activity instance was started.
 *
 * <p>{@code am start} of the evaluation entry point while a job runs reaches the running activity
 * again; each start is answered: the running job itself is left alone (its status stays
 * current), any other job is refused with {@code state=error} and the reason in its own
 * status.properties, so the host that started it learns why instead of waiting.
 */
public final class EvalScheduler {
    /** What became of a start request. */
    public enum Decision {
        /** The job now runs on a worker thread. */
        STARTED,
        /** That very job is running already; nothing changed. */
        ALREADY_RUNNING,
        /** Another job is running; this one's status says so. */
        REFUSED,
        /** The job id or folder is unusable; nothing could be written (see the message). */
        INVALID
    }

    /** The answer to one start request. */
    public static final class Answer {
        public final Decision decision;
        public final String jobId;
        /** One line for the screen and the log. */
        public final String message;

        Answer(Decision decision, String jobId, String message) {
            this.decision = decision;
            this.jobId = jobId;
            this.message = message;
        }
    }

    /** Receives a job's progress and end, on its worker thread. */
    public interface Listener {
        void onProgress(String jobId, EvalStatus status);

        /** The job ended with this status; null when even the status could not be written. */
        void onFinished(String jobId, EvalStatus status, IOException failure);
    }

    private final File evalRoot;
    private final ClassifierFactory factory;
    private final ThreadFactory threads;
    private String runningJob;

    /**
     * @param evalRoot the app's eval folder, parent of every job folder
     * @param factory builds classifiers for the jobs
     * @param threads makes the worker thread of each job
     */
    public EvalScheduler(File evalRoot, ClassifierFactory factory, ThreadFactory threads) {
        this.evalRoot = evalRoot;
        this.factory = factory;
        this.threads = threads;
    }

    /** The job running now, or null. */
    public synchronized String runningJob() {
        return runningJob;
    }

    /**
     * Answers one start request; never blocks on a running job.
     *
     * @param jobId the {@code job} extra of the intent
     * @param listener told of this job's progress and end when it is started
     */
    public synchronized Answer submit(String jobId, final Listener listener) {
        final File directory;
        try {
            directory = EvalJob.directoryOf(evalRoot, jobId);
        } catch (EvalException e) {
            return new Answer(Decision.INVALID, jobId, e.getMessage());
        }
        if (!directory.isDirectory()) {
            return new Answer(Decision.INVALID, jobId,
                    "no job folder " + directory + ": push it first (benchmarks/DEVICE_EVAL.md)");
        }
        if (jobId.equals(runningJob)) {
            return new Answer(Decision.ALREADY_RUNNING, jobId,
                    "job " + jobId + " is running already; its status stays current");
        }
        if (runningJob != null) {
            String reason = "refused: job " + runningJob + " is still running on this device"
                    + " (one job at a time); start this job again once it has ended";
            try {
                EvalStatus.failedToStart(numWindowsOrZero(directory), reason)
                        .write(new File(directory, EvalJob.STATUS_FILE));
            } catch (IOException e) {
                return new Answer(Decision.REFUSED, jobId, reason + " (and its status could not"
                        + " be written: " + e.getMessage() + ")");
            }
            return new Answer(Decision.REFUSED, jobId, reason);
        }
        runningJob = jobId;
        final String id = jobId;
        Thread worker = threads.newThread(new Runnable() {
            @Override
            public void run() {
                EvalStatus status = null;
                IOException failure = null;
                try {
                    status = EvalSession.run(directory, factory, new EvalRunner.Listener() {
                        @Override
                        public void onProgress(EvalStatus update) {
                            listener.onProgress(id, update);
                        }
                    });
                } catch (IOException e) {
                    failure = e;
                } finally {
                    finished(id);
                }
                listener.onFinished(id, status, failure);
            }
        });
        worker.start();
        return new Answer(Decision.STARTED, jobId, "job " + jobId + " started");
    }

    private synchronized void finished(String jobId) {
        if (jobId.equals(runningJob)) {
            runningJob = null;
        }
    }

    private static int numWindowsOrZero(File directory) {
        try {
            return EvalJob.read(directory).numWindows();
        } catch (EvalException e) {
            return 0;
        }
    }
}
