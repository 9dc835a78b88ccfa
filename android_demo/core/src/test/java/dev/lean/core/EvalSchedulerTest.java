package dev.lean.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class EvalSchedulerTest {
    @Rule public TemporaryFolder temporary = new TemporaryFolder();

    /** Worker threads that wait for the test's go before running their job. */
    static final class GatedThreads implements ThreadFactory {
        final CountDownLatch go = new CountDownLatch(1);
        int made;

        @Override
        public synchronized Thread newThread(final Runnable job) {
            made++;
            return new Thread(new Runnable() {
                @Override
                public void run() {
                    try {
                        if (go.await(60, TimeUnit.SECONDS)) { // only a guard against a hung test
                            job.run();
                        }
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
            }, "gated-eval");
        }
    }

    /** Records the end of each job. */
    static final class Ends implements EvalScheduler.Listener {
        final CountDownLatch finished = new CountDownLatch(1);
        volatile EvalStatus last;

        @Override
        public void onProgress(String jobId, EvalStatus status) {
        }

        @Override
        public void onFinished(String jobId, EvalStatus status, IOException failure) {
            last = status;
            finished.countDown();
        }
    }

    /** A job folder whose model.tflite is not a model: the job ends at once with state=error. */
    private File jobFolder(File root, String id) throws IOException {
        File dir = new File(root, id);
        assertTrue(dir.mkdirs());
        Float32Files.writeRows(new File(dir, EvalJob.WINDOWS_FILE), new float[4][8]);
        write(new File(dir, EvalJob.JOB_FILE), "format_version=1\nnum_windows=4\nwindow_samples=8\n"
                + "sample_rate=16000\nthreads=1\ndelegate=gpu\n");
        write(new File(dir, EvalJob.MODEL_FILE), "not a flatbuffer");
        return dir;
    }

    private static void write(File file, String text) throws IOException {
        try (FileOutputStream out = new FileOutputStream(file)) {
            out.write(text.getBytes(StandardCharsets.UTF_8));
        }
    }

    @Test
    public void aSecondJobIsRefusedWithAStatusAndTheSameJobIsLeftRunning() throws Exception {
        File root = temporary.getRoot();
        jobFolder(root, "first");
        File second = jobFolder(root, "second");
        GatedThreads threads = new GatedThreads();
        StandInFactory factory = new StandInFactory();
        EvalScheduler scheduler = new EvalScheduler(root, factory, threads);
        Ends ends = new Ends();

        assertEquals(EvalScheduler.Decision.STARTED, scheduler.submit("first", ends).decision);
        assertEquals("first", scheduler.runningJob());
        // The same job again (the host retrying its am start): left alone, nothing written.
        EvalScheduler.Answer again = scheduler.submit("first", new Ends());
        assertEquals(EvalScheduler.Decision.ALREADY_RUNNING, again.decision);
        assertFalse(new File(root, "first/" + EvalJob.STATUS_FILE).exists());

        EvalScheduler.Answer refused = scheduler.submit("second", new Ends());
        assertEquals(EvalScheduler.Decision.REFUSED, refused.decision);
        EvalStatus status = EvalStatus.read(new File(second, EvalJob.STATUS_FILE));
        assertEquals(EvalStatus.State.ERROR, status.state);
        assertEquals(refused.message, status.error);
        assertTrue(status.error, status.error.startsWith(
                "refused: job first is still running on this device (one job at a time)"));
        assertEquals(4, status.numWindows);
        assertEquals(1, threads.made);

        threads.go.countDown();
        assertTrue(ends.finished.await(60, TimeUnit.SECONDS));
        // The first job ended (its model was not a model): its status says why, not "running".
        assertEquals(EvalStatus.State.ERROR, ends.last.state);
        assertTrue(ends.last.error, ends.last.error.contains("model.tflite"));
        assertEquals(ends.last.error,
                EvalStatus.read(new File(root, "first/" + EvalJob.STATUS_FILE)).error);
        assertEquals(0, factory.attempts.size());
        // The scheduler releases a job before telling its listener: the refused job can start.
        assertNull(scheduler.runningJob());
        assertEquals(EvalScheduler.Decision.STARTED, scheduler.submit("second", new Ends()).decision);
        assertEquals(2, threads.made);
    }

    @Test
    public void unusableJobIdsAndMissingFoldersWriteNothing() throws Exception {
        File root = temporary.getRoot();
        EvalScheduler scheduler = new EvalScheduler(root, new StandInFactory(), new GatedThreads());
        for (String id : new String[] {"../escape", null, "absent"}) {
            EvalScheduler.Answer answer = scheduler.submit(id, new Ends());
            assertEquals(EvalScheduler.Decision.INVALID, answer.decision);
            assertNull(scheduler.runningJob());
        }
        assertEquals(0, root.list().length);
    }
}
