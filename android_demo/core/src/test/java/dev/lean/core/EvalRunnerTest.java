package dev.lean.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class EvalRunnerTest {
    @Rule public TemporaryFolder temporary = new TemporaryFolder();

    static final Delegation CPU_RUN = Delegation.unreported(Accelerator.CPU);

    /** Class c's score is sample (c * 7) % W of the window, so rows reveal their window. */
    static final class SamplingClassifier implements WindowClassifier {
        final int windowSamples;
        final int numClasses;
        int calls;
        int failAtCall = -1;

        SamplingClassifier(int windowSamples, int numClasses) {
            this.windowSamples = windowSamples;
            this.numClasses = numClasses;
        }

        @Override
        public int windowSamples() {
            return windowSamples;
        }

        @Override
        public int numClasses() {
            return numClasses;
        }

        @Override
        public void classify(float[] window, float[] scores) {
            if (calls++ == failAtCall) {
                throw new IllegalStateException("delegate lost\nsecond line");
            }
            for (int c = 0; c < numClasses; c++) {
                scores[c] = window[(c * 7) % windowSamples];
            }
        }

        float[][] expected(float[][] windows) {
            float[][] rows = new float[windows.length][numClasses];
            for (int i = 0; i < windows.length; i++) {
                for (int c = 0; c < numClasses; c++) {
                    rows[i][c] = windows[i][(c * 7) % windowSamples];
                }
            }
            return rows;
        }
    }

    private float[][] windows(int count, int samples) {
        float[][] rows = new float[count][samples];
        for (int i = 0; i < count; i++) {
            for (int s = 0; s < samples; s++) {
                rows[i][s] = i + s / 1000f;
            }
        }
        return rows;
    }

    private File job(float[][] windows, String delegate) throws IOException {
        File dir = temporary.newFolder("job");
        Float32Files.writeRows(new File(dir, EvalJob.WINDOWS_FILE), windows);
        String properties = "format_version=1\nnum_windows=" + windows.length + "\nwindow_samples="
                + windows[0].length + "\nsample_rate=16000\nthreads=1\ndelegate=" + delegate + "\n";
        try (FileOutputStream out = new FileOutputStream(new File(dir, EvalJob.JOB_FILE))) {
            out.write(properties.getBytes(StandardCharsets.UTF_8));
        }
        return dir;
    }

    @Test
    public void scoresEveryWindowInOrderAndReportsDone() throws Exception {
        float[][] windows = windows(250, 20);
        EvalJob job = EvalJob.read(job(windows, "xnnpack"));
        assertEquals(Accelerator.XNNPACK, job.accelerator());
        SamplingClassifier classifier = new SamplingClassifier(20, 5);
        final List<EvalStatus> progress = new ArrayList<>();
        EvalStatus status = new EvalRunner(job, classifier, CPU_RUN, new EvalRunner.Listener() {
            @Override
            public void onProgress(EvalStatus update) {
                progress.add(update);
            }
        }).run();
        assertEquals(EvalStatus.State.DONE, status.state);
        assertEquals(250, status.windowsDone);
        assertEquals(5, status.numClasses);
        assertFalse(Double.isNaN(status.meanLatencyMs));
        float[][] scores = Float32Files.readRows(job.scoresFile(), 5);
        float[][] expected = classifier.expected(windows);
        assertEquals(250, scores.length);
        for (int i = 0; i < scores.length; i++) {
            assertArrayEquals("row " + i, expected[i], scores[i], 0f);
        }
        // Start, every 100 windows while running, then done.
        assertEquals(4, progress.size());
        assertEquals(200, progress.get(2).windowsDone);
        EvalStatus onDisk = EvalStatus.read(job.statusFile());
        assertEquals(EvalStatus.State.DONE, onDisk.state);
        assertEquals(250, onDisk.windowsDone);
        assertFalse(new File(job.statusFile().getPath() + ".tmp").exists());
    }

    @Test
    public void resumesAfterTheLastWholeRow() throws Exception {
        float[][] windows = windows(30, 16);
        EvalJob job = EvalJob.read(job(windows, "cpu"));
        SamplingClassifier first = new SamplingClassifier(16, 3);
        first.failAtCall = 12;
        EvalStatus failed = new EvalRunner(job, first, CPU_RUN, null).run();
        assertEquals(EvalStatus.State.ERROR, failed.state);
        assertEquals(12, failed.windowsDone);
        assertEquals("IllegalStateException: delegate lost second line", failed.error);
        assertEquals(failed.error, EvalStatus.read(job.statusFile()).error);
        // A kill in the middle of a row leaves a partial row behind.
        try (RandomAccessFile scores = new RandomAccessFile(job.scoresFile(), "rw")) {
            scores.setLength(12 * 3 * 4 + 5);
        }
        SamplingClassifier second = new SamplingClassifier(16, 3);
        EvalStatus done = new EvalRunner(job, second, CPU_RUN, null).run();
        assertEquals(EvalStatus.State.DONE, done.state);
        assertEquals(18, second.calls);
        float[][] scores = Float32Files.readRows(job.scoresFile(), 3);
        float[][] expected = second.expected(windows);
        assertEquals(30, scores.length);
        for (int i = 0; i < scores.length; i++) {
            assertArrayEquals("row " + i, expected[i], scores[i], 0f);
        }
        // Running a finished job again computes nothing and stays done.
        SamplingClassifier third = new SamplingClassifier(16, 3);
        assertEquals(EvalStatus.State.DONE, new EvalRunner(job, third, CPU_RUN, null).run().state);
        assertEquals(0, third.calls);
    }

    @Test
    public void modelWithAnotherWindowLengthIsAnErrorStatus() throws Exception {
        EvalJob job = EvalJob.read(job(windows(3, 16), "gpu"));
        EvalStatus status = new EvalRunner(job, new SamplingClassifier(32, 3), CPU_RUN, null).run();
        assertEquals(EvalStatus.State.ERROR, status.state);
        assertTrue(status.error, status.error.contains("32 samples per window"));
        assertFalse(job.scoresFile().exists());
    }

    @Test
    public void badJobFilesNameTheFileAndKey() throws Exception {
        File dir = job(windows(4, 8), "tpu");
        assertJobError(dir, "delegate 'tpu'");
        try (FileOutputStream out = new FileOutputStream(new File(dir, EvalJob.JOB_FILE))) {
            out.write("format_version=1\nnum_windows=5\nwindow_samples=8\nsample_rate=16000\nthreads=1\ndelegate=cpu\n"
                    .getBytes(StandardCharsets.UTF_8));
        }
        assertJobError(dir, "windows.f32: 128 bytes, expected 160");
        try (FileOutputStream out = new FileOutputStream(new File(dir, EvalJob.JOB_FILE))) {
            out.write("format_version=1\nnum_windows=4\nwindow_samples=8\nthreads=1\ndelegate=cpu\n"
                    .getBytes(StandardCharsets.UTF_8));
        }
        assertJobError(dir, "missing key sample_rate");
    }

    @Test
    public void jobIdsCannotLeaveTheEvalFolder() throws Exception {
        File root = temporary.getRoot();
        assertEquals(new File(root, "run-1_a"), EvalJob.directoryOf(root, "run-1_a"));
        for (String bad : new String[] {"../x", "a/b", "", null}) {
            try {
                EvalJob.directoryOf(root, bad);
                fail("accepted job id " + bad);
            } catch (EvalException expected) {
                // Rejected as it should be.
            }
        }
    }

    private static void assertJobError(File dir, String fragment) {
        try {
            EvalJob.read(dir);
            fail("expected an EvalException containing " + fragment);
        } catch (EvalException e) {
            assertTrue(e.getMessage(), e.getMessage().contains(fragment));
        }
    }
}
